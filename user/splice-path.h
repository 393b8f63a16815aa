/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The userspace mover. A flow starts on recv()/send() through a small buffer (f->copy), and moves
 * to splice(2) through a pipe borrowed from the pool once it carries bulk.
 */
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
 * Move bytes until something would block: src -> dst with recv()/send() while f->copy, else
 * src -> pipe -> dst. A copy flow that reads COPY_BULK bytes in one go leaves copy for good.
 * Returns an enum splice_result, or a negative errno on a hard error of the source.
 */
int splice_flow_move(struct movers *m, struct flow *f);
/* Read and drop the source's bytes (FLOW_DISCARD). Same results as splice_flow_move(). */
int splice_flow_discard(struct flow *f);
/* Give the flow's pipe back (closing it if it still holds bytes). */
void splice_flow_release(struct movers *m, struct flow *f);
/*
 * Give the flow a pipe of its own, never returned to the pool (f->pipe_kept): its connection is
 * going into systemd's fd store with the pipe. -EBUSY if the flow holds the pool's reserve now.
 */
int splice_flow_keep_pipe(struct movers *m, struct flow *f);
/* When the connection is freed: close a kept pipe, or give back a borrowed one. */
void splice_flow_free_pipe(struct movers *m, struct flow *f);

#endif /* SR_SPLICE_PATH_H */
