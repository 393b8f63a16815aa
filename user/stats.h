/* SPDX-License-Identifier: GPL-2.0 */
/* Counters, as logged at exit and sent to systemd as STATUS=. */
#ifndef SR_STATS_H
#define SR_STATS_H

#include <stddef.h>

struct proxy;

/*
 * sr_proxy_stats is one page shared by every worker process (a MAP_SHARED mmap of the BPF array,
 * or of anonymous memory without BPF), so a count is an atomic add. Relaxed: readers want sums,
 * not an order between counters. Returns the new value.
 */
#define stat_add(counter, n) __atomic_add_fetch(&(counter), (n), __ATOMIC_RELAXED)
#define stat_inc(counter)    stat_add(counter, 1)
#define stat_dec(counter)    __atomic_sub_fetch(&(counter), 1, __ATOMIC_RELAXED)

/* One line for STATUS=: "N open, M total (K kernel, F spliced)". */
void stats_format_status(const struct proxy *p, char *buf, size_t size);
/* Log the totals, at info level. */
void stats_log_summary(struct proxy *p);

#endif /* SR_STATS_H */
