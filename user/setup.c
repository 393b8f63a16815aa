// SPDX-License-Identifier: GPL-2.0
/*
 * Connection setup: everything that happens before the first byte moves, all of it in
 * userspace and before any socket enters a sockhash.
 *
 *   accept -> [PEEK: Host or SNI picks the route] -> CONNECT: a backend of the route, with
 *   failover and backoff until --connect-timeout -> PROXY header -> connection_start()
 *
 * Peeking uses MSG_PEEK, so the bytes stay queued on the client socket, in order, for whichever
 * path moves them afterwards.
 */
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "backend.h"
#include "listen.h"
#include "log.h"
#include "metrics-table.h"
#include "options.h"
#include "proxy-protocol.h"
#include "routes.h"
#include "setup.h"
#include "stats.h"

/* Between two rounds over a route's backends: doubling from MIN up to MAX. */
#define CONNECT_BACKOFF_MIN (10 * USEC_PER_MSEC)
#define CONNECT_BACKOFF_MAX (500 * USEC_PER_MSEC)
/* A Unix client can't be woken for "more bytes than now": poll it while peeking. */
#define PEEK_POLL_UNIX (10 * USEC_PER_MSEC)
/* Connect failures within this window after a logged one are only counted. */
#define CONNECT_FAIL_LOG_INTERVAL (5 * USEC_PER_SEC)

static void setup_connect(struct connection *c);

static struct setup *setup_of(struct connection *c)
{
	return container_of(c->set, struct setup, conns);
}

/*
 * A proxy must not delay what it relays: with Nagle on, a reply's last partial segment waits
 * for the client's delayed ACK, and the kernel path's backlog worker was seen to stall a
 * 64 KiB round trip that way.
 */
static void tcp_nodelay(int fd)
{
	int one = 1;

	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		log_debug_errno(errno, "Failed to set TCP_NODELAY, ignoring: %m");
}

static void tcp_keepalive(int fd, uint64_t idle)
{
	int one = 1, secs = (int)(idle / USEC_PER_SEC);

	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) < 0)
		log_debug_errno(errno, "Failed to set SO_KEEPALIVE, ignoring: %m");
	if (secs > 0 && setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &secs, sizeof(secs)) < 0)
		log_debug_errno(errno, "Failed to set TCP_KEEPIDLE, ignoring: %m");
}

static void set_rcvlowat(int fd, int bytes)
{
	if (setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof(bytes)) < 0)
		log_debug_errno(errno, "Failed to set SO_RCVLOWAT, ignoring: %m");
}

static void set_waiting_fd(struct connection *c, bool waiting)
{
	struct setup *s = setup_of(c);

	if (c->waiting_fd == waiting)
		return;
	c->waiting_fd = waiting;
	if (waiting) {
		s->n_waiting_fd++;
		return;
	}
	s->n_waiting_fd--;
	s->fds_back(s);
}

/* The backend being tried or used. It counts as active from the attempt on (least-conn). */
static void target_set(struct connection *c, struct backend *b)
{
	c->target = backend_ref(b);
	b->active++;
}

static void target_clear(struct connection *c)
{
	if (!c->target)
		return;
	c->target->active--;
	c->target = backend_unref(c->target);
}

/* When a connection is freed, at whatever phase: drop what setup holds. */
static void setup_free(struct connection *c)
{
	if (c->backend_metrics)
		stat_dec(c->backend_metrics->open);
	set_waiting_fd(c, false);
	c->route = route_unref(c->route);
	target_clear(c);
}

/* The result of a connect to b: its passive health mark, and its route's counters. */
static void report_attempt(struct connection *c, struct backend *b, bool ok, uint64_t now)
{
	struct sr_backend_metrics *m = route_metrics(c->route, b);

	backend_report(b, setup_of(c)->routes, ok, now);
	if (!m)
		return;
	if (!ok)
		stat_inc(m->connect_failures);
	__atomic_store_n(&m->down_until, b->skip_until, __ATOMIC_RELAXED);
}

/* Give up on this client: read what it sent, so that close() is a FIN and not a reset. */
static void setup_fail(struct connection *c)
{
	uint8_t sink[4096];

	while (recv(c->client.fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
		;
	connection_abort(c);
}

/* The backend is connected: send the PROXY header, then hand over to the data paths. */
static void setup_connected(struct connection *c)
{
	struct setup *s = setup_of(c);
	struct sr_backend_metrics *m = route_metrics(c->route, c->target);
	uint8_t hdr[PROXY_HEADER_MAX];
	uint64_t now = now_usec();
	int n;

	report_attempt(c, c->target, true, now);
	metrics_table_observe_connect(s->routes->metrics, now - c->connect_started);
	c->route = route_unref(c->route);
	(void)connection_watch(&c->backend, 0);
	(void)connection_arm_timer(c, 0);
	if (!c->backend.is_unix)
		tcp_nodelay(c->backend.fd);

	/*
	 * Before any client byte, and before the backend socket joins a sockhash. A fresh
	 * socket's send buffer always takes these few bytes at once.
	 */
	if (s->opts->proxy_protocol) {
		ssize_t k;

		n = proxy_header_for_socket(s->opts->proxy_protocol, c->client.fd, hdr,
					    sizeof(hdr));
		if (n < 0) {
			log_debug_errno(n, "Connection %" PRIu64 ": no PROXY header: %m", c->id);
			setup_fail(c);
			return;
		}
		k = send(c->backend.fd, hdr, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (k != n) {
			log_debug_errno(k < 0 ? errno : EAGAIN,
					"Connection %" PRIu64
					": failed to send the PROXY header: %m",
					c->id);
			setup_fail(c);
			return;
		}
	}
	/* Open from here until the connection is freed (setup_free()). */
	c->backend_metrics = m;
	if (m)
		stat_inc(m->open);
	connection_start(c);
}

/* No backend of route rt could be reached: say so once per burst, and count the rest. */
static void log_connect_failure(struct setup *s, int error, const struct route *rt)
{
	char what[512];
	const char *hint;
	size_t off = 0;

	stat_inc(s->conns.movers.stats->connect_failed);
	if (!log_ratelimit(&s->connect_fail_logged_at, CONNECT_FAIL_LOG_INTERVAL)) {
		s->connect_fail_suppressed++;
		return;
	}

	for (size_t i = 0; i < rt->n_backends && off < sizeof(what) - 1; i++) {
		int n = snprintf(what + off, sizeof(what) - off, "%s%s", i ? ", " : "",
				 rt->backends[i]->spec);

		off += n > 0 ? (size_t)n : 0;
	}
	/* The one failure that is never the backend's: say where to look. */
	hint = error == -EACCES || error == -EPERM ?
		       " The socket needs write permission for sockredir's user, and the "
		       "service's sandbox must let it reach the path (see README.md, \"Where "
		       "backend sockets may live\")." :
		       "";
	if (s->connect_fail_suppressed > 0)
		log_warning_errno(error,
				  "Failed to connect to backend %s: %m (and %u more "
				  "failures since the last message). Closing the client.%s",
				  what, s->connect_fail_suppressed, hint);
	else
		log_warning_errno(error,
				  "Failed to connect to backend %s: %m. Closing the client.%s",
				  what, hint);
	s->connect_fail_suppressed = 0;
}

/* The attempt on c->target failed: note it, and go on with the next backend. */
static void setup_attempt_failed(struct connection *c, int error)
{
	log_debug_errno(error, "Connection %" PRIu64 ": backend %s: %m", c->id, c->target->spec);
	report_attempt(c, c->target, false, now_usec());
	c->last_error = error;
	target_clear(c);
	(void)connection_watch(&c->backend, 0);
	c->backend.fd = safe_close(c->backend.fd);
	setup_connect(c);
}

/*
 * Try the route's backends in turn, by the balance policy and skipping those marked down while
 * others are left. After a round with no success, wait (backing off) and go round again, until
 * --connect-timeout: a backend whose socket does not exist yet, such as a container still
 * starting, is used as soon as it appears.
 */
static void setup_connect(struct connection *c)
{
	struct setup *s = setup_of(c);
	uint64_t now = now_usec();

	for (;;) {
		struct backend *b;
		int fd = -EBADF, r;

		b = route_pick(c->route, s->routes, &c->tried, now);
		if (!b) {
			uint64_t delay;

			if (s->opts->connect_timeout == 0 || now >= c->deadline) {
				log_connect_failure(s, c->last_error ?: -ETIMEDOUT, c->route);
				setup_fail(c);
				return;
			}
			delay = CONNECT_BACKOFF_MIN << MIN(c->passes, 6U);
			c->passes++;
			c->tried = 0;
			(void)connection_arm_timer(c, MIN(now + MIN(delay, CONNECT_BACKOFF_MAX),
							  c->deadline));
			return;
		}

		r = backend_connect(&b->addr, &fd);
		if (r == -EMFILE || r == -ENFILE) {
			/*
			 * Out of fds: keep the client, stop accepting more, and try again once
			 * connections have given fds back. Not the backend's fault.
			 */
			log_debug_errno(r,
					"Connection %" PRIu64 ": no fd for the backend socket "
					"(%m), retrying.",
					c->id);
			c->tried = 0;
			s->conns.out_of_fds(&s->conns, r);
			set_waiting_fd(c, true);
			(void)connection_arm_timer(c, now + FD_RETRY);
			return;
		}
		set_waiting_fd(c, false);

		if (r < 0) {
			/* ENOENT (not there yet), ECONNREFUSED, EAGAIN (backlog full): next. */
			log_debug_errno(r, "Connection %" PRIu64 ": backend %s: %m", c->id,
					b->spec);
			report_attempt(c, b, false, now);
			c->last_error = r;
			continue;
		}
		target_set(c, b);

		c->backend.fd = fd;
		c->backend.is_unix = b->addr.sa.sa_family == AF_UNIX;
		if (r == 1) {
			setup_connected(c);
			return;
		}
		/* In progress (TCP): wait for EPOLLOUT, at most until the deadline. */
		r = connection_watch(&c->backend, EPOLLOUT);
		if (r < 0) {
			setup_attempt_failed(c, r);
			return;
		}
		(void)connection_arm_timer(c, c->deadline);
		return;
	}
}

static void setup_start_connect(struct connection *c, struct route *rt)
{
	struct setup *s = setup_of(c);

	c->phase = PHASE_CONNECT;
	c->route = route_ref(rt);
	c->tried = 0;
	c->passes = 0;
	c->connect_started = now_usec();
	c->deadline = c->connect_started + s->opts->connect_timeout;
	setup_connect(c);
}

/* Decide the route from what the peek found, or close per --peek-fail. */
static void setup_route_by_peek(struct connection *c, enum peek_result res, const char *host)
{
	struct setup *s = setup_of(c);
	struct route *rt = NULL;

	if (!c->client.is_unix)
		set_rcvlowat(c->client.fd, 1);
	(void)connection_watch(&c->client, 0);
	(void)connection_arm_timer(c, 0);

	if (res == PEEK_FOUND)
		rt = routes_for_host(s->routes, host);
	if (res == PEEK_INVALID && s->opts->peek_fail_close) {
		log_debug("Connection %" PRIu64 ": no valid Host or SNI: closing (--peek-fail).",
			  c->id);
		stat_inc(s->conns.movers.stats->peek_failed);
		setup_fail(c);
		return;
	}
	if (res == PEEK_INVALID)
		stat_inc(s->conns.movers.stats->peek_failed);
	log_debug("Connection %" PRIu64 ": peek %s%s%s: route %s.", c->id,
		  peek_result_to_string(res), res == PEEK_FOUND ? " " : "",
		  res == PEEK_FOUND ? host : "", rt ? rt->key : "(default)");
	if (!rt)
		rt = s->routes->fallback;
	if (rt->n_backends == 0) {
		log_debug("Connection %" PRIu64 ": no route and no default backend: closing.",
			  c->id);
		setup_fail(c);
		return;
	}
	setup_start_connect(c, rt);
}

/*
 * Look at what the client sent so far, without taking it. Wait for more while the request or
 * ClientHello is incomplete: on TCP, SO_RCVLOWAT makes epoll report only when more bytes than
 * we have seen arrive, so an incomplete request costs no wakeups.
 */
static void setup_peek(struct connection *c)
{
	struct setup *s = setup_of(c);
	char host[PEEK_HOST_MAX];
	enum peek_result res = PEEK_MORE;
	uint64_t now = now_usec();
	ssize_t n;
	int r;

	n = recv(c->client.fd, s->peek_buf, PEEK_MAX, MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && errno != EAGAIN) {
		connection_abort(c);
		return;
	}
	if (n == 0) {
		/* EOF before a single byte: the client left. */
		connection_abort(c);
		return;
	}
	if (n > 0)
		res = peek_name(s->peek_buf, (size_t)n, host);
	if (res == PEEK_MORE && (c->client.rdhup || n == PEEK_MAX || now >= c->deadline)) {
		log_debug("Connection %" PRIu64 ": peek gave up: %s after %zd bytes.", c->id,
			  c->client.rdhup ? "client closed" :
			  n == PEEK_MAX	  ? "too long" :
					    "timed out",
			  n);
		res = PEEK_INVALID;
	}
	if (res != PEEK_MORE) {
		setup_route_by_peek(c, res, host);
		return;
	}

	if (c->client.is_unix) {
		r = connection_watch(&c->client, EPOLLRDHUP);
		if (r >= 0)
			r = connection_arm_timer(c, MIN(now + PEEK_POLL_UNIX, c->deadline));
	} else {
		set_rcvlowat(c->client.fd, n > 0 ? (int)n + 1 : 1);
		r = connection_watch(&c->client, EPOLLIN | EPOLLRDHUP);
		if (r >= 0)
			r = connection_arm_timer(c, c->deadline);
	}
	if (r < 0)
		connection_abort(c);
}

/* An event for a connection in setup: e is the socket (NULL for the timer). */
static void setup_event(struct connection *c, struct end *e, uint32_t revents)
{
	int r;

	if (c->phase == PHASE_PEEK) {
		if (revents & EPOLLERR) {
			connection_abort(c);
			return;
		}
		if (revents & (EPOLLRDHUP | EPOLLHUP))
			c->client.rdhup = true;
		setup_peek(c);
		return;
	}

	/* PHASE_CONNECT */
	if (e == &c->backend) {
		r = backend_connect_finish(c->backend.fd);
		if (r < 0)
			setup_attempt_failed(c, r);
		else
			setup_connected(c);
		return;
	}
	if (c->backend.fd >= 0) {
		/* The timer, while a TCP connect is in progress: the deadline passed. */
		setup_attempt_failed(c, -ETIMEDOUT);
		return;
	}
	setup_connect(c); /* the timer, after a backoff or a lack of fds */
}

int setup_accepted(struct setup *s, int client_fd, const struct listener *l)
{
	struct connection *c;
	struct route *rt;
	int r;

	r = connection_new(&s->conns, client_fd, l->addr.sa.sa_family == AF_UNIX, &c);
	if (r < 0)
		return r;
	c->listener_name = l->name;
	if (connection_may_start_in_kernel(&s->conns.movers))
		c->queued_behind = listener_queued(l);
	if (!c->client.is_unix) {
		tcp_nodelay(client_fd);
		if (s->opts->keepalive)
			tcp_keepalive(client_fd, s->opts->keepalive_time);
	}

	/* A listener with its own --route uses it; the others use the host routes, if any. */
	rt = routes_for_listener(s->routes, l->name);
	if (!rt && s->routes->n_by_host > 0) {
		c->phase = PHASE_PEEK;
		c->deadline = now_usec() + s->opts->peek_timeout;
		setup_peek(c);
		return 0;
	}
	if (!rt)
		rt = s->routes->fallback;
	if (rt->n_backends == 0) {
		log_debug("Connection %" PRIu64 ": no backend for socket %s: closing.", c->id,
			  l->name);
		setup_fail(c);
		return 0;
	}
	setup_start_connect(c, rt);
	return 0;
}

int setup_init(struct setup *s, sd_event *e)
{
	s->conns.setup_event = setup_event;
	s->conns.setup_free = setup_free;
	return connections_init(&s->conns, e);
}

void setup_configure(struct setup *s, const struct options *o, struct routes *r)
{
	s->opts = o;
	s->routes = r;
}
