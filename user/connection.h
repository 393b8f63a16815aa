/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One client connection and its two flows. The same state machine drives both data paths: a
 * flow is moved either by the kernel (sr_redirect) or by splice(2), and only the mover's
 * primitives differ.
 */
#ifndef SR_CONNECTION_H
#define SR_CONNECTION_H

#include <systemd/sd-event.h>

#include "../bpf/sockredir.h"
#include "util.h"

struct proxy;
struct connection;
struct sr_pipe;
struct route;
struct backend;
struct listener;

/* One socket of a connection. */
struct end {
	struct connection *conn;
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

/* Out of fds (for a pipe or a backend socket): try again after this. */
#define FD_RETRY (50 * USEC_PER_MSEC)

/* Why a flow waits; the connection turns these into epoll events and a timer. */
enum {
	WAIT_SRC_IN = 1 << 0,	 /* readable source */
	WAIT_SRC_RDHUP = 1 << 1, /* the source's peer shut down writing */
	WAIT_DST_OUT = 1 << 2,	 /* writable destination */
	WAIT_TIMER = 1 << 3,	 /* flow->wake_at */
	WAIT_GRACE = 1 << 4,	 /* an RCU grace period (see grace.h) */
};

struct flow {
	struct connection *conn;
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

	/* kernel mover: bytes read by hand (queued before insertion, or kept by SR_PEER_HOLD) */
	uint8_t *buf;
	size_t buf_len, buf_off;
	bool holding; /* SR_PEER_HOLD is set on the source */
	unsigned settle_rounds;
	uint64_t grace_ticket;
	uint64_t last_pending; /* drain progress: the destination's backlog at the last poll */
};

/* A connection first chooses and reaches its backend (setup.c), then moves bytes. */
enum connection_phase {
	PHASE_PEEK,    /* reading the client's Host or SNI to choose a route */
	PHASE_CONNECT, /* connecting to a backend of the route, with failover */
	PHASE_RUN,     /* both flows running */
};

struct connection {
	struct proxy *proxy;
	uint64_t id;
	enum connection_phase phase;
	struct end client, backend;
	struct flow up, down; /* up: client -> backend; down: backend -> client */
	sd_event_source *timer;
	uint64_t timer_at;

	/* setup.c */
	const char *listener_name; /* borrowed from the listener, which outlives us */
	uint64_t deadline;	   /* of the peek, then of the whole connect attempt */
	struct route *route;	   /* chosen route, referenced until connected */
	struct backend *target;	   /* the backend connected to (referenced; active count) */
	uint64_t tried;		   /* route backends tried in this pass (bitmask) */
	unsigned passes;	   /* rounds over the route's backends */
	int last_error;		   /* the last connect error, for the log */
	bool waiting_fd;	   /* out of fds for the backend socket; proxy->n_waiting_fd */

	/* --idle-timeout: the byte count last seen and when it last changed */
	uint64_t last_bytes;
	uint64_t last_active;

	enum sr_fallback_reason fallback;
	bool dead; /* freed during an event batch: the memory goes after the batch */
	struct connection *prev, *next;
};

/* Close at once, whatever is in flight (drain timeout, shutdown, idle timeout). */
void connection_abort(struct connection *c);
/* Run both flows after something they wait for happened. Frees c when it is finished. */
void connection_run(struct connection *c);
/* Connected, with any PROXY header sent: put it on a data path and start both flows. */
void connection_start(struct connection *c);
/* Bytes moved so far, both ways, both paths: for --idle-timeout. */
int connection_bytes(struct connection *c, uint64_t *ret);

/* For setup.c: watch a socket (0 stops watching), and arm the connection's timer (0: off). */
int connection_watch(struct end *e, uint32_t events);
int connection_arm_timer(struct connection *c, uint64_t at);
/* An event on a connection socket, from the proxy's epoll set. */
void connection_io(struct end *e, uint32_t revents);
/* Free the connections that ended during an event batch. */
void connection_reap(struct proxy *p);

uint64_t now_usec(void);

#endif /* SR_CONNECTION_H */
