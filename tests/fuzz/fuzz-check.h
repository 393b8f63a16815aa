/* SPDX-License-Identifier: GPL-2.0 */
/* The fuzz targets' assertion: a broken invariant aborts, so that libFuzzer keeps the input. */
#ifndef SR_FUZZ_CHECK_H
#define SR_FUZZ_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "CHECK failed: %s: ", #cond);                              \
			fprintf(stderr, __VA_ARGS__);                                              \
			fputc('\n', stderr);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#endif /* SR_FUZZ_CHECK_H */
