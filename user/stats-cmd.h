/* SPDX-License-Identifier: GPL-2.0 */
/* `sockredir stats`: the counters of running instances, from their pinned maps. */
#ifndef SR_STATS_CMD_H
#define SR_STATS_CMD_H

/* argv[0] is "stats". Returns 0, -SR_EUSAGE on bad usage, or a negative errno (logged). */
int stats_main(int argc, char *argv[]);

#endif /* SR_STATS_CMD_H */
