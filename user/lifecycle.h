/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The process lifecycle: the event loop, signals (SIGTERM/SIGINT drain, SIGHUP reload),
 * sd_notify and the timers that are no one connection's (lifecycle.c).
 */
#ifndef SR_LIFECYCLE_H
#define SR_LIFECYCLE_H

#include "proxy.h"

/*
 * The supervisor (workers.c) forwards SIGTERM and SIGINT with sigqueue() and one of these values.
 * systemd's default KillMode=control-group also signals every worker itself, so a worker gets
 * the same stop twice, in either order: in a worker, any stop signal drains, and only
 * SR_STOP_NOW from the supervisor (after a second signal to the main pid) closes everything.
 */
enum {
	SR_STOP_DRAIN = 1, /* stop accepting, let open connections finish */
	SR_STOP_NOW = 2,   /* a second signal reached the supervisor: close everything */
};

/*
 * `systemctl restart`, from the supervisor to its workers: keep every connection in the fd store
 * and exit. A real-time signal, because those queue: a SIGTERM from the supervisor that arrives
 * while systemd's own SIGTERM is still pending is merged into it, and its value lost.
 */
#define SR_SIGNAL_HAND_OVER SIGRTMIN

/* Serve until SIGTERM/SIGINT and the drain are over. Returns 0 or negative errno (logged). */
int lifecycle_run(struct proxy *p);
/* Free what lifecycle_run() set up; connections still open are closed. */
void lifecycle_done(struct proxy *p);

/* STATUS= from the shared counters, if it changed since the last one (clear last_status to force). */
void lifecycle_send_status(struct proxy *p);
/* Log the totals of every worker's counters, at info level. */
void lifecycle_log_summary(struct proxy *p);

#endif /* SR_LIFECYCLE_H */
