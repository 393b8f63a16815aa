/* SPDX-License-Identifier: GPL-2.0 */
/* Counters, as logged at exit and sent to systemd as STATUS=. */
#ifndef SR_STATS_H
#define SR_STATS_H

#include <stddef.h>

struct proxy;

/* One line for STATUS=: "N open, M total (K kernel, F spliced)". */
void stats_format_status(const struct proxy *p, char *buf, size_t size);
/* Log the totals, at info level. */
void stats_log_summary(struct proxy *p);

#endif /* SR_STATS_H */
