// SPDX-License-Identifier: GPL-2.0
/*
 * The connection state machine, shared by both data paths.
 *
 * A connection has two flows: up (client -> backend) and down (backend -> client). Each is moved
 * by the kernel (sr_redirect) or by splice; the states are the same:
 *
 *   IDLE -> [SETTLING ->] OPEN -> DRAINING -> DONE
 *                           \-> DISCARD -> DONE      (destination gone: drop the rest)
 *
 * A flow reaches DONE when it has shut down its destination's write side, after the last byte:
 * that is how half-close travels. The connection ends when both flows are DONE.
 */
#include <inttypes.h>
#include <sys/epoll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>

#include "backend.h"
#include "setup.h"
#include "bpf-loader.h"
#include "connection.h"
#include "kernel-path.h"
#include "log.h"
#include "proxy.h"
#include "splice-path.h"
#include "stats.h"

/* Polling the drain probe: first check at once, then back off to this. */
#define DRAIN_POLL_MIN 20 /* µs */
#define DRAIN_POLL_MAX (10 * USEC_PER_MSEC)
/* After the backend is gone and the reply is out, how long the client may take to close. */
#define LINGER_TIMEOUT (5 * USEC_PER_SEC)
/* A destination backlog that does not shrink for this long belongs to a client that left. */
#define DRAIN_STALL_TIMEOUT (60 * USEC_PER_SEC)
/* Settle rounds before a flow stops handing back to the kernel (see flow_settle()). */
#define SETTLE_ROUNDS_MAX 32

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata);

uint64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / NSEC_PER_USEC;
}

static const char *flow_name(const struct flow *f)
{
	return f->dir == SR_DIR_UP ? "client->backend" : "backend->client";
}

static const char *const flow_state_table[] = {
	[FLOW_IDLE] = "idle",	      [FLOW_SETTLING] = "settling", [FLOW_OPEN] = "open",
	[FLOW_DRAINING] = "draining", [FLOW_DISCARD] = "discard",   [FLOW_DONE] = "done",
};

static void flow_set_state(struct flow *f, enum flow_state state)
{
	log_debug("Connection %" PRIu64 ": %s %s%s -> %s.", f->conn->id, flow_name(f),
		  f->kernel ? "(kernel) " : "", flow_state_table[f->state],
		  flow_state_table[state]);
	f->state = state;
}

static void end_close(struct end *e)
{
	/* close() takes the fd out of the epoll set by itself. */
	e->fd = safe_close(e->fd);
	e->events = 0;
}

static void connection_free(struct connection *c)
{
	struct proxy *p = c->proxy;

	setup_done(c);
	splice_flow_release(&p->pipes, &c->up);
	splice_flow_release(&p->pipes, &c->down);
	free(c->up.buf);
	free(c->down.buf);
	c->timer = sd_event_source_disable_unref(c->timer);

	/* Closing takes the sockets out of the sockhashes; the peer entries we remove. */
	end_close(&c->client);
	end_close(&c->backend);
	if (p->bpf)
		kernel_path_forget(c);

	if (c->prev)
		c->prev->next = c->next;
	else
		p->connections = c->next;
	if (c->next)
		c->next->prev = c->prev;
	stat_dec(p->stats->open);
	p->n_open--;

	/*
	 * In an event batch, later events may still point at this connection: mark it, and free
	 * it when the batch is over.
	 */
	if (p->dispatching) {
		c->dead = true;
		c->next = p->dead;
		p->dead = c;
	} else
		free(c);

	proxy_connection_closed(p);
}

void connection_reap(struct proxy *p)
{
	while (p->dead) {
		struct connection *c = p->dead;

		p->dead = c->next;
		free(c);
	}
}

void connection_abort(struct connection *c)
{
	log_debug("Connection %" PRIu64 ": closing at once.", c->id);
	connection_free(c);
}

int connection_watch(struct end *e, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = e };
	int op;

	if (e->fd < 0 || events == e->events)
		return 0;
	/*
	 * Out of the set rather than watched for nothing: EPOLLHUP and EPOLLERR can't be masked,
	 * and a socket left in the set would keep reporting them.
	 */
	op = events == 0 ? EPOLL_CTL_DEL : e->events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
	if (epoll_ctl(e->conn->proxy->epoll_fd, op, e->fd, &ev) < 0)
		return negative_errno();
	e->events = events;
	return 0;
}

int connection_arm_timer(struct connection *c, uint64_t at)
{
	int r;

	if (at == c->timer_at)
		return 0;
	c->timer_at = at;
	if (at == 0)
		return c->timer ? sd_event_source_set_enabled(c->timer, SD_EVENT_OFF) : 0;
	if (!c->timer)
		/* Accuracy 1 µs: drain polls are short, and sd-event's default would add 250 ms. */
		return sd_event_add_time(c->proxy->event, &c->timer, CLOCK_MONOTONIC, at, 1,
					 on_timer, c);
	r = sd_event_source_set_time(c->timer, at);
	if (r < 0)
		return r;
	return sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
}

static uint32_t flow_src_events(const struct flow *f)
{
	return (f->waits & WAIT_SRC_IN ? EPOLLIN : 0) |
	       (f->waits & WAIT_SRC_RDHUP ? EPOLLRDHUP : 0);
}

static uint32_t end_events(struct connection *c, struct end *e)
{
	uint32_t ev = 0;

	for (struct flow *f = &c->up; f; f = f == &c->up ? &c->down : NULL) {
		if (f->src == e)
			ev |= flow_src_events(f);
		if (f->dst == e && (f->waits & WAIT_DST_OUT))
			ev |= EPOLLOUT;
	}
	/*
	 * EPOLLHUP and EPOLLERR can't be masked and stay raised; once seen, a socket is watched
	 * only while a flow still reads from it, or the loop would spin. A kernel flow "reads" by
	 * waiting for EPOLLRDHUP: keep that, or a download whose backend died while a write
	 * to it failed would never learn of its EOF (it stays set, so this can't spin either:
	 * the flow stops asking for it once it has seen it).
	 */
	if (e->hup)
		ev &= EPOLLIN | EPOLLRDHUP;
	return ev;
}

static uint64_t flow_timer(const struct flow *f)
{
	uint64_t t = 0;

	if (f->waits & WAIT_TIMER)
		t = f->wake_at;
	if (f->deadline && (t == 0 || f->deadline < t))
		t = f->deadline;
	return t;
}

static int connection_update(struct connection *c)
{
	uint64_t tu = flow_timer(&c->up), td = flow_timer(&c->down), t;
	int r;

	r = connection_watch(&c->client, end_events(c, &c->client));
	if (r >= 0)
		r = connection_watch(&c->backend, end_events(c, &c->backend));
	if (r < 0)
		return r;
	t = tu && td ? MIN(tu, td) : tu ? tu : td;
	return connection_arm_timer(c, t);
}

static void flow_wait_timer(struct flow *f)
{
	f->backoff = f->backoff ? MIN(f->backoff * 2, DRAIN_POLL_MAX) : DRAIN_POLL_MIN;
	f->wake_at = now_usec() + f->backoff;
	f->waits |= WAIT_TIMER;
}

static int flow_shutdown_dst(struct flow *f)
{
	/* The peer may be gone already; its EOF is then implied. */
	if (shutdown(f->dst->fd, SHUT_WR) < 0 && errno != ENOTCONN)
		log_debug_errno(errno, "Connection %" PRIu64 ": shutdown(%s) failed, ignoring: %m",
				f->conn->id, flow_name(f));
	flow_set_state(f, FLOW_DONE);
	f->waits = 0;
	f->deadline = 0;
	return 0;
}

/* The destination refuses bytes: nothing more can be delivered in this direction. */
static int flow_dst_gone(struct flow *f)
{
	struct connection *c = f->conn;

	splice_flow_release(&c->proxy->pipes, f);
	f->buf_len = f->buf_off = 0;
	f->dst->hup = true;
	if (f->dst == &c->client)
		return -ECONNRESET; /* the client is gone: abort the whole connection */

	/* The backend is gone. Keep reading the client, so its close is a clean FIN. */
	log_debug("Connection %" PRIu64 ": backend gone, discarding client bytes.", c->id);
	flow_set_state(f, f->kernel ? FLOW_DONE : FLOW_DISCARD);
	f->waits = 0;
	f->deadline = f->kernel ? 0 : now_usec() + LINGER_TIMEOUT;
	return 0;
}

/* Write what was read by hand. 1 when done, 0 waiting for EPOLLOUT, <0 error. */
static int flow_write_held(struct flow *f)
{
	int r = kernel_flow_write_held(f);

	if (r == 0)
		f->waits |= WAIT_DST_OUT;
	return r;
}

/*
 * Is the destination's psock backlog empty? 1 yes, 0 not yet (a poll is scheduled), <0 error.
 * A backlog that makes no progress for DRAIN_STALL_TIMEOUT (a client that stopped reading)
 * ends the connection.
 */
static int flow_dst_drained(struct flow *f)
{
	uint64_t pending;
	int r;

	r = kernel_flow_dst_pending(f, &pending);
	if (r < 0)
		return r;
	if (pending == 0) {
		f->backoff = 0;
		f->deadline = 0;
		return 1;
	}
	if (pending != f->last_pending || f->deadline == 0) {
		log_debug("Connection %" PRIu64 ": %s: %" PRIu64 " queued for the destination.",
			  f->conn->id, flow_name(f), pending);
		f->last_pending = pending;
		f->deadline = now_usec() + DRAIN_STALL_TIMEOUT;
	}
	flow_wait_timer(f);
	return 0;
}

/* Read by hand, wait for the backlog, write. 1 when all is out, 0 waiting, <0 error. */
static int flow_move_held(struct flow *f, bool *ret_eof)
{
	bool full;
	int r;

	for (;;) {
		r = kernel_flow_read_held(f, ret_eof, &full);
		if (r < 0)
			return r;
		if (f->buf_len == 0)
			return 1;
		/* What we read came after every skb already redirected: let those go first. */
		r = flow_dst_drained(f);
		if (r <= 0)
			return r;
		r = flow_write_held(f);
		if (r <= 0)
			return r;
		if (!full || *ret_eof)
			return 1;
	}
}

/*
 * The source reached EOF, on the kernel path. Every byte it sent must be out before
 * shutdown(), or the kernel throws it away:
 *  1. the verdict must have taken all of the source's bytes; a Unix source's bytes that it never
 *     took (queued before insertion, or held) are read by hand;
 *  2. the destination's psock backlog must be empty (the drain probe);
 *  3. then the bytes read by hand go out, and then the FIN.
 */
static int flow_drain(struct flow *f)
{
	uint64_t pending = 0;
	bool eof = false;
	int r;

	f->waits = 0;
	if (f->dst->hup && f->dst != &f->conn->client)
		return flow_dst_gone(f);

	r = kernel_flow_src_pending(f, &pending);
	if (r < 0)
		goto out;
	if (f->src->is_unix && (pending > 0 || f->buf_len > 0)) {
		/* Usually nothing is left: only then is a buffer allocated and read into. */
		r = flow_move_held(f, &eof);
		if (r <= 0)
			goto out;
		r = kernel_flow_src_pending(f, &pending);
		if (r < 0)
			goto out;
	}
	if (pending > 0) {
		/* The verdict has yet to see them (TCP), or held bytes are on their way (Unix). */
		if (f->backoff == 0)
			log_debug("Connection %" PRIu64 ": %s: waiting for %" PRIu64
				  " source bytes.",
				  f->conn->id, flow_name(f), pending);
		flow_wait_timer(f);
		return 0;
	}
	r = flow_dst_drained(f);
	if (r <= 0)
		goto out;
	return flow_shutdown_dst(f);
out:
	if (r == -EPIPE || r == -ECONNRESET)
		return flow_dst_gone(f);
	return r;
}

static void flow_settled(struct flow *f);
static void connection_start_upload(struct connection *c, bool kernel);

/*
 * A Unix source had bytes queued before it joined sr_verdict. The verdict would see them only
 * one skb per later send (each sk_data_ready moves one skb), so they are moved by hand:
 *
 *  1. With SR_PEER_HOLD set, sr_redirect keeps every new skb on the socket instead of
 *     redirecting it, so nothing can overtake what we read.
 *  2. Read everything, wait until the destination's backlog is empty (skbs redirected before
 *     the hold), write what we read.
 *  3. Clear the hold, wait an RCU grace period (every verdict that saw the hold has finished),
 *     and check the socket is empty. sr_redirect keeps holding while held bytes remain unread,
 *     so a late one can't be overtaken either. If something is left, go back to 1.
 *
 * A backend that never pauses could keep this going: after SETTLE_ROUNDS_MAX rounds the flow
 * stays held and is copied by hand for good.
 */
static int flow_settle(struct flow *f)
{
	uint64_t pending;
	bool eof = false;
	int r;

	f->waits = 0;
	if (f->grace_ticket) {
		if (!grace_passed(f->conn->proxy->grace, f->grace_ticket)) {
			f->waits = WAIT_GRACE;
			return 0;
		}
		f->grace_ticket = 0;
		r = kernel_flow_src_pending(f, &pending);
		if (r < 0)
			return r;
		if (pending == 0) {
			flow_settled(f);
			return 0;
		}
		f->settle_rounds++;
	}

	r = kernel_flow_hold(f, true);
	if (r < 0)
		return r;
	r = flow_move_held(f, &eof);
	if (r < 0)
		return r == -EPIPE || r == -ECONNRESET ? flow_dst_gone(f) : r;
	if (r == 0)
		return 0;
	if (eof || f->src->rdhup) {
		flow_set_state(f, FLOW_DRAINING);
		connection_start_upload(f->conn, false);
		return flow_drain(f);
	}

	if (f->settle_rounds >= SETTLE_ROUNDS_MAX) {
		/* Copied by hand for good: wake for every byte, as a userspace proxy would. */
		f->waits = WAIT_SRC_IN | WAIT_SRC_RDHUP;
		return 0;
	}

	r = kernel_flow_hold(f, false);
	if (r < 0)
		return r;
	f->grace_ticket = grace_request(f->conn->proxy->grace);
	f->waits = WAIT_GRACE;
	return 0;
}

static void flow_settled(struct flow *f)
{
	struct connection *c = f->conn;

	log_debug("Connection %" PRIu64 ": %s settled after %u round(s).", c->id, flow_name(f),
		  f->settle_rounds + 1);
	flow_set_state(f, FLOW_OPEN);
	f->waits = WAIT_SRC_RDHUP;
	connection_start_upload(c, true);
}

static int flow_run(struct flow *f)
{
	struct connection *c = f->conn;
	int r;

	if (f->deadline && now_usec() >= f->deadline) {
		log_debug("Connection %" PRIu64 ": %s timed out in state %d.", c->id, flow_name(f),
			  f->state);
		return -ETIMEDOUT;
	}

	switch (f->state) {
	case FLOW_IDLE:
	case FLOW_DONE:
		f->waits = 0;
		return 0;

	case FLOW_SETTLING:
		return flow_settle(f);

	case FLOW_OPEN:
		if (f->kernel) {
			if (f->src->rdhup) {
				flow_set_state(f, FLOW_DRAINING);
				f->backoff = 0;
				return flow_drain(f);
			}
			f->waits = WAIT_SRC_RDHUP;
			return 0;
		}
		r = splice_flow_move(&c->proxy->pipes, f);
		if (r == SPLICE_BLOCKED)
			return 0;
		if (r == -EMFILE || r == -ENFILE) {
			/* No fd for a pipe: wait for connections to give some back. */
			proxy_pause_accept(c->proxy, r);
			f->waits = WAIT_TIMER;
			f->wake_at = now_usec() + FD_RETRY;
			return 0;
		}
		if (r == SPLICE_YIELD) {
			f->waits = f->in_pipe ? WAIT_DST_OUT : WAIT_SRC_IN;
			return 0;
		}
		if (r == SPLICE_EOF)
			return flow_shutdown_dst(f);
		if (r == SPLICE_DST_GONE)
			return flow_dst_gone(f);
		/* A source error: a reset client aborts; a reset backend ends like EOF. */
		if (f->src == &c->client)
			return r;
		splice_flow_release(&c->proxy->pipes, f);
		return flow_shutdown_dst(f);

	case FLOW_DRAINING:
		return flow_drain(f);

	case FLOW_DISCARD:
		r = splice_flow_discard(f);
		if (r < 0 || r == SPLICE_EOF) {
			flow_set_state(f, FLOW_DONE);
			f->waits = 0;
			f->deadline = 0;
			return 0;
		}
		if (r == SPLICE_YIELD)
			f->waits = WAIT_SRC_IN;
		return 0;
	}
	return 0;
}

void connection_run(struct connection *c)
{
	int r;

	if (c->phase != PHASE_RUN)
		return;

	r = flow_run(&c->down);
	if (r >= 0)
		r = flow_run(&c->up);
	if (r < 0) {
		log_debug_errno(r, "Connection %" PRIu64 ": ending: %m", c->id);
		connection_abort(c);
		return;
	}

	/*
	 * The backend closed for good and its last bytes are out: nothing the client sends can
	 * be delivered. Read and drop it for a while, so that the client sees a FIN, not a reset.
	 */
	if (c->backend.hup && c->down.state == FLOW_DONE && c->up.state == FLOW_OPEN) {
		if (c->up.kernel) {
			/* The verdict drops what it can't redirect; the client's close stays clean. */
			flow_set_state(&c->up, FLOW_DONE);
		} else if (c->up.in_pipe == 0) {
			flow_set_state(&c->up, FLOW_DISCARD);
			c->up.deadline = now_usec() + LINGER_TIMEOUT;
			(void)flow_run(&c->up);
		}
	}
	if (c->up.state == FLOW_DONE && c->down.state == FLOW_DONE) {
		log_debug("Connection %" PRIu64 ": finished (up %" PRIu64 ", down %" PRIu64
			  " bytes by hand).",
			  c->id, c->up.bytes, c->down.bytes);
		connection_free(c);
		return;
	}

	r = connection_update(c);
	if (r < 0) {
		log_warning_errno(r, "Connection %" PRIu64 ": failed to watch sockets: %m", c->id);
		connection_abort(c);
	}
}

/*
 * Start the client->backend flow. With --kernel-upload it waits until the download has settled
 * (a client inserted earlier could have its bytes redirected while we still move the backend's
 * by hand), and it goes to the kernel only if the download did (kernel true).
 */
static void connection_start_upload(struct connection *c, bool kernel)
{
	struct proxy *p = c->proxy;
	bool settle = false;
	int reason = SR_FALLBACK_MODE;

	if (c->up.state != FLOW_IDLE)
		return;
	if (kernel && p->kernel_upload)
		reason = kernel_path_attach_upload(c, &settle);
	if (reason == 0) {
		stat_inc(p->stats->kernel_upload);
		c->up.kernel = true;
		flow_set_state(&c->up, settle ? FLOW_SETTLING : FLOW_OPEN);
		return;
	}
	if (p->kernel_upload)
		log_debug("Connection %" PRIu64 ": client->backend stays on splice (reason %d).",
			  c->id, reason);
	flow_set_state(&c->up, FLOW_OPEN);
}

static const char *const fallback_text[_SR_FALLBACK_MAX] = {
	[SR_FALLBACK_MODE] = "kernel path not in use",
	[SR_FALLBACK_CLIENT_STATE] = "client socket refused by sockmap (already half-closed)",
	[SR_FALLBACK_BACKEND_STATE] = "backend socket refused by sockmap",
	[SR_FALLBACK_MAP_FULL] = "BPF map full (see --map-entries)",
	[SR_FALLBACK_OTHER] = "sockmap insert failed",
};

static void connection_fallback(struct connection *c, int reason)
{
	struct proxy *p = c->proxy;

	c->fallback = reason;
	/* Say it once per reason at info level; the counters have the rest. */
	if (stat_inc(p->stats->fallback[reason]) == 1 && reason != SR_FALLBACK_MODE)
		log_info("Connection %" PRIu64 " uses splice: %s. Further fallbacks are counted "
			 "in " SR_MAP_PROXY_STATS ".",
			 c->id, fallback_text[reason]);
	else
		log_debug("Connection %" PRIu64 " uses splice: %s.", c->id, fallback_text[reason]);
}

void connection_start(struct connection *c)
{
	struct proxy *p = c->proxy;
	bool settle = false;
	int reason = SR_FALLBACK_MODE;

	c->phase = PHASE_RUN;
	c->last_active = now_usec();

	if (p->debug_insert_delay)
		usleep((useconds_t)p->debug_insert_delay);
	if (p->bpf)
		reason = kernel_path_attach(c, &settle);

	if (reason == 0) {
		stat_inc(p->stats->kernel);
		c->down.kernel = true;
		flow_set_state(&c->down, settle ? FLOW_SETTLING : FLOW_OPEN);
		/* With --kernel-upload, a settling download starts the upload when it is done. */
		if (!settle || !p->kernel_upload)
			connection_start_upload(c, true);
	} else {
		connection_fallback(c, reason);
		flow_set_state(&c->down, FLOW_OPEN);
		connection_start_upload(c, false);
	}
	connection_run(c);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct connection *c = userdata;

	c->timer_at = 0;
	if (c->phase != PHASE_RUN) {
		setup_run(c, NULL, 0);
		return 0;
	}
	c->up.waits &= ~WAIT_TIMER;
	c->down.waits &= ~WAIT_TIMER;
	connection_run(c);
	return 0;
}

void connection_io(struct end *e, uint32_t revents)
{
	struct connection *c = e->conn;

	if (c->dead)
		return;
	if (c->phase != PHASE_RUN) {
		setup_run(c, e, revents);
		return;
	}

	if (revents & EPOLLERR) {
		if (e == &c->client) {
			/* The client reset the connection: nothing more can reach it. */
			log_debug_errno(backend_connect_finish(e->fd),
					"Connection %" PRIu64 ": client socket error: %m", c->id);
			connection_abort(c);
			return;
		}
		/*
		 * A Unix backend that closes with our bytes unread sets ECONNRESET on our socket,
		 * but its reply is still queued for us: read that before giving up.
		 */
		e->hup = true;
	}
	if (revents & EPOLLHUP)
		e->hup = true;
	if (revents & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		e->rdhup = true;
	connection_run(c);
}

int connection_bytes(struct connection *c, uint64_t *ret)
{
	uint64_t total = c->up.bytes + c->down.bytes;
	struct sr_peer peer;
	int r;

	/* Bytes sr_redirect moved are counted per receiving socket in sr_peers. */
	for (struct flow *f = &c->up; f; f = f == &c->up ? &c->down : NULL) {
		if (!f->kernel || !f->src->has_peer)
			continue;
		r = bpf_peer_get(c->proxy->bpf, f->src->cookie, &peer);
		if (r < 0)
			return r;
		total += peer.bytes;
	}
	*ret = total;
	return 0;
}
