/* SPDX-License-Identifier: GPL-2.0 */
/* Pipes for splice(2), borrowed from a pool only while they hold bytes. */
#ifndef SR_PIPE_POOL_H
#define SR_PIPE_POOL_H

#include "util.h"

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

/* An empty pipe: a spare one, a new one, or the reserve when fds run out. */
int pipe_pool_get(struct pipe_pool *pool, struct sr_pipe **ret);
/* Give back a pipe: only an empty one is kept; one with bytes in it is closed with them. */
void pipe_pool_put(struct pipe_pool *pool, struct sr_pipe *p, size_t bytes_in_it);
static inline bool pipe_pool_is_reserve(const struct pipe_pool *pool, const struct sr_pipe *p)
{
	return p == pool->reserve;
}

#endif /* SR_PIPE_POOL_H */
