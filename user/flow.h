/* SPDX-License-Identifier: GPL-2.0 */
/* One flow's state machine, on either mover (flow.c). */
#ifndef SR_FLOW_H
#define SR_FLOW_H

#include "movers.h"

/* What flow_run() tells its connection, besides what the flow now waits for (f->waits). */
enum {
	/* The flow settled onto the kernel path: its upload may start there. */
	FLOW_SETTLED = 1,
	/*
	 * Its source ended while settling, or has not paused in many rounds: the upload starts
	 * outside the kernel (the flow goes on settling).
	 */
	FLOW_NOT_SETTLED,
};

/*
 * Move what can be moved now, and set f->waits to what the flow waits for next. Returns 0, a
 * FLOW_* event, or a negative errno that ends the connection, except for -EMFILE and -ENFILE:
 * out of fds for a pipe, the flow tries again after FD_RETRY by itself, and the connection
 * should only stop accepting more.
 */
int flow_run(struct movers *m, struct flow *f);
void flow_set_state(struct flow *f, enum flow_state state);
/*
 * The destination is gone for good: a kernel flow is done (the verdict drops what it can't
 * redirect); a spliced one reads and drops what its source sends for a while, so that the
 * source's close is a FIN and not a reset.
 */
void flow_discard_rest(struct flow *f);

#endif /* SR_FLOW_H */
