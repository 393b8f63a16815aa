// SPDX-License-Identifier: GPL-2.0
/* A pool of pipes for splice(2), with one held in reserve for when fds run out. */
#include <fcntl.h>

#include "pipe-pool.h"

/* Empty pipes kept for reuse. Beyond this they are closed, so fds follow the busy connections. */
#define PIPE_POOL_MAX 64

static int pipe_open(struct sr_pipe **ret)
{
	struct sr_pipe *p;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	if (pipe2(p->fd, O_NONBLOCK | O_CLOEXEC) < 0) {
		int r = negative_errno();

		free(p);
		return r;
	}
	*ret = p;
	return 0;
}

static void pipe_close(struct sr_pipe *p)
{
	safe_close(p->fd[0]);
	safe_close(p->fd[1]);
	free(p);
}

int pipe_pool_init(struct pipe_pool *pool)
{
	*pool = (struct pipe_pool){};
	return pipe_open(&pool->reserve);
}

int pipe_pool_get(struct pipe_pool *pool, struct sr_pipe **ret)
{
	struct sr_pipe *p = pool->free;
	int r;

	if (p) {
		pool->free = p->next;
		pool->n_free--;
		p->next = NULL;
		*ret = p;
		return 0;
	}

	r = pipe_open(ret);
	if ((r == -EMFILE || r == -ENFILE) && pool->reserve && !pool->reserve_lent) {
		pool->reserve_lent = true;
		*ret = pool->reserve;
		return 0;
	}
	return r;
}

void pipe_pool_put(struct pipe_pool *pool, struct sr_pipe *p, size_t bytes_in_it)
{
	if (p == pool->reserve) {
		pool->reserve_lent = false;
		if (bytes_in_it == 0)
			return;
		/* Bytes stuck in the reserve die with their connection; the reserve is renewed. */
		pipe_close(p);
		pool->reserve = NULL;
		(void)pipe_open(&pool->reserve);
		return;
	}
	/* A pipe with bytes in it belongs to its flow, and goes with it. */
	if (bytes_in_it > 0 || pool->n_free >= PIPE_POOL_MAX) {
		pipe_close(p);
		return;
	}
	p->next = pool->free;
	pool->free = p;
	pool->n_free++;
}

void pipe_pool_clear(struct pipe_pool *pool)
{
	while (pool->free) {
		struct sr_pipe *p = pool->free;

		pool->free = p->next;
		pipe_close(p);
	}
	pool->n_free = 0;
}

void pipe_pool_done(struct pipe_pool *pool)
{
	pipe_pool_clear(pool);
	if (pool->reserve)
		pipe_close(pool->reserve);
	pool->reserve = NULL;
}
