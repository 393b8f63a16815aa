/* SPDX-License-Identifier: GPL-2.0 */
/* Counters, as logged at exit and sent to systemd as STATUS=. */
#ifndef SR_STATS_H
#define SR_STATS_H

#include <stdbool.h>
#include <stddef.h>

#include "../bpf/sockredir.h"

/*
 * Without the kernel path there are no pins, yet `sockredir stats` and `sockredir reload` must
 * still find the instance, and see why it runs on splice: its counters then live in a file,
 * SR_RUN_ROOT/NAME/SR_RUNTIME_STATS, shared by mmap like the BPF array. The running instance
 * holds a lock on it, so that a reader can tell it from one a crash left behind.
 */
#define SR_RUN_ROOT	 "/run/sockredir"
#define SR_RUNTIME_STATS "stats"

struct sr_runtime_stats {
	struct sr_proxy_stats proxy;
	char path_status[192]; /* as in STATUS=: "Splice only, ..." and why */
};

struct stats_runtime {
	struct sr_runtime_stats *mem;
	int fd;	   /* holds the lock while the instance runs */
	char *dir; /* SR_RUN_ROOT/NAME, or NULL: anonymous memory, invisible to readers */
};

/*
 * Counters for an instance without the kernel path, in SR_RUN_ROOT/NAME, or in anonymous shared
 * memory when that can't be created (said at notice level: `sockredir stats` won't see it).
 */
int stats_runtime_new(const char *name, const char *path_status, struct stats_runtime *ret);
/* Unmap; remove the file and its directory if remove (the process that made them). */
void stats_runtime_done(struct stats_runtime *rt, bool remove);
/*
 * Read the counters of running instance NAME from its file (dir: SR_RUN_ROOT/NAME). -ENOENT if
 * there is none, -ESTALE if the instance that wrote it is gone.
 */
int stats_runtime_read(const char *dir, struct sr_runtime_stats *ret);

/* How STATUS= and `sockredir stats` name the kernel path, first in their line. */
static inline const char *stats_kernel_path_label(bool both_ways)
{
	return both_ways ? "Kernel path both ways" : "Kernel path";
}

/* How `sockredir stats` and the metrics name a fallback reason: one name each, in both. */
static inline const char *stats_fallback_name(enum sr_fallback_reason r)
{
	static const char *const names[_SR_FALLBACK_MAX] = {
		[SR_FALLBACK_NONE] = "none",
		[SR_FALLBACK_MODE] = "mode",
		[SR_FALLBACK_CLIENT_STATE] = "client_half_closed",
		[SR_FALLBACK_BACKEND_STATE] = "backend_refused",
		[SR_FALLBACK_MAP_FULL] = "map_full",
		[SR_FALLBACK_OTHER] = "other",
		[SR_FALLBACK_CLIENT_UNIX] = "client_unix",
		[SR_FALLBACK_BACKEND_FIRST] = "backend_spoke_first",
	};

	return (unsigned)r < _SR_FALLBACK_MAX ? names[r] : "unknown";
}

/* How `sockredir stats` and the metrics name a mover (the mover label): one name each, in both. */
static inline const char *stats_mover_name(enum sr_mover m)
{
	static const char *const names[_SR_MOVER_MAX] = {
		[SR_MOVER_COPY] = "copy",
		[SR_MOVER_SPLICE] = "splice",
		[SR_MOVER_KERNEL] = "kernel",
	};

	return (unsigned)m < _SR_MOVER_MAX ? names[m] : "unknown";
}

/*
 * sr_proxy_stats is one page shared by every worker process (a MAP_SHARED mmap of the BPF array,
 * or of anonymous memory without BPF), so a count is an atomic add. Relaxed: readers want sums,
 * not an order between counters. Returns the new value.
 */
#define stat_add(counter, n) __atomic_add_fetch(&(counter), (n), __ATOMIC_RELAXED)
#define stat_inc(counter)    stat_add(counter, 1)
#define stat_dec(counter)    __atomic_sub_fetch(&(counter), 1, __ATOMIC_RELAXED)

/*
 * One line for STATUS=: "PATH: N open, M accepted (K kernel path, F splice); X down, Y up", from
 * the proxy's counters and the kernel path's (zeros without it); X and Y count every mover. Then,
 * only when not zero, "; N kept across restarts, M restored, C closed on restore" (the fd store).
 */
void stats_format_status(const struct sr_proxy_stats *s, const struct sr_kstats *k,
			 const char *path_status, char *buf, size_t size);
/*
 * Log the totals, at info level; the fd store's only when it kept or restored connections. The
 * movers' (copied bytes, promotions, connections by fastest mover) get a line of their own, so
 * that the Connections and Bytes lines keep the shape tests/soak/report.py parses.
 */
void stats_log_summary(const struct sr_proxy_stats *s, const struct sr_kstats *k);

#endif /* SR_STATS_H */
