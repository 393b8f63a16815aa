/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the two movers work on: a connection's sockets (ends) and its two one-way flows, and what
 * every flow of a process shares (struct movers). The kernel mover is kernel-path.c, the
 * userspace one splice-path.c; flow.c runs a flow on either.
 */
#ifndef SR_MOVERS_H
#define SR_MOVERS_H

#include <sys/socket.h>

#include "../bpf/sockredir.h"
#include "pipe-pool.h"
#include "util.h"

struct bpf_state;
struct grace;
struct connection;

/* Shared by every flow of a process; set up once, by the layers above. */
struct movers {
	struct bpf_state *bpf; /* NULL when every connection uses splice */
	bool kernel_upload;
	/*
	 * --mode auto: a connection takes the kernel path only while no more connections are open
	 * than there are CPUs (see connection_start()); --mode bpf and --kernel-upload always.
	 */
	bool adaptive;
	unsigned cpus; /* online CPUs, for adaptive */
	uint64_t upload_sndbuf;
	struct grace *grace;
	struct sr_proxy_stats *stats; /* the mmap of sr_proxy_stats, or of a shared page */
	struct pipe_pool pipes;
	bool said_upload_cut; /* flow.c: a backend's shutdown() cut a kernel upload, said once */
	size_t kept_pipes;    /* pipes that flows own (struct flow, pipe_kept): 2 fds each */
	/*
	 * Test hooks, so that a backend that speaks first is certain to have bytes queued: a pause
	 * before a connection's kernel path is attached (SOCKREDIR_DEBUG_ATTACH_DELAY_USEC: the
	 * backend_spoke_first fallback), and one between that check and the insert
	 * (SOCKREDIR_DEBUG_INSERT_DELAY_USEC: the settling path). SOCKREDIR_DEBUG_SETTLE_ROUNDS
	 * lowers SETTLE_ROUNDS_MAX, so that the upload stops waiting for a settling download as it
	 * does for a backend that never pauses.
	 */
	uint64_t debug_attach_delay, debug_insert_delay;
	uint64_t settle_rounds_max;
};

/* Settle rounds the upload waits for before it starts outside the kernel (flow_settle()). */
#define SETTLE_ROUNDS_MAX 32

/* Largest buffer of by-hand bytes per flow (flow.buf); past it, writing comes before reading. */
#define HELD_BUF_MAX (1024 * 1024)

/* Out of fds (for a pipe or a backend socket): try again after this. */
#define FD_RETRY (50 * USEC_PER_MSEC)

/* One socket of a connection. */
struct end {
	struct connection *conn; /* the owner, for events from the epoll set; opaque down here */
	int fd;
	uint64_t cookie; /* SO_COOKIE, the key in the BPF maps; 0 until needed */
	uint32_t events; /* what the proxy's epoll set watches on it now (0: not in the set) */
	bool is_unix;
	bool in_verdict; /* in sr_verdict (its received bytes move in the kernel) */
	bool in_targets; /* in sr_targets (a redirect target) */
	bool has_peer;	 /* an sr_peers entry keyed by this socket's cookie exists */
	bool rdhup;	 /* EPOLLRDHUP seen: the peer shut down writing */
	bool hup;	 /* EPOLLHUP or EPOLLERR seen: the peer is gone for good */
};

enum flow_state {
	FLOW_IDLE,     /* not started yet: the backend is still connecting */
	FLOW_SETTLING, /* kernel: moving by hand bytes queued before the socket was in the map */
	FLOW_OPEN,     /* moving bytes */
	FLOW_DRAINING, /* the source hit EOF: letting bytes in flight reach the destination */
	FLOW_DISCARD,  /* the destination is gone: reading and dropping until the source ends */
	FLOW_DONE,     /* the destination's write side is shut down (or it is gone) */
};

/* Why a flow waits; its connection turns these into epoll events and a timer. */
enum {
	WAIT_SRC_IN = 1 << 0,	 /* readable source */
	WAIT_SRC_RDHUP = 1 << 1, /* the source's peer shut down writing */
	WAIT_DST_OUT = 1 << 2,	 /* writable destination */
	WAIT_TIMER = 1 << 3,	 /* flow->wake_at */
	WAIT_GRACE = 1 << 4,	 /* an RCU grace period (see grace.h) */
};

/* One direction of a connection: up is client -> backend, down is backend -> client. */
struct flow {
	uint64_t conn_id; /* the connection's, for logs */
	enum sr_direction dir;
	enum flow_state state;
	bool kernel; /* moved by sr_redirect; else in userspace: */
	bool copy;   /* ... by recv()/send(), until it carries bulk; then by splice */
	struct end *src, *dst;
	unsigned waits;
	uint64_t wake_at;  /* CLOCK_MONOTONIC µs, with WAIT_TIMER */
	uint64_t backoff;  /* current poll interval while draining */
	uint64_t deadline; /* give up on DRAINING/DISCARD at this time */
	uint64_t bytes;	   /* moved by userspace on this flow */

	/*
	 * userspace mover; the pipe also holds what a copy flow's send() could not take, so that
	 * no byte in flight lives in this process's memory (a crash would lose it)
	 */
	struct sr_pipe *pipe; /* borrowed from the pool while it holds bytes */
	size_t in_pipe;
	bool src_eof;
	/*
	 * The pipe is the flow's own until the connection closes: it was put in systemd's fd store
	 * with the sockets (keep.c), so that bytes in it survive a crash of this process.
	 */
	bool pipe_kept;

	/*
	 * kernel mover: bytes read by hand (queued before insertion, or kept by SR_PEER_HOLD);
	 * copy mover: what send() could not take, at most COPY_CHUNK (splice-path.c)
	 */
	uint8_t *buf;
	size_t buf_len, buf_off, buf_cap; /* buf_cap: HELD_BUF_MAX, or one larger queue */
	bool holding;			  /* SR_PEER_HOLD is set on the source */
	unsigned settle_rounds;
	uint64_t grace_ticket;
	uint64_t last_pending;	   /* drain progress: the destination's backlog at the last poll */
	uint64_t last_src_pending; /* the same for source bytes the verdict has yet to take */
	bool dst_checked; /* the destination's map entry was checked after its peer's EOF */
};

/* Does a flow in userspace hold bytes for its destination, in its pipe or its buffer? */
static inline bool flow_holds_bytes(const struct flow *f)
{
	return f->in_pipe > 0 || f->buf_len > f->buf_off;
}

/*
 * Send f->buf from buf_off until it is empty or the destination would block (both movers keep
 * bytes there: see struct flow). Returns the bytes sent, or a negative errno other than -EAGAIN.
 */
static inline ssize_t flow_send_buf(struct flow *f)
{
	size_t sent = 0;

	while (f->buf_off < f->buf_len) {
		ssize_t n = send(f->dst->fd, f->buf + f->buf_off, f->buf_len - f->buf_off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return negative_errno();
		}
		f->buf_off += (size_t)n;
		f->bytes += (uint64_t)n;
		sent += (size_t)n;
	}
	return (ssize_t)sent;
}

#endif /* SR_MOVERS_H */
