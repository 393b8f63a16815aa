// SPDX-License-Identifier: GPL-2.0
/*
 * peek_tls_sni() and peek_name() on any bytes, up to PEEK_MAX: see peek-check.h. Each input is
 * also run a second time with its length fields repaired (the record's and the handshake's to
 * fit the input, the extension block's to fit the handshake, when they can be found), so that
 * mutations of a ClientHello's body reach the extension parser instead of stopping at a length
 * that no longer matches.
 */
#include "peek-check.h"

static void put16(uint8_t *p, size_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* One record holding one handshake message: fix the lengths that can be fixed. */
static void repair(uint8_t *b, size_t len)
{
	size_t off;

	if (len < 9 || len - 5 > 16384)
		return;
	b[0] = 22;
	b[1] = 3;
	put16(b + 3, len - 5);
	b[6] = (uint8_t)((len - 9) >> 16);
	put16(b + 7, len - 9);

	/* Handshake body: version and random, session id, suites, compression, extensions. */
	off = 9 + 2 + 32;
	if (off >= len)
		return;
	off += 1 + b[off];
	if (off + 2 > len)
		return;
	off += 2 + (size_t)(b[off] << 8 | b[off + 1]);
	if (off >= len)
		return;
	off += 1 + b[off];
	if (off + 2 > len)
		return;
	put16(b + off, len - off - 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct peek_run r;
	uint8_t *fixed;

	if (size > PEEK_MAX)
		size = PEEK_MAX;
	r = peek_check(peek_tls_sni, "peek_tls_sni", data, size);
	peek_check_dispatch(data, size, &r, true);
	/* A ClientHello starts with a handshake record (judged once its header is there). */
	if (size >= 5 && data[0] != 22)
		CHECK(r.r == PEEK_INVALID, "TLS starting with 0x%02x: %s", data[0],
		      peek_result_to_string(r.r));

	fixed = malloc(size ? size : 1);
	if (!fixed)
		abort();
	memcpy(fixed, data, size);
	repair(fixed, size);
	r = peek_check(peek_tls_sni, "peek_tls_sni (repaired)", fixed, size);
	peek_check_dispatch(fixed, size, &r, true);
	free(fixed);
	return 0;
}
