/* SPDX-License-Identifier: GPL-2.0 */
/* `sockredir stats`: the counters of running instances, from their pinned maps. */
#ifndef SR_STATS_CMD_H
#define SR_STATS_CMD_H

/* argv[0] is "stats". Returns 0, -SR_EUSAGE on bad usage, or a negative errno (logged). */
int stats_main(int argc, char *argv[]);
/*
 * The counters of running instance NAME: from its pins in pin_path if not NULL, else from
 * SR_PIN_ROOT/NAME or, without the kernel path, its counters file. Returns 0 or -errno.
 */
struct sr_proxy_stats;
int stats_read_counters(const char *name, const char *pin_path, struct sr_proxy_stats *ret);

#endif /* SR_STATS_CMD_H */
