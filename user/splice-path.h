/* SPDX-License-Identifier: GPL-2.0 */
/* The userspace mover: splice(2) through a pipe borrowed from the pool. */
#ifndef SR_SPLICE_PATH_H
#define SR_SPLICE_PATH_H

#include "movers.h"

/* What splice_flow_move() did. */
enum splice_result {
	SPLICE_BLOCKED,	 /* waiting for flow->waits */
	SPLICE_EOF,	 /* the source ended and the pipe is empty */
	SPLICE_DST_GONE, /* the destination refused bytes (EPIPE/ECONNRESET) */
	SPLICE_YIELD,	 /* did a batch of work; more may be ready */
};

/*
 * Move bytes src -> pipe -> dst until something would block. Returns an enum splice_result, or a
 * negative errno on a hard error of the source.
 */
int splice_flow_move(struct movers *m, struct flow *f);
/* Read and drop the source's bytes (FLOW_DISCARD). Same results as splice_flow_move(). */
int splice_flow_discard(struct flow *f);
/* Give the flow's pipe back (closing it if it still holds bytes). */
void splice_flow_release(struct movers *m, struct flow *f);

#endif /* SR_SPLICE_PATH_H */
