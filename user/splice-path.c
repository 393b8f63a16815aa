// SPDX-License-Identifier: GPL-2.0
/*
 * The userspace path. Bytes go socket -> pipe -> socket with splice(2), so they are never copied
 * into this process, and a full destination stops the reads: backpressure both ways.
 */
#include <fcntl.h>
#include <sys/socket.h>

#include "connection.h"
#include "log.h"
#include "proxy.h"
#include "splice-path.h"
#include "stats.h"

/* Empty pipes kept for reuse. Beyond this they are closed, so fds follow the busy connections. */
#define PIPE_POOL_MAX 64
/* Bytes asked of one splice() call: the default pipe size. */
#define SPLICE_CHUNK (64 * 1024)
/* Splice calls per flow per wakeup, so that one busy flow can't starve the others. */
#define SPLICE_BATCH 16

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

static int pipe_get(struct pipe_pool *pool, struct sr_pipe **ret)
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

int pipe_pool_init(struct pipe_pool *pool)
{
	*pool = (struct pipe_pool){};
	return pipe_open(&pool->reserve);
}

static void pipe_close(struct sr_pipe *p)
{
	safe_close(p->fd[0]);
	safe_close(p->fd[1]);
	free(p);
}

/* Only an empty pipe may go back: a pipe with bytes in it belongs to its flow. */
static void pipe_put(struct pipe_pool *pool, struct sr_pipe *p)
{
	if (p == pool->reserve) {
		pool->reserve_lent = false;
		return;
	}
	if (pool->n_free >= PIPE_POOL_MAX) {
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

void splice_flow_release(struct pipe_pool *pool, struct flow *f)
{
	if (!f->pipe)
		return;
	if (f->in_pipe == 0)
		pipe_put(pool, f->pipe);
	else if (f->pipe == pool->reserve) {
		/* Bytes stuck in the reserve die with their connection; the reserve is renewed. */
		pipe_close(f->pipe);
		pool->reserve = NULL;
		pool->reserve_lent = false;
		(void)pipe_open(&pool->reserve);
	} else
		pipe_close(f->pipe);
	f->pipe = NULL;
	f->in_pipe = 0;
}

static bool errno_is_disconnect(int e)
{
	return e == EPIPE || e == ECONNRESET || e == ENOTCONN || e == ESHUTDOWN ||
	       e == ECONNABORTED || e == ETIMEDOUT;
}

int splice_flow_move(struct pipe_pool *pool, struct flow *f)
{
	struct sr_proxy_stats *st = f->conn->proxy->stats;
	ssize_t n;
	int r;

	f->waits = 0;
	for (unsigned i = 0; i < SPLICE_BATCH; i++) {
		if (f->in_pipe > 0) {
			n = splice(f->pipe->fd[0], NULL, f->dst->fd, NULL, f->in_pipe,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n < 0) {
				if (errno == EAGAIN) {
					f->waits = WAIT_DST_OUT;
					return SPLICE_BLOCKED;
				}
				if (errno == EINTR)
					continue;
				log_debug_errno(errno, "Connection %" PRIu64 ": write failed: %m",
						f->conn->id);
				return SPLICE_DST_GONE;
			}
			f->in_pipe -= (size_t)n;
			f->bytes += (uint64_t)n;
			stat_add(st->spliced_bytes[f->dir], (uint64_t)n);
			continue;
		}

		if (f->pipe)
			splice_flow_release(pool, f);
		if (f->src_eof)
			return SPLICE_EOF;

		r = pipe_get(pool, &f->pipe);
		if (r < 0)
			return r;
		n = splice(f->src->fd, NULL, f->pipe->fd[1], NULL, SPLICE_CHUNK,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n < 0) {
			if (errno == EAGAIN) {
				splice_flow_release(pool, f);
				f->waits = WAIT_SRC_IN;
				return SPLICE_BLOCKED;
			}
			if (errno == EINTR)
				continue;
			r = negative_errno();
			splice_flow_release(pool, f);
			/* A reset source ends the stream as surely as a FIN, only less politely. */
			if (errno_is_disconnect(-r))
				return r;
			return log_debug_errno(r, "Connection %" PRIu64 ": splice from source: %m",
					       f->conn->id);
		}
		if (n == 0)
			f->src_eof = true;
		f->in_pipe += (size_t)n;
	}
	return SPLICE_YIELD;
}

int splice_flow_discard(struct flow *f)
{
	static uint8_t sink[64 * 1024];

	f->waits = 0;
	for (unsigned i = 0; i < SPLICE_BATCH; i++) {
		ssize_t n = recv(f->src->fd, sink, sizeof(sink), MSG_DONTWAIT);

		if (n == 0)
			return SPLICE_EOF;
		if (n < 0) {
			if (errno == EAGAIN) {
				f->waits = WAIT_SRC_IN;
				return SPLICE_BLOCKED;
			}
			if (errno == EINTR)
				continue;
			return negative_errno();
		}
	}
	return SPLICE_YIELD;
}
