// SPDX-License-Identifier: GPL-2.0
/*
 * Connections: their sockets, epoll set and timers, and the start of their two flows on a data
 * path. A connection ends when both flows are DONE (see flow.c), or when it is aborted.
 */
#include <inttypes.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "backend.h"
#include "flow.h"
#include "connection.h"
#include "grace.h"
#include "kernel-path.h"
#include "log.h"
#include "peek.h"
#include "splice-path.h"
#include "stats.h"

/* Events per epoll_wait(); the batch ends there, so that timers and signals get their turn. */
#define EPOLL_BATCH 256

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void end_close(struct end *e, bool held_elsewhere)
{
	/*
	 * close() takes the fd out of the epoll set by itself only when it drops the last reference
	 * to the socket. Another one, in systemd's fd store, would leave the set reporting events
	 * for a freed connection.
	 */
	if (held_elsewhere && e->events != 0)
		(void)connection_watch(e, 0);
	e->fd = safe_close(e->fd);
	e->events = 0;
}

/* The fastest mover either flow of c used. */
static enum sr_mover connection_mover(const struct connection *c)
{
	if (c->up.kernel || c->down.kernel)
		return SR_MOVER_KERNEL;
	if (c->up.copy && c->down.copy)
		return SR_MOVER_COPY;
	return SR_MOVER_SPLICE;
}

static void connection_free(struct connection *c)
{
	struct connections *cs = c->set;

	bool left_for_next = c->keep_bag && cs->handing_over;
	bool shared = c->keep_bag || c->held_elsewhere; /* systemd's store has its sockets too */

	if (cs->setup_free)
		cs->setup_free(c);
	if (c->phase == PHASE_RUN)
		stat_inc(cs->movers.stats->carried[connection_mover(c)]);
	splice_flow_free_pipe(&cs->movers, &c->up);
	splice_flow_free_pipe(&cs->movers, &c->down);
	free(c->up.buf);
	free(c->down.buf);
	c->timer = sd_event_source_disable_unref(c->timer);

	if (shared && !left_for_next) {
		/*
		 * systemd holds these sockets too: close() alone would leave the peers waiting.
		 * shutdown() sends the FIN (an EOF to a Unix peer) now, whoever holds the fds.
		 */
		(void)shutdown(c->client.fd, SHUT_RDWR);
		(void)shutdown(c->backend.fd, SHUT_RDWR);
		if (cs->movers.bpf)
			kernel_path_leave(&cs->movers, &c->client, &c->backend);
		if (c->keep_bag)
			cs->kept_free(c);
	}

	/*
	 * Closing takes the sockets out of the sockhashes; the peer entries we remove, unless the
	 * next process takes the connection over.
	 */
	end_close(&c->client, shared);
	end_close(&c->backend, shared);
	if (cs->movers.bpf && !left_for_next)
		kernel_path_forget(&cs->movers, &c->client, &c->backend);

	if (c->prev)
		c->prev->next = c->next;
	else
		cs->list = c->next;
	if (c->next)
		c->next->prev = c->prev;
	stat_dec(cs->movers.stats->open);
	cs->n_open--;

	/*
	 * In an event batch, later events may still point at this connection: mark it, and free
	 * it when the batch is over.
	 */
	if (cs->dispatching) {
		c->dead = true;
		c->next = cs->dead;
		cs->dead = c;
	} else
		free(c);

	if (cs->closed)
		cs->closed(cs);
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
	if (epoll_ctl(e->conn->set->epoll_fd, op, e->fd, &ev) < 0)
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
		return sd_event_add_time(c->set->event, &c->timer, CLOCK_MONOTONIC, at, 1, on_timer,
					 c);
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

static void connection_start_upload(struct connection *c, bool kernel);

/* What a flow asked for, besides what it waits for. Returns <0 to end the connection. */
static int connection_flow_event(struct connection *c, int r)
{
	switch (r) {
	case FLOW_SETTLED:
		connection_start_upload(c, true);
		return 0;
	case FLOW_NOT_SETTLED:
		connection_start_upload(c, false);
		return 0;
	case -EMFILE:
	case -ENFILE:
		/* The flow retries by itself; fewer connections is what gives fds back. */
		c->set->out_of_fds(c->set, r);
		return 0;
	default:
		return r;
	}
}

/*
 * Does an event on end E concern flow F? Only a flow in userspace that waits on one of its
 * sockets can tell: running it for its peer's event costs a recv() or send() that says EAGAIN.
 * In a keep-alive request-response exchange that was every other recv(): the backend's reply
 * woke the connection, and the upload asked the client for a request it had not sent yet.
 * A hangup on the other socket doesn't concern it either: a flow that reads learns of its own
 * source's end by reading, one that writes learns of its destination's by writing, and a
 * backend that is gone for good is the connection's business (connection_run_flows()).
 */
static bool flow_concerned(const struct flow *f, const struct end *e)
{
	if (f->state != FLOW_OPEN || f->kernel)
		return true;
	if (f->waits == WAIT_SRC_IN)
		return e == f->src;
	if (f->waits == WAIT_DST_OUT)
		return e == f->dst;
	return true;
}

/* Run the flows asked for, then what the connection as a whole must do. */
static void connection_run_flows(struct connection *c, bool up, bool down)
{
	struct movers *m = &c->set->movers;
	int r = 0;

	if (c->phase != PHASE_RUN)
		return;

	if (down)
		r = connection_flow_event(c, flow_run(m, &c->down));
	if (r >= 0 && up)
		r = connection_flow_event(c, flow_run(m, &c->up));
	/* Both moving in one event: no telling which came first, so no response. */
	if (c->up.bytes != c->up_bytes_seen)
		c->down_run = 0;
	else if (c->down.bytes > c->down_bytes_seen)
		c->down_run += c->down.bytes - c->down_bytes_seen;
	c->up_bytes_seen = c->up.bytes;
	c->down_bytes_seen = c->down.bytes;
	if (r < 0) {
		log_debug_errno(r, "Connection %" PRIu64 ": ending: %m", c->id);
		connection_abort(c);
		return;
	}

	/*
	 * The backend closed for good and its last bytes are out: nothing the client sends can
	 * be delivered. Read and drop it for a while, so that the client sees a FIN, not a reset.
	 */
	if (c->backend.hup && c->down.state == FLOW_DONE && c->up.state == FLOW_OPEN &&
	    !flow_holds_bytes(&c->up)) {
		flow_discard_rest(&c->up);
		(void)flow_run(m, &c->up);
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

static void connection_run(struct connection *c)
{
	connection_run_flows(c, true, true);
}

static const char *const fallback_text[_SR_FALLBACK_MAX] = {
	[SR_FALLBACK_MODE] = "kernel path not in use",
	[SR_FALLBACK_CLIENT_STATE] = "client socket refused by sockmap (already half-closed)",
	[SR_FALLBACK_BACKEND_STATE] = "backend socket refused by sockmap",
	[SR_FALLBACK_MAP_FULL] = "BPF map full (see --map-entries)",
	[SR_FALLBACK_OTHER] = "sockmap insert failed",
	[SR_FALLBACK_CLIENT_UNIX] = "client is a Unix socket: its shutdown() would take our socket "
				    "out of the sockmap",
	[SR_FALLBACK_BACKEND_FIRST] = "the backend spoke first: bytes it sent before the socket "
				      "could join the sockmap can't be handed to the kernel safely",
};

/*
 * Start the client->backend flow. When the download must settle first (the backend's bytes
 * queued before its socket joined sr_verdict), the upload waits until it has, in every mode:
 * unix_stream_read_skb() hands the verdict the head skb outside the socket's iolock, so while
 * queued bytes are read by hand, a reply that the backend sends to a forwarded request pushes a
 * queued skb through the verdict, and recv() can take the reply while that skb is still on its
 * way to ingress_msg: the client got an echo before the backend's banner (t-banner, t-metrics).
 * With --kernel-upload the wait also keeps a client's bytes from being redirected while we still
 * move the backend's by hand. The upload goes to the kernel only if the download did (kernel).
 */
static void connection_start_upload(struct connection *c, bool kernel)
{
	struct movers *m = &c->set->movers;
	bool settle = false;
	/* A connection that fell back is spliced both ways, for the same reason. */
	int reason = c->fallback != SR_FALLBACK_NONE ? (int)c->fallback : SR_FALLBACK_MODE;

	if (c->up.state != FLOW_IDLE)
		return;
	if (kernel && m->kernel_upload)
		reason = kernel_path_attach_upload(m, &c->client, &c->backend, &settle);
	if (reason == 0) {
		stat_inc(m->stats->kernel_upload);
		c->up.kernel = true;
		c->up.copy = false;
		flow_set_state(&c->up, settle ? FLOW_SETTLING : FLOW_OPEN);
		return;
	}
	if (m->kernel_upload)
		log_debug("Connection %" PRIu64 ": client->backend stays on splice: %s.", c->id,
			  fallback_text[reason]);
	flow_set_state(&c->up, FLOW_OPEN);
}

static void connection_fallback(struct connection *c, int reason)
{
	c->fallback = reason;
	/* Say it once per reason at info level; the counters have the rest. */
	if (stat_inc(c->set->movers.stats->fallback[reason]) == 1 && reason != SR_FALLBACK_MODE)
		log_info("Connection %" PRIu64 " uses splice: %s. Further fallbacks are counted "
			 "in " SR_MAP_PROXY_STATS ".",
			 c->id, fallback_text[reason]);
	else
		log_debug("Connection %" PRIu64 " uses splice: %s.", c->id, fallback_text[reason]);
}

/*
 * Start a download in userspace without reading yet: a backend that has just accepted has rarely
 * sent anything, and the epoll set is level-triggered, so one that has (a banner) wakes the flow
 * at once. Reading now would cost a recv() that says EAGAIN on nearly every connection.
 */
static void connection_run_download_later(struct connection *c)
{
	flow_set_state(&c->down, FLOW_OPEN);
	c->down.waits = WAIT_SRC_IN;
	connection_run_flows(c, true, false);
}

/* --mode auto without --kernel-upload: each connection's download chooses its mover. */
static bool adaptive_download(const struct movers *m)
{
	return m->bpf && m->adaptive && !m->kernel_upload;
}

bool connection_may_start_in_kernel(const struct movers *m)
{
	return adaptive_download(m) && m->stats->open <= m->cpus;
}

void connection_start(struct connection *c)
{
	struct movers *m = &c->set->movers;
	bool settle = false;
	int reason = SR_FALLBACK_MODE;

	c->phase = PHASE_RUN;
	c->last_active = now_usec();
	/* Every flow in userspace starts on recv()/send(), and moves to splice on bulk. */
	c->up.copy = c->down.copy = true;

	if (m->debug_attach_delay)
		usleep((useconds_t)m->debug_attach_delay);
	if (adaptive_download(m) && m->stats->open + c->queued_behind > m->cpus) {
		/*
		 * --mode auto, and more connections open than CPUs: both flows in userspace. The
		 * kernel path sends every redirected skb from a psock worker (one more wakeup per
		 * message), and costs map inserts and drain probes per connection; it pays off
		 * while that worker has a CPU to itself: one connection's round trip 52.9 against
		 * 68.9 us, a single download 3.7 against 1.6 GB/s. Past the CPUs the proxy's own
		 * batching wins: HTTP through nginx, 50 keep-alive connections 36.1k against 33.5k
		 * requests/s, 10 bulk ones 2.30 against 1.94 GiB/s, 20 new connections a request
		 * 12.4k against 11.2k/s. At 1 to 4 connections the two were level. Clients still
		 * queued on the listener count as open: wrk connects its 50 at once, faster than
		 * we accept them, and the first few would otherwise stay on the kernel path for
		 * good among 50 (queued_behind, from setup_accepted()). A download that goes bulk
		 * moves to the kernel later, at a request boundary only (promote_download()): a
		 * Unix socket that joins sr_verdict mid-stream must be settled by hand, which a
		 * backend that keeps sending defeats (both in bench/EXPERIMENTS.md, "Real HTTP
		 * clients").
		 */
		flow_set_state(&c->up, FLOW_OPEN);
		connection_run_download_later(c);
		return;
	}
	if (m->bpf)
		reason = kernel_path_attach(m, &c->client, &c->backend, &settle);

	if (reason == 0) {
		stat_inc(m->stats->kernel);
		c->down.kernel = true;
		c->down.copy = false;
		flow_set_state(&c->down, settle ? FLOW_SETTLING : FLOW_OPEN);
		/* A settling download starts the upload (FLOW_SETTLED, FLOW_NOT_SETTLED). */
		if (!settle)
			connection_start_upload(c, true);
	} else {
		connection_fallback(c, reason);
		connection_start_upload(c, false);
		connection_run_download_later(c);
		return;
	}
	connection_run(c);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct connection *c = userdata;

	c->timer_at = 0;
	if (c->phase != PHASE_RUN) {
		c->set->setup_event(c, NULL, 0);
		return 0;
	}
	c->up.waits &= ~WAIT_TIMER;
	c->down.waits &= ~WAIT_TIMER;
	connection_run(c);
	return 0;
}

/*
 * Move a download that went bulk in userspace to the kernel path, at a request boundary: the
 * client has sent an HTTP/1.x request that the upload has not forwarded yet, the download has
 * nothing in flight (its pipe is empty, it waits for the backend), and it has moved at least
 * PROMOTE_RESPONSE_MIN since the upload last moved: a bulk response. Settling is proven only for
 * a backend that answers, and HTTP/1.x is a protocol that says so: the server speaks to answer a
 * request, and a client (one that does not pipeline) sends the next only once it has the whole
 * response, so the backend has nothing to send then and its socket joins sr_verdict empty. No
 * pattern of timing says as much: srpeer's duplex streams, both ways at once, alternated in
 * 256 KiB runs often enough that 1 in 12 t-adaptive runs under ASan moved one, and 1 in 40 did
 * with three such responses in a row asked for. A backend that has sent stays in userspace
 * (kernel_path_attach(): backend_spoke_first), and a byte that still comes in the microseconds
 * before the insert (a pipelining client's) is settled while the upload waits, as at connection
 * start. This is for connections that auto started in userspace because more were open than
 * CPUs (connection_start()): nginx serving 1 MiB files to 10 keep-alive clients with one worker
 * moved 1.03x what --mode bpf --workers 1 did and 1.09x auto without it (bench/EXPERIMENTS.md,
 * "Real HTTP clients"). Once per connection; measured only with Unix backends, so only for
 * those.
 */
#define PROMOTE_RESPONSE_MIN (256 * 1024)
#define PROMOTE_PEEK_MAX     2048

/* The client's unread bytes start with an HTTP/1.x request line (all of it, within the peek). */
static bool client_sends_http_request(const struct connection *c)
{
	uint8_t buf[PROMOTE_PEEK_MAX];
	size_t line;
	ssize_t n;

	n = recv(c->client.fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
	return n > 0 && peek_http_request_line(buf, (size_t)n, &line) == PEEK_FOUND;
}

static void promote_download(struct connection *c)
{
	struct movers *m = &c->set->movers;
	struct flow *d = &c->down, *u = &c->up;
	bool settle = false;
	int reason;

	if (c->promote_tried || !adaptive_download(m) || c->fallback != SR_FALLBACK_NONE ||
	    !c->backend.is_unix || c->client.is_unix)
		return;
	if (d->kernel || d->copy || d->pipe_kept || d->state != FLOW_OPEN ||
	    d->waits != WAIT_SRC_IN || flow_holds_bytes(d) || u->state != FLOW_OPEN ||
	    flow_holds_bytes(u) || c->backend.rdhup || c->client.rdhup ||
	    c->down_run < PROMOTE_RESPONSE_MIN || !client_sends_http_request(c))
		return;
	c->promote_tried = true;

	splice_flow_release(m, d);
	reason = kernel_path_attach(m, &c->client, &c->backend, &settle);
	if (reason != 0) {
		log_debug("Connection %" PRIu64 ": bulk download stays in userspace: %s.", c->id,
			  fallback_text[reason]);
		return;
	}
	stat_inc(m->stats->kernel);
	stat_inc(m->stats->promoted_kernel);
	d->kernel = true;
	d->bytes = 0; /* on the kernel path: bytes moved by hand */
	log_debug("Connection %" PRIu64 ": bulk download moved to the kernel path%s.", c->id,
		  settle ? ", settling" : "");
	flow_set_state(d, settle ? FLOW_SETTLING : FLOW_OPEN);
	if (settle)
		flow_set_state(u, FLOW_IDLE); /* it holds no bytes: it starts again as new */
}

/* An event on a connection socket, from the epoll set. */
static void connection_io(struct end *e, uint32_t revents)
{
	struct connection *c = e->conn;

	if (c->dead)
		return;
	if (c->phase != PHASE_RUN) {
		c->set->setup_event(c, e, revents);
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
	if (e == &c->client && (revents & EPOLLIN))
		promote_download(c);
	connection_run_flows(c, flow_concerned(&c->up, e), flow_concerned(&c->down, e));
}

/* Bytes moved so far, both ways, both paths. */
static int connection_bytes(struct connection *c, uint64_t *ret)
{
	uint64_t total = c->up.bytes + c->down.bytes;
	int r;

	for (struct flow *f = &c->up; f; f = f == &c->up ? &c->down : NULL) {
		uint64_t moved;

		if (!f->kernel)
			continue;
		r = kernel_flow_moved(&c->set->movers, f, &moved);
		if (r < 0)
			return r;
		total += moved;
	}
	*ret = total;
	return 0;
}

/*
 * A connection is idle while its byte counts don't move. On the kernel path the counts are
 * sr_redirect's, per socket in sr_peers, so watching costs one map lookup per connection per
 * sweep, and nothing per message.
 */
void connections_close_idle(struct connections *cs, uint64_t timeout)
{
	uint64_t now = now_usec();
	struct connection *c, *next;

	for (c = cs->list; c; c = next) {
		uint64_t bytes;

		next = c->next;
		if (c->phase != PHASE_RUN || connection_bytes(c, &bytes) < 0)
			continue;
		if (bytes != c->last_bytes) {
			c->last_bytes = bytes;
			c->last_active = now;
			continue;
		}
		if (now - c->last_active < timeout)
			continue;
		log_debug("Connection %" PRIu64 ": idle for %" PRIu64 " ms: closing.", c->id,
			  (now - c->last_active) / USEC_PER_MSEC);
		stat_inc(cs->movers.stats->idle_closed);
		connection_abort(c);
	}
}

void connections_abort_all(struct connections *cs)
{
	/* Each abort frees one connection; take the head until none is left. */
	while (cs->list)
		connection_abort(cs->list);
}

static int on_connections_ready(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct epoll_event events[EPOLL_BATCH];
	struct connections *cs = userdata;
	int n;

	n = epoll_wait(fd, events, EPOLL_BATCH, 0);
	if (n < 0)
		return errno == EINTR ? 0 : log_error_errno(errno, "epoll_wait() failed: %m");
	cs->dispatching = true;
	for (int i = 0; i < n; i++)
		connection_io(events[i].data.ptr, events[i].events);
	cs->dispatching = false;

	/* Free the connections that ended during the batch. */
	while (cs->dead) {
		struct connection *c = cs->dead;

		cs->dead = c->next;
		free(c);
	}
	return 0;
}

/* A grace period has passed: run the connections that were waiting for one. */
static void on_grace(void *userdata)
{
	struct connections *cs = userdata;
	struct connection *c, *next;

	for (c = cs->list; c; c = next) {
		next = c->next;
		if ((c->up.waits | c->down.waits) & WAIT_GRACE)
			connection_run(c);
	}
}

int connections_init(struct connections *cs, sd_event *e)
{
	int r;

	cs->event = e;
	cs->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (cs->epoll_fd < 0)
		return log_error_errno(errno, "Failed to create an epoll set: %m");
	r = sd_event_add_io(e, &cs->epoll_source, cs->epoll_fd, EPOLLIN, on_connections_ready, cs);
	if (r < 0)
		return log_error_errno(r, "Failed to watch the epoll set: %m");

	r = pipe_pool_init(&cs->movers.pipes);
	if (r < 0)
		return log_error_errno(r, "Failed to open the reserve pipe: %m");

	r = grace_new(e, on_grace, cs, &cs->movers.grace);
	if (r < 0)
		return log_error_errno(r, "Failed to set up grace periods: %m");
	return 0;
}

void connections_done(struct connections *cs)
{
	connections_abort_all(cs);
	cs->movers.grace = grace_free(cs->movers.grace);
	cs->epoll_source = sd_event_source_disable_unref(cs->epoll_source);
	cs->epoll_fd = safe_close(cs->epoll_fd);
	pipe_pool_done(&cs->movers.pipes);
}

static struct connection *connection_alloc(struct connections *cs, int client_fd,
					   bool client_is_unix)
{
	struct connection *c;

	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->set = cs;
	c->id = ++cs->next_id;
	c->accepted_at = now_usec();
	c->held_elsewhere = cs->adopting;
	c->client = (struct end){ .conn = c, .fd = client_fd, .is_unix = client_is_unix };
	c->backend = (struct end){ .conn = c, .fd = -EBADF };
	c->up = (struct flow){
		.conn_id = c->id, .dir = SR_DIR_UP, .src = &c->client, .dst = &c->backend
	};
	c->down = (struct flow){
		.conn_id = c->id, .dir = SR_DIR_DOWN, .src = &c->backend, .dst = &c->client
	};

	c->next = cs->list;
	if (c->next)
		c->next->prev = c;
	cs->list = c;
	stat_inc(cs->movers.stats->open);
	cs->n_open++;
	return c;
}

int connection_new(struct connections *cs, int client_fd, bool client_is_unix,
		   struct connection **ret)
{
	struct connection *c = connection_alloc(cs, client_fd, client_is_unix);

	if (!c) {
		safe_close(client_fd);
		return -ENOMEM;
	}
	stat_inc(cs->movers.stats->accepted);
	*ret = c;
	return 0;
}

static void restore_flow(struct connection *c, struct flow *f, struct connection_restore *r)
{
	enum sr_direction d = f->dir;
	struct sr_pipe *pipe = TAKE_PTR(r->pipe[d]);
	int n = 0;

	f->kernel = d == SR_DIR_UP ? r->up_kernel : r->down_kernel;
	if (f->kernel)
		f->bytes = r->kernel_bytes[d];
	if (pipe) {
		f->pipe = pipe;
		f->pipe_kept = true;
		c->set->movers.kept_pipes++;
		/* Bytes spliced in before the crash and not yet out: they go first. */
		if (ioctl(pipe->fd[0], FIONREAD, &n) == 0 && n > 0)
			f->in_pipe = (size_t)n;
	}
	if (d == SR_DIR_UP && r->up_idle)
		return;
	if (!f->kernel && r->copy[d]) {
		f->copy = true;
		f->buf = TAKE_PTR(r->held[d]);
		f->buf_len = f->buf ? r->held_len[d] : 0;
		flow_set_state(f, FLOW_OPEN);
		return;
	}
	if (r->settling[d]) {
		/* The bytes read by hand come before any the flow reads from now on. */
		f->buf = TAKE_PTR(r->held[d]);
		f->buf_len = r->held_len[d];
		f->buf_cap = MAX(f->buf_len, (size_t)HELD_BUF_MAX); /* as keep.c's take_held() */
		flow_set_state(f, FLOW_SETTLING);
		return;
	}
	flow_set_state(f, FLOW_OPEN);
}

static void restore_free(struct connection_restore *r)
{
	safe_close(r->client_fd);
	safe_close(r->backend_fd);
	for (int d = 0; d < _SR_DIR_MAX; d++) {
		if (r->pipe[d]) {
			safe_close(r->pipe[d]->fd[0]);
			safe_close(r->pipe[d]->fd[1]);
			free(r->pipe[d]);
		}
		free(r->held[d]);
	}
}

int connection_restore(struct connections *cs, struct connection_restore *r,
		       struct connection **ret)
{
	struct connection *c;
	int k;

	c = connection_alloc(cs, r->client_fd, r->client_is_unix);
	if (!c) {
		restore_free(r);
		return -ENOMEM;
	}
	r->client_fd = -EBADF;
	c->backend.fd = TAKE_FD(r->backend_fd);
	c->backend.is_unix = r->backend_is_unix;
	c->phase = PHASE_RUN;
	c->last_active = c->accepted_at;
	restore_flow(c, &c->up, r);
	restore_flow(c, &c->down, r);
	restore_free(r);

	if (r->down_kernel || r->up_kernel) {
		k = cs->movers.bpf ?
			    kernel_path_adopt(&cs->movers, &c->client, &c->backend, r->down_kernel,
					      r->up_kernel, &c->down.holding, &c->up.holding) :
			    -EOPNOTSUPP;
		if (k < 0) {
			/* A clean close: the earlier process's copies in the store stay open. */
			(void)shutdown(c->client.fd, SHUT_RDWR);
			(void)shutdown(c->backend.fd, SHUT_RDWR);
			connection_free(c);
			return k;
		}
	}
	if (!r->down_kernel)
		c->fallback = SR_FALLBACK_MODE;
	*ret = c;
	return 0;
}

void connection_resume(struct connection *c)
{
	int r;

	/*
	 * Not run here: a thousand restored connections moving their bytes now would delay READY=1
	 * (and so `systemctl restart`) by as long. Each flow waits for what its socket or pipe will
	 * report at once if it is ready, and the event loop takes it from there.
	 */
	for (struct flow *f = &c->up; f; f = f == &c->up ? &c->down : NULL) {
		if (f->state == FLOW_IDLE)
			f->waits = 0;
		else if (f->state == FLOW_SETTLING) {
			f->waits = WAIT_TIMER;
			f->wake_at = now_usec();
		} else if (f->kernel)
			f->waits = WAIT_SRC_RDHUP;
		else
			f->waits = flow_holds_bytes(f) ? WAIT_DST_OUT :
							 WAIT_SRC_IN | WAIT_SRC_RDHUP;
	}
	r = connection_update(c);
	if (r < 0) {
		log_warning_errno(r, "Connection %" PRIu64 ": failed to watch sockets: %m", c->id);
		connection_abort(c);
	}
}
