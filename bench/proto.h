/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What bench-client and bench-backend share: the request header and the byte pattern.
 *
 * The Makefile builds each bench/NAME.c on its own and knows nothing about this header, so
 * after editing it remove .output/bench-* (bench/run.sh refuses to run stale binaries).
 *
 * Every connection starts with one struct bench_hdr from the client. After it:
 *   echo:   every byte is sent back;
 *   sink:   the client sends len bytes of the pattern; the backend checks them and answers
 *           with one struct bench_sink_reply;
 *   source: the backend sends len bytes of the pattern, then waits for the client to close.
 * No mode needs a half-close: systemd-socket-proxyd v252 doesn't pass one on.
 */
#ifndef BENCH_PROTO_H
#define BENCH_PROTO_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_MAGIC 0x31425253u /* "SRB1" in memory order */

enum bench_mode {
	BENCH_ECHO = 'E',
	BENCH_SINK = 'U',
	BENCH_SOURCE = 'D',
};

struct bench_hdr {
	uint32_t magic;
	uint8_t mode;
	uint8_t pad[3];
	uint64_t len;
};

#define BENCH_NO_MISMATCH UINT64_MAX

struct bench_sink_reply {
	uint64_t received;
	uint64_t mismatch; /* stream offset of the first wrong byte, or BENCH_NO_MISMATCH */
};

/*
 * Byte i of every stream is pattern[i % BENCH_PERIOD]. The period is odd and not a multiple of
 * any skb or buffer size, so a lost, repeated or reordered chunk shows up in a plain memcmp()
 * unless it is an exact multiple of the period long. The buffer holds the period twice, so
 * that any window of up to BENCH_PERIOD bytes is contiguous: pattern + off % BENCH_PERIOD.
 */
#define BENCH_PERIOD (1024 * 1024 + 4093)

static inline uint8_t *bench_pattern_new(void)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
	uint8_t *p = malloc(2 * BENCH_PERIOD);

	if (!p)
		return NULL;
	for (size_t i = 0; i < BENCH_PERIOD; i++) {
		/* xorshift64: cheap, and no byte value repeats in a short cycle. */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (uint8_t)(x >> 24);
	}
	memcpy(p + BENCH_PERIOD, p, BENCH_PERIOD);
	return p;
}

/* Stream offset of the first byte of buf[0..len) that differs from the pattern, or -1. */
static inline int64_t bench_pattern_check(const uint8_t *pattern, uint64_t off, const uint8_t *buf,
					  size_t len)
{
	while (len > 0) {
		size_t n = len < BENCH_PERIOD ? len : BENCH_PERIOD;
		const uint8_t *want = pattern + off % BENCH_PERIOD;

		if (memcmp(want, buf, n) != 0) {
			for (size_t i = 0; i < n; i++)
				if (want[i] != buf[i])
					return (int64_t)(off + i);
		}
		off += n;
		buf += n;
		len -= n;
	}
	return -1;
}

#endif
