/* SPDX-License-Identifier: GPL-2.0 */
/* `sockredir stats`: the counters of running instances, from their pinned maps. */
#ifndef SR_STATS_CMD_H
#define SR_STATS_CMD_H

/* argv[0] is "stats". Returns 0, -SR_EUSAGE on bad usage, or a negative errno (logged). */
int stats_main(int argc, char *argv[]);
/* Open the pin NAME in an instance's pin directory DIR, read-only. Returns an fd or -errno. */
int stats_open_pin(const char *dir, const char *name);

#endif /* SR_STATS_CMD_H */
