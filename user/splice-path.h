/* SPDX-License-Identifier: GPL-2.0 */
/* The userspace path: splice(2) through a pipe borrowed from a pool. */
#ifndef SR_SPLICE_PATH_H
#define SR_SPLICE_PATH_H

#include "util.h"

struct flow;

struct sr_pipe {
	int fd[2];
	struct sr_pipe *next;
};

/*
 * Pipes are borrowed only while they hold bytes, so an idle connection costs no pipe fds; a few
 * empty ones are kept for reuse.
 */
struct pipe_pool {
	struct sr_pipe *free;
	size_t n_free;
	/*
	 * Opened at start-up and lent only when pipe2() fails for lack of fds. Pipes are borrowed
	 * for a moment, so one is enough for every connection to make progress in turn; without
	 * it, connections that each hold their sockets could all wait for a pipe forever.
	 */
	struct sr_pipe *reserve;
	bool reserve_lent;
};

int pipe_pool_init(struct pipe_pool *pool);
/* Close the spare pipes (not the reserve): when fds run out, and at exit. */
void pipe_pool_clear(struct pipe_pool *pool);
void pipe_pool_done(struct pipe_pool *pool);

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
int splice_flow_move(struct pipe_pool *pool, struct flow *f);
/* Read and drop the source's bytes (FLOW_DISCARD). Same results as splice_flow_move(). */
int splice_flow_discard(struct flow *f);
/* Give the flow's pipe back (closing it if it still holds bytes). */
void splice_flow_release(struct pipe_pool *pool, struct flow *f);

#endif /* SR_SPLICE_PATH_H */
