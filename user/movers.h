/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the two movers work on: a connection's sockets (ends) and its two one-way flows, and what
 * every flow of a process shares (struct movers). The kernel mover is kernel-path.c, the
 * userspace one splice-path.c; flow.c runs a flow on either.
 */
#ifndef SR_MOVERS_H
#define SR_MOVERS_H

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
	uint64_t upload_sndbuf;
	struct grace *grace;
	struct sr_proxy_stats *stats; /* the mmap of sr_proxy_stats, or of a shared page */
	struct pipe_pool pipes;
	bool said_upload_cut; /* flow.c: a backend's shutdown() cut a kernel upload, said once */
};

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
	bool kernel; /* moved by sr_redirect; else by splice */
	struct end *src, *dst;
	unsigned waits;
	uint64_t wake_at;  /* CLOCK_MONOTONIC µs, with WAIT_TIMER */
	uint64_t backoff;  /* current poll interval while draining */
	uint64_t deadline; /* give up on DRAINING/DISCARD at this time */
	uint64_t bytes;	   /* moved by userspace on this flow */

	/* splice mover */
	struct sr_pipe *pipe; /* borrowed from the pool while it holds bytes */
	size_t in_pipe;
	bool src_eof;
	/*
	 * The pipe is the flow's own until the connection closes: it was put in systemd's fd store
	 * with the sockets (keep.c), so that bytes in it survive a crash of this process.
	 */
	bool pipe_kept;

	/* kernel mover: bytes read by hand (queued before insertion, or kept by SR_PEER_HOLD) */
	uint8_t *buf;
	size_t buf_len, buf_off;
	bool holding; /* SR_PEER_HOLD is set on the source */
	unsigned settle_rounds;
	uint64_t grace_ticket;
	uint64_t last_pending;	   /* drain progress: the destination's backlog at the last poll */
	uint64_t last_src_pending; /* the same for source bytes the verdict has yet to take */
	bool dst_checked; /* the destination's map entry was checked after its peer's EOF */
};

#endif /* SR_MOVERS_H */
