/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the peek fuzz targets check on every input, whichever parser:
 *  - the result is one of the enum's values;
 *  - PEEK_FOUND gives a host that is non-empty, NUL-terminated within PEEK_HOST_MAX, lowercase,
 *    made of the characters set_host() allows, without a trailing dot or an empty label;
 *  - a decision is final: once a prefix of the input decides (anything but PEEK_MORE), every
 *    longer input that starts with it decides the same, with the same host. Checked for a few
 *    prefixes and one extension of each input;
 *  - peek_name() agrees with the parser it dispatches to.
 * Every call gets a heap copy of exactly its length, and a heap host of exactly PEEK_HOST_MAX
 * bytes, so that ASan catches a read or write past either.
 */
#ifndef SR_FUZZ_PEEK_CHECK_H
#define SR_FUZZ_PEEK_CHECK_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../user/peek.h"

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif

typedef enum peek_result (*peek_fn)(const uint8_t *buf, size_t len, char *host);

#include "fuzz-check.h"

struct peek_run {
	enum peek_result r;
	char host[PEEK_HOST_MAX];
};

static void check_host(const char *host)
{
	size_t n = strnlen(host, PEEK_HOST_MAX);

	CHECK(n < PEEK_HOST_MAX, "host not NUL-terminated");
	CHECK(n > 0, "empty host");
	CHECK(host[n - 1] != '.', "host '%s' ends with a dot", host);
	CHECK(host[0] != '.' && !strstr(host, ".."), "host '%s' has an empty label", host);
	for (size_t i = 0; i < n; i++) {
		char c = host[i];

		CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("-._:[]", c),
		      "host '%s': byte 0x%02x", host, (unsigned char)c);
	}
}

/* fn over a heap copy of exactly len bytes of data. */
static struct peek_run peek_run(peek_fn fn, const uint8_t *data, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);
	char *host = malloc(PEEK_HOST_MAX);
	struct peek_run run = {};

	if (!copy || !host)
		abort();
	if (len)
		memcpy(copy, data, len);
	memset(host, 0x5a, PEEK_HOST_MAX);
	run.r = fn(copy, len, host);
	CHECK(run.r == PEEK_MORE || run.r == PEEK_FOUND || run.r == PEEK_NO_NAME ||
		      run.r == PEEK_INVALID,
	      "result %d", (int)run.r);
	if (run.r == PEEK_FOUND) {
		check_host(host);
		memcpy(run.host, host, PEEK_HOST_MAX);
	}
	free(host);
	free(copy);
	return run;
}

static bool peek_same(const struct peek_run *a, const struct peek_run *b)
{
	return a->r == b->r && (a->r != PEEK_FOUND || strcmp(a->host, b->host) == 0);
}

/* A decided prefix of k bytes, and the same data of len > k bytes, decide alike. */
static void check_prefix(peek_fn fn, const char *what, const uint8_t *data, size_t k,
			 const struct peek_run *full, size_t len)
{
	struct peek_run p = peek_run(fn, data, k);

	if (p.r == PEEK_MORE)
		return;
	CHECK(peek_same(&p, full), "%s: %zu bytes decide %s (%s), %zu bytes %s (%s)", what, k,
	      peek_result_to_string(p.r), p.r == PEEK_FOUND ? p.host : "", len,
	      peek_result_to_string(full->r), full->r == PEEK_FOUND ? full->host : "");
}

/* Run fn on data (at most PEEK_MAX bytes) with every check; returns the result. */
static struct peek_run peek_check(peek_fn fn, const char *what, const uint8_t *data, size_t len)
{
	struct peek_run full = peek_run(fn, data, len), ext;
	uint8_t *longer;
	size_t extra;

	/* Prefixes: one byte short, half, and the first line or record. */
	if (len > 0)
		check_prefix(fn, what, data, len - 1, &full, len);
	if (len > 1)
		check_prefix(fn, what, data, len / 2, &full, len);
	if (len > 5) {
		const uint8_t *lf = memchr(data, '\n', len);
		size_t k = lf ? (size_t)(lf - data) + 1 : 5 + (size_t)(data[3] << 8 | data[4]);

		if (k < len)
			check_prefix(fn, what, data, k, &full, len);
	}

	/* An extension: the input followed by itself, up to PEEK_MAX. */
	if (full.r != PEEK_MORE && len > 0 && len < PEEK_MAX) {
		extra = MIN(len, PEEK_MAX - len);
		longer = malloc(len + extra);
		if (!longer)
			abort();
		memcpy(longer, data, len);
		memcpy(longer + len, data, extra);
		ext = peek_run(fn, longer, len + extra);
		CHECK(peek_same(&full, &ext), "%s: %zu bytes decide %s (%s), %zu bytes %s (%s)", what,
		      len, peek_result_to_string(full.r), full.r == PEEK_FOUND ? full.host : "",
		      len + extra, peek_result_to_string(ext.r), ext.r == PEEK_FOUND ? ext.host : "");
		free(longer);
	}
	return full;
}

/* peek_name() dispatches on the first byte, and gives what the parser gives. */
static void peek_check_dispatch(const uint8_t *data, size_t len, const struct peek_run *parser,
				bool tls)
{
	struct peek_run byname = peek_run(peek_name, data, len);

	if (len == 0) {
		CHECK(byname.r == PEEK_MORE, "peek_name on nothing: %s",
		      peek_result_to_string(byname.r));
		return;
	}
	if ((data[0] == 22) == tls)
		CHECK(peek_same(&byname, parser), "peek_name %s, %s %s",
		      peek_result_to_string(byname.r), tls ? "peek_tls_sni" : "peek_http_host",
		      peek_result_to_string(parser->r));
}

#endif /* SR_FUZZ_PEEK_CHECK_H */
