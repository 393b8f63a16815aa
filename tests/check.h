/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The unit tests' assertion: CHECK(cond, fmt, ...) counts, prints the file, line and message of
 * a failure, and evaluates to cond, so that a test can stop early: if (!CHECK(...)) return;
 * CHECK_REPORT(name) prints the totals and gives main's exit status.
 */
#ifndef SR_TESTS_CHECK_H
#define SR_TESTS_CHECK_H

#include <stdbool.h>
#include <stdio.h>

static int failures, checks;

#define CHECK(cond, ...)                                                                           \
	({                                                                                         \
		bool _ok = (cond);                                                                 \
		checks++;                                                                          \
		if (!_ok) {                                                                        \
			failures++;                                                                \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                       \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
		}                                                                                  \
		_ok;                                                                               \
	})

#define CHECK_REPORT(name)                                                                         \
	({                                                                                         \
		printf("%s: %d checks, %d failed\n", name, checks, failures);                     \
		failures ? 1 : 0;                                                                  \
	})

#endif /* SR_TESTS_CHECK_H */
