/* SPDX-License-Identifier: GPL-2.0 */
/* --workers N: the supervisor process and the workers it forks (workers.c). */
#ifndef SR_WORKERS_H
#define SR_WORKERS_H

#include <sys/signalfd.h>
#include <stdbool.h>

struct proxy;

/*
 * The supervisor forwards SIGTERM and SIGINT with sigqueue() and one of these values. systemd's
 * default KillMode=control-group also signals every worker itself, so a worker gets the same
 * stop twice, in either order: in a worker, any stop signal drains, and only SR_STOP_NOW from
 * the supervisor (after a second signal to the main pid) closes everything.
 */
enum {
	SR_STOP_DRAIN = 1, /* stop accepting, let open connections finish */
	SR_STOP_NOW = 2,   /* a second signal reached the supervisor: close everything */
};

/* Whether a stop signal means "close everything now" rather than "drain". */
bool workers_stop_now(const struct proxy *p, const struct signalfd_siginfo *si);

/*
 * Fork p->opts->workers workers and supervise them until all have exited. Returns 0 in a worker
 * (p->worker is then set, and the caller serves with proxy_run()), and in the supervisor 0 when
 * every worker exited cleanly after SIGTERM or --exit-idle-time, or negative errno (logged).
 */
int workers_run(struct proxy *p);

#endif /* SR_WORKERS_H */
