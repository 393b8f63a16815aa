// SPDX-License-Identifier: GPL-2.0
/* Counters. The proxy's live in sr_proxy_stats (mmap), the data path's in sr_kstats. */
#include <inttypes.h>
#include <stdio.h>

#include "bpf-loader.h"
#include "log.h"
#include "proxy.h"
#include "stats.h"

/* The BPF ABI uses __u64 (unsigned long long); PRIu64 wants uint64_t. */
#define U(x) ((uint64_t)(x))

static uint64_t fallbacks(const struct sr_proxy_stats *s)
{
	uint64_t n = 0;

	for (int i = 0; i < _SR_FALLBACK_MAX; i++)
		n += s->fallback[i];
	return n;
}

static const char *format_bytes(uint64_t n, char *buf, size_t size)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	size_t u = 0;

	while (v >= 1024 && u + 1 < ELEMENTSOF(units)) {
		v /= 1024;
		u++;
	}
	snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
	return buf;
}

void stats_format_status(const struct proxy *p, char *buf, size_t size)
{
	const struct sr_proxy_stats *s = p->stats;
	struct sr_kstats k = {};
	char down[32], up[32];

	if (p->bpf && bpf_state_read_kstats(p->bpf, &k) < 0)
		k = (struct sr_kstats){};
	snprintf(buf, size,
		 "%s: %" PRIu64 " open, %" PRIu64 " accepted (%" PRIu64 " kernel path, %" PRIu64
		 " splice); %s down, %s up",
		 p->path_status, U(s->open), U(s->accepted), U(s->kernel), fallbacks(s),
		 format_bytes(k.bytes[SR_DIR_DOWN] + s->spliced_bytes[SR_DIR_DOWN] +
				      s->flushed_bytes,
			      down, sizeof(down)),
		 format_bytes(k.bytes[SR_DIR_UP] + s->spliced_bytes[SR_DIR_UP], up, sizeof(up)));
}

void stats_log_summary(struct proxy *p)
{
	const struct sr_proxy_stats *s = p->stats;
	struct sr_kstats k = {};

	log_info("Connections: %" PRIu64 " accepted, %" PRIu64 " on the kernel path (%" PRIu64
		 " with kernel upload), %" PRIu64 " on splice (mode %" PRIu64
		 ", client half-closed %" PRIu64 ", backend refused %" PRIu64 ", map full %" PRIu64
		 ", other %" PRIu64 "), %" PRIu64 " backend connect failures.",
		 U(s->accepted), U(s->kernel), U(s->kernel_upload), fallbacks(s),
		 U(s->fallback[SR_FALLBACK_MODE]), U(s->fallback[SR_FALLBACK_CLIENT_STATE]),
		 U(s->fallback[SR_FALLBACK_BACKEND_STATE]), U(s->fallback[SR_FALLBACK_MAP_FULL]),
		 U(s->fallback[SR_FALLBACK_OTHER]), U(s->connect_failed));

	if (p->bpf && bpf_state_read_kstats(p->bpf, &k) < 0)
		log_debug_errno(errno, "Failed to read " SR_MAP_KSTATS ", ignoring: %m");
	log_info("Setup: %" PRIu64 " peek failures, %" PRIu64 " closed idle, %" PRIu64 " reloads.",
		 U(s->peek_failed), U(s->idle_closed), U(s->reloads));
	log_info("Bytes: kernel down %" PRIu64 ", kernel up %" PRIu64 ", spliced up %" PRIu64
		 ", spliced down %" PRIu64 ", moved by hand %" PRIu64 "; %" PRIu64
		 " drain checks, %" PRIu64 " redirect failures, %" PRIu64 " held skbs.",
		 U(k.bytes[SR_DIR_DOWN]), U(k.bytes[SR_DIR_UP]), U(s->spliced_bytes[SR_DIR_UP]),
		 U(s->spliced_bytes[SR_DIR_DOWN]), U(s->flushed_bytes), U(s->drain_checks),
		 U(k.redirect_failed), U(k.held));
}
