// SPDX-License-Identifier: GPL-2.0
/*
 * The userspace path. A flow starts on recv()/send(): for a message of a few bytes that is two
 * syscalls, where splice pays for a pipe and page references both ways. Once a flow carries bulk
 * (COPY_BULK in one wakeup, as HAProxy's splice-auto judges by a full buffer) it moves to
 * splice(2): socket -> pipe -> socket, never copied into this process. Either way a full
 * destination stops the reads: backpressure both ways.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "splice-path.h"
#include "stats.h"

/* Bytes asked of one splice() call: the default pipe size. */
#define SPLICE_CHUNK (64 * 1024)
/* Splice calls per flow per wakeup, so that one busy flow can't starve the others. */
#define SPLICE_BATCH 16
/* Bytes asked of one recv() of a copy flow: a request or a small response fits whole. */
#define COPY_CHUNK (16 * 1024)
/* Read in one wakeup, this makes a copy flow bulk: it moves to splice for good. */
#define COPY_BULK (4 * COPY_CHUNK)

/* One buffer for every copy flow of the process: nothing stays in it between two syscalls. */
static uint8_t copy_buf[COPY_CHUNK];

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
	m->kept_pipes++;
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
		m->kept_pipes--;
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

/*
 * One read and send of a copy flow: 1 after a read (*ret_read bytes of COPY_CHUNK, 0 at EOF), 0
 * if the source would block, or SPLICE_DST_GONE, or a negative errno. What send() doesn't take
 * waits in f->buf, at most COPY_CHUNK, and goes out before the next read.
 */
static int copy_once(struct movers *m, struct flow *f, size_t *ret_read)
{
	ssize_t n, sent;
	int r;

	do
		n = recv(f->src->fd, copy_buf, sizeof(copy_buf), MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		r = negative_errno();
		if (r == -EAGAIN)
			return 0;
		if (errno_is_disconnect(-r))
			return r;
		return log_debug_errno(r, "Connection %" PRIu64 ": recv from source: %m",
				       f->conn_id);
	}
	*ret_read = (size_t)n;
	if (n == 0) {
		f->src_eof = true;
		return 1;
	}

	do
		sent = send(f->dst->fd, copy_buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (sent < 0 && errno == EINTR);
	if (sent < 0) {
		if (errno != EAGAIN) {
			log_debug_errno(errno, "Connection %" PRIu64 ": write failed: %m",
					f->conn_id);
			return SPLICE_DST_GONE;
		}
		sent = 0;
	}
	f->bytes += (uint64_t)sent;
	stat_add(m->stats->copied_bytes[f->dir], (uint64_t)sent);

	if (sent < n) {
		if (!f->buf) {
			f->buf = malloc(COPY_CHUNK);
			if (!f->buf)
				return -ENOMEM;
		}
		memcpy(f->buf, copy_buf + sent, (size_t)(n - sent));
		f->buf_off = 0;
		f->buf_len = (size_t)(n - sent);
	}
	return 1;
}

/* Send what a copy flow could not: 1 when it is all out, 0 if it would block, or SPLICE_DST_GONE. */
static int copy_flush(struct movers *m, struct flow *f)
{
	ssize_t n = flow_send_buf(f);

	if (n < 0) {
		log_debug_errno((int)n, "Connection %" PRIu64 ": write failed: %m", f->conn_id);
		return SPLICE_DST_GONE;
	}
	stat_add(m->stats->copied_bytes[f->dir], (uint64_t)n);
	if (f->buf_off < f->buf_len)
		return 0;
	/* Idle flows hold no buffer. */
	f->buf = mfree(f->buf);
	f->buf_len = f->buf_off = 0;
	return 1;
}

int splice_flow_move(struct movers *m, struct flow *f)
{
	struct sr_proxy_stats *st = m->stats;
	size_t burst = 0;
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

		if (f->buf_len > f->buf_off) {
			r = copy_flush(m, f);
			if (r == 0) {
				f->waits = WAIT_DST_OUT;
				return SPLICE_BLOCKED;
			}
			if (r != 1)
				return r;
		}
		if (f->src_eof) {
			splice_flow_release(m, f);
			return SPLICE_EOF;
		}

		if (f->copy && burst >= COPY_BULK) {
			f->copy = false;
			stat_inc(st->promoted_splice[f->dir]);
			log_debug("Connection %" PRIu64 ": %s carries bulk: moving to splice.",
				  f->conn_id,
				  f->dir == SR_DIR_UP ? "client->backend" : "backend->client");
		}
		if (f->copy) {
			size_t got = 0;

			splice_flow_release(m, f);
			r = copy_once(m, f, &got);
			if (r != 0 && r != 1)
				return r;
			/*
			 * A short read emptied the socket: another recv() would only say EAGAIN
			 * (half of all recv() calls in a request-response run). The epoll set is
			 * level-triggered, so bytes that arrive meanwhile still wake the flow.
			 */
			if (r == 0 || (got > 0 && got < COPY_CHUNK && f->buf_len == 0)) {
				f->waits = WAIT_SRC_IN;
				return SPLICE_BLOCKED;
			}
			burst += got;
			continue;
		}

		splice_flow_release(m, f);
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
