// SPDX-License-Identifier: GPL-2.0
/*
 * The userspace path. Bytes go socket -> pipe -> socket with splice(2), so they are never copied
 * into this process, and a full destination stops the reads: backpressure both ways.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <sys/socket.h>

#include "log.h"
#include "splice-path.h"
#include "stats.h"

/* Bytes asked of one splice() call: the default pipe size. */
#define SPLICE_CHUNK (64 * 1024)
/* Splice calls per flow per wakeup, so that one busy flow can't starve the others. */
#define SPLICE_BATCH 16

int splice_flow_keep_pipe(struct movers *m, struct flow *f)
{
	int r;

	if (f->pipe_kept)
		return 0;
	/* The reserve must go back to the pool: it is what lets every connection progress. */
	if (f->pipe && pipe_pool_is_reserve(&m->pipes, f->pipe))
		return -EBUSY;
	if (!f->pipe) {
		r = pipe_pool_get(&m->pipes, &f->pipe);
		if (r < 0)
			return r;
		if (pipe_pool_is_reserve(&m->pipes, f->pipe)) {
			splice_flow_release(m, f);
			return -EMFILE;
		}
	}
	f->pipe_kept = true;
	return 0;
}

void splice_flow_free_pipe(struct movers *m, struct flow *f)
{
	if (f->pipe_kept && f->pipe) {
		safe_close(f->pipe->fd[0]);
		safe_close(f->pipe->fd[1]);
		free(f->pipe);
		f->pipe = NULL;
		f->in_pipe = 0;
	}
	f->pipe_kept = false;
	splice_flow_release(m, f);
}

void splice_flow_release(struct movers *m, struct flow *f)
{
	if (!f->pipe)
		return;
	if (f->pipe_kept) {
		/* Released with bytes in it only when they can't be delivered: drop them. */
		static uint8_t sink[64 * 1024];

		while (f->in_pipe > 0) {
			ssize_t n = read(f->pipe->fd[0], sink, MIN(sizeof(sink), f->in_pipe));

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			f->in_pipe -= (size_t)n;
		}
		f->in_pipe = 0;
		return;
	}
	pipe_pool_put(&m->pipes, f->pipe, f->in_pipe);
	f->pipe = NULL;
	f->in_pipe = 0;
}

static bool errno_is_disconnect(int e)
{
	return e == EPIPE || e == ECONNRESET || e == ENOTCONN || e == ESHUTDOWN ||
	       e == ECONNABORTED || e == ETIMEDOUT;
}

int splice_flow_move(struct movers *m, struct flow *f)
{
	struct sr_proxy_stats *st = m->stats;
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
						f->conn_id);
				return SPLICE_DST_GONE;
			}
			f->in_pipe -= (size_t)n;
			f->bytes += (uint64_t)n;
			stat_add(st->spliced_bytes[f->dir], (uint64_t)n);
			continue;
		}

		splice_flow_release(m, f);
		if (f->src_eof)
			return SPLICE_EOF;

		if (!f->pipe) {
			r = pipe_pool_get(&m->pipes, &f->pipe);
			if (r < 0)
				return r;
		}
		n = splice(f->src->fd, NULL, f->pipe->fd[1], NULL, SPLICE_CHUNK,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n < 0) {
			if (errno == EAGAIN) {
				splice_flow_release(m, f);
				f->waits = WAIT_SRC_IN;
				return SPLICE_BLOCKED;
			}
			if (errno == EINTR)
				continue;
			r = negative_errno();
			splice_flow_release(m, f);
			/* A reset source ends the stream as surely as a FIN, only less politely. */
			if (errno_is_disconnect(-r))
				return r;
			return log_debug_errno(r, "Connection %" PRIu64 ": splice from source: %m",
					       f->conn_id);
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
