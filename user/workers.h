/* SPDX-License-Identifier: GPL-2.0 */
/* --workers N: the supervisor process and the workers it forks (workers.c). */
#ifndef SR_WORKERS_H
#define SR_WORKERS_H

struct proxy;

/*
 * Fork p->opts->workers workers and supervise them until all have exited. Returns 0 in a worker
 * (p->worker is then set, and the caller serves with lifecycle_run()), and in the supervisor 0
 * when every worker exited cleanly after SIGTERM or --exit-idle-time, or negative errno (logged).
 */
int workers_run(struct proxy *p);

#endif /* SR_WORKERS_H */
