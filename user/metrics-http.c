// SPDX-License-Identifier: GPL-2.0
/*
 * GET /metrics: a small HTTP/1.x server, bounded in size, time and count. A scrape reads its
 * request into a fixed buffer, renders the whole body into memory (so that Content-Length is
 * right), writes the reply without blocking, and closes. Every scrape lives in one of
 * METRICS_MAX_SCRAPES slots of the server, so a flood of clients costs no more memory than four.
 */
#include <inttypes.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "log.h"
#include "metrics-http.h"
#include "metrics-request.h"

/* Accepts per listener wakeup; more than the slots, so that aborted connections don't stall us. */
#define ACCEPT_BATCH 16
/* Out of fds: try accepting again after this. */
#define ACCEPT_PAUSE (1 * USEC_PER_SEC)
/* Pauses within this window after a logged one are logged at debug level. */
#define ACCEPT_PAUSE_LOG_INTERVAL (60 * USEC_PER_SEC)
/* A scrape's deadline needs no precision; a coarse one lets sd-event batch wakeups. */
#define SCRAPE_TIMER_ACCURACY (10 * USEC_PER_MSEC)
/* After the reply: how long and how much to read from a client until it closes (see below). */
#define LINGER_TIMEOUT (1 * USEC_PER_SEC)
#define LINGER_MAX     (64 * 1024)
/* The status line and headers; the longest Content-Type fits many times over. */
#define HEAD_MAX 512

enum scrape_state {
	SCRAPE_FREE,   /* the slot is unused */
	SCRAPE_READ,   /* reading the request */
	SCRAPE_WRITE,  /* writing the reply */
	SCRAPE_LINGER, /* reply written and SHUT_WR sent: reading until the client closes */
};

struct scrape {
	struct metrics_server *server;
	enum scrape_state state;
	int fd;
	sd_event_source *io, *timer;
	uint64_t id;
	uint64_t deadline;

	size_t len;  /* request bytes in buf */
	size_t skip; /* empty lines before the request line, which RFC 9112 says to ignore */
	size_t scan; /* where to look on for the end of the headers */

	char head[HEAD_MAX];
	size_t head_len;
	const char *body; /* body_owned, or a static string */
	char *body_owned;
	size_t body_len;
	size_t reply_len; /* head_len, and body_len unless HEAD */
	size_t sent;
	size_t drained; /* bytes read and dropped while lingering */

	/* Last, so that a slot is reset without clearing it. +1: a NUL after the headers. */
	char buf[METRICS_REQUEST_MAX + 1];
};

struct metrics_server {
	sd_event *event;
	sd_event_source *listener;
	sd_event_source *accept_resume;
	metrics_render_t render;
	void *userdata;
	uint64_t timeout;

	bool stopping;	/* being freed: no more accepting */
	bool failed;	/* accept failed for good */
	bool paused;	/* out of fds: listener off until accept_resume fires */
	bool listening; /* the listener source is on */
	uint64_t pause_logged_at;

	unsigned n_scrapes;
	uint64_t next_id;
	struct scrape scrapes[METRICS_MAX_SCRAPES];
};

/* Try the listener again in ACCEPT_PAUSE (on_accept_resume). */
static int server_arm_resume(struct metrics_server *s)
{
	int r;

	/* The source exists from start-up: creating one now could need the fd we lack. */
	r = sd_event_source_set_time_relative(s->accept_resume, ACCEPT_PAUSE);
	if (r < 0)
		return r;
	return sd_event_source_set_enabled(s->accept_resume, SD_EVENT_ONESHOT);
}

static void server_update_listener(struct metrics_server *s)
{
	bool on = !s->stopping && !s->failed && !s->paused && s->n_scrapes < METRICS_MAX_SCRAPES;
	int r;

	if (on == s->listening)
		return;
	r = sd_event_source_set_enabled(s->listener, on ? SD_EVENT_ON : SD_EVENT_OFF);
	if (r < 0) {
		/* Only turning on can fail (epoll_ctl, out of memory): try again later. */
		log_debug_errno(r, "Failed to %s the metrics listener: %m",
				on ? "resume" : "pause");
		if (on)
			(void)server_arm_resume(s);
		return;
	}
	s->listening = on;
}

static void scrape_free(struct scrape *sc)
{
	struct metrics_server *s = sc->server;

	if (sc->state == SCRAPE_FREE)
		return;
	/* The io source before the fd, so that it leaves epoll while the fd is still ours. */
	sc->io = sd_event_source_disable_unref(sc->io);
	sc->timer = sd_event_source_disable_unref(sc->timer);
	sc->fd = safe_close(sc->fd);
	sc->body_owned = mfree(sc->body_owned);
	sc->body = NULL;
	sc->state = SCRAPE_FREE;
	s->n_scrapes--;
	server_update_listener(s);
}

static void scrape_linger(struct scrape *sc)
{
	for (;;) {
		ssize_t n =
			recv(sc->fd, sc->buf, MIN(sizeof(sc->buf), LINGER_MAX - sc->drained), 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			log_debug_errno(errno, "Scrape %" PRIu64 ": failed to read: %m", sc->id);
			break;
		}
		if (n == 0)
			break;
		sc->drained += n;
		if (sc->drained >= LINGER_MAX) {
			log_debug("Scrape %" PRIu64 ": client still sending, closing.", sc->id);
			break;
		}
	}
	scrape_free(sc);
}

/*
 * The reply is written: send FIN, then read until the client closes. Closing a socket with
 * unread bytes sends a RST, and a RST can destroy the reply before the client read it: a client
 * that sent more than its request (a body, a pipelined request) would lose the reply.
 */
static void scrape_shutdown(struct scrape *sc)
{
	uint64_t now = now_usec();
	int r;

	sc->body_owned = mfree(sc->body_owned);
	sc->body = NULL;
	if (shutdown(sc->fd, SHUT_WR) < 0) {
		log_debug_errno(errno, "Scrape %" PRIu64 ": failed to shut down: %m", sc->id);
		scrape_free(sc);
		return;
	}
	sc->state = SCRAPE_LINGER;
	r = sd_event_source_set_io_events(sc->io, EPOLLIN);
	if (r >= 0)
		r = sd_event_source_set_time(sc->timer, MIN(sc->deadline, now + LINGER_TIMEOUT));
	if (r < 0) {
		log_debug_errno(r, "Scrape %" PRIu64 ": failed to wait for the close: %m", sc->id);
		scrape_free(sc);
		return;
	}
	scrape_linger(sc);
}

static void scrape_write(struct scrape *sc)
{
	while (sc->sent < sc->reply_len) {
		struct iovec iov[2];
		struct msghdr mh = { .msg_iov = iov };
		size_t body_off = 0;
		ssize_t n;

		if (sc->sent < sc->head_len)
			iov[mh.msg_iovlen++] =
				(struct iovec){ sc->head + sc->sent, sc->head_len - sc->sent };
		else
			body_off = sc->sent - sc->head_len;
		if (sc->reply_len > sc->head_len)
			iov[mh.msg_iovlen++] = (struct iovec){ (char *)sc->body + body_off,
							       sc->body_len - body_off };

		/* MSG_NOSIGNAL: a client gone away is EPIPE, not SIGPIPE. */
		n = sendmsg(sc->fd, &mh, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return; /* the io source waits for EPOLLOUT */
			log_debug_errno(errno, "Scrape %" PRIu64 ": failed to write the reply: %m",
					sc->id);
			scrape_free(sc);
			return;
		}
		sc->sent += n;
	}
	scrape_shutdown(sc);
}

/*
 * Reply with status. For 200 the body is rendered here, in full, before the first byte goes out:
 * Content-Length must be right, and a render error must still be able to become a 500.
 */
static void scrape_reply(struct scrape *sc, int status, const struct metrics_request *req)
{
	struct metrics_server *s = sc->server;
	const char *ctype = "text/plain; charset=utf-8", *reason, *error_body;
	int n, r;

	if (status == 200) {
		char *body = NULL;
		size_t size = 0;
		FILE *f;

		f = open_memstream(&body, &size);
		if (!f)
			r = negative_errno();
		else {
			r = s->render(f, req->fmt, s->userdata);
			/* fclose() flushes: its failure (ENOMEM) means a short body. */
			if (fclose(f) != 0 && r >= 0)
				r = negative_errno();
		}
		ctype = metrics_content_type(req->fmt);
		if (r >= 0 && ctype) {
			sc->body = sc->body_owned = body;
			sc->body_len = size;
		} else {
			if (r < 0)
				log_debug_errno(r, "Scrape %" PRIu64 ": failed to render: %m",
						sc->id);
			free(body);
			status = 500;
			ctype = "text/plain; charset=utf-8";
		}
	}
	reason = metrics_status_reason(status, &error_body);
	if (status != 200) {
		sc->body = error_body;
		sc->body_len = strlen(sc->body);
	}

	n = snprintf(sc->head, sizeof(sc->head),
		     "HTTP/1.1 %d %s\r\n"
		     "Content-Type: %s\r\n"
		     "Content-Length: %zu\r\n"
		     "%s"
		     "Connection: close\r\n"
		     "\r\n",
		     status, reason, ctype, sc->body_len,
		     status == 405 ? "Allow: GET, HEAD\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(sc->head)) {
		/* A Content-Type of hundreds of bytes: a bug elsewhere, but still an answer. */
		sc->body_owned = mfree(sc->body_owned);
		status = 500;
		reason = metrics_status_reason(status, &error_body);
		sc->body = error_body;
		sc->body_len = strlen(sc->body);
		n = snprintf(sc->head, sizeof(sc->head),
			     "HTTP/1.1 500 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
			     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			     reason, sc->body_len);
	}
	sc->head_len = n;
	sc->reply_len = sc->head_len + (req->head ? 0 : sc->body_len);

	if (req->method)
		log_debug("Scrape %" PRIu64 ": %.16s %.128s: %d", sc->id, req->method, req->target,
			  status);
	else
		log_debug("Scrape %" PRIu64 ": %s: %d", sc->id,
			  status == 431 ? "request too long" : "malformed request", status);

	sc->state = SCRAPE_WRITE;
	r = sd_event_source_set_io_events(sc->io, EPOLLOUT);
	if (r < 0) {
		log_debug_errno(r, "Scrape %" PRIu64 ": failed to wait for writing: %m", sc->id);
		scrape_free(sc);
		return;
	}
	/* Most replies fit in the socket buffer: write now rather than after another epoll. */
	scrape_write(sc);
}

static void scrape_read(struct scrape *sc)
{
	struct metrics_request req = {};
	ssize_t end;

	for (;;) {
		ssize_t n = recv(sc->fd, sc->buf + sc->len, METRICS_REQUEST_MAX - sc->len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return;
			log_debug_errno(errno, "Scrape %" PRIu64 ": failed to read: %m", sc->id);
			scrape_free(sc);
			return;
		}
		if (n == 0) {
			log_debug("Scrape %" PRIu64 ": closed before the end of its request.",
				  sc->id);
			scrape_free(sc);
			return;
		}
		sc->len += n;

		while (sc->skip < sc->len &&
		       (sc->buf[sc->skip] == '\r' || sc->buf[sc->skip] == '\n'))
			sc->skip++;
		sc->scan = MAX(sc->scan, sc->skip);
		end = metrics_request_end(sc->buf, sc->len, &sc->scan);
		if (end >= 0)
			break;
		if (sc->len == METRICS_REQUEST_MAX) {
			/* The rest is never read: lingering drains it, so the 431 arrives. */
			scrape_reply(sc, 431, &req);
			return;
		}
	}

	/* A NUL would cut the strings parsed below short; no client sends one. */
	if (memchr(sc->buf + sc->skip, '\0', end - sc->skip)) {
		scrape_reply(sc, 400, &req);
		return;
	}
	sc->buf[end] = '\0';
	scrape_reply(sc, metrics_request_parse(sc->buf + sc->skip, &req), &req);
}

static int on_scrape_io(sd_event_source *es, int fd, uint32_t revents, void *userdata)
{
	struct scrape *sc = userdata;

	switch (sc->state) {
	case SCRAPE_READ:
		scrape_read(sc);
		break;
	case SCRAPE_WRITE:
		scrape_write(sc);
		break;
	case SCRAPE_LINGER:
		scrape_linger(sc);
		break;
	case SCRAPE_FREE:
		break;
	}
	return 0;
}

static int on_scrape_timer(sd_event_source *es, uint64_t usec, void *userdata)
{
	struct scrape *sc = userdata;

	/* Past the deadline a client that never sends, or never reads, gets no more of our time. */
	if (sc->state != SCRAPE_LINGER)
		log_debug("Scrape %" PRIu64 ": timed out %s, closing.", sc->id,
			  sc->state == SCRAPE_READ ? "reading the request" : "writing the reply");
	scrape_free(sc);
	return 0;
}

/* Take the accepted fd (closed on failure) into the free slot sc. */
static void scrape_start(struct metrics_server *s, struct scrape *sc, int fd)
{
	int r;

	memset(sc, 0, offsetof(struct scrape, buf));
	sc->server = s;
	sc->state = SCRAPE_READ;
	sc->fd = fd;
	sc->id = ++s->next_id;
	sc->deadline = now_usec() + s->timeout;
	s->n_scrapes++;

	r = sd_event_add_io(s->event, &sc->io, fd, EPOLLIN, on_scrape_io, sc);
	if (r >= 0)
		r = sd_event_add_time(s->event, &sc->timer, CLOCK_MONOTONIC, sc->deadline,
				      SCRAPE_TIMER_ACCURACY, on_scrape_timer, sc);
	if (r < 0) {
		log_debug_errno(r, "Scrape %" PRIu64 ": failed to watch the connection: %m",
				sc->id);
		scrape_free(sc);
	}
}

static void server_resume_accept(struct metrics_server *s)
{
	s->paused = false;
	(void)sd_event_source_set_enabled(s->accept_resume, SD_EVENT_OFF);
	server_update_listener(s);
}

static int on_accept_resume(sd_event_source *es, uint64_t usec, void *userdata)
{
	server_resume_accept(userdata);
	return 0;
}

/*
 * Out of fds or memory: accept() fails while the connection stays queued, so epoll would report
 * the listener again at once. Stop watching it for a while; the clients wait in the backlog.
 */
static void server_pause_accept(struct metrics_server *s, int error)
{
	int r;

	if (s->paused)
		return;
	if (log_ratelimit(&s->pause_logged_at, ACCEPT_PAUSE_LOG_INTERVAL))
		log_warning_errno(error, "Failed to accept a metrics scrape (%m): pausing for a "
					 "second.");
	else
		log_debug_errno(error, "Failed to accept a metrics scrape (%m): pausing.");
	s->paused = true;
	server_update_listener(s);

	r = server_arm_resume(s);
	if (r < 0) {
		/* Without the timer nothing would turn the listener back on: spin rather than die. */
		log_debug_errno(r, "Failed to arm the metrics accept timer: %m");
		server_resume_accept(s);
	}
}

static struct scrape *server_free_slot(struct metrics_server *s)
{
	for (size_t i = 0; i < ELEMENTSOF(s->scrapes); i++)
		if (s->scrapes[i].state == SCRAPE_FREE)
			return &s->scrapes[i];
	return NULL;
}

static int on_accept(sd_event_source *es, int fd, uint32_t revents, void *userdata)
{
	struct metrics_server *s = userdata;

	/* listening goes off when the last slot is taken. */
	for (unsigned i = 0; i < ACCEPT_BATCH && s->listening; i++) {
		struct scrape *sc = server_free_slot(s);
		int cfd;

		if (!sc)
			break;
		cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd < 0) {
			switch (errno) {
			case EAGAIN:
				return 0;
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				server_pause_accept(s, errno);
				return 0;
			case EINTR:
			case ECONNABORTED:
			case EPROTO:
			case EPERM:
				/* The client went away before we took it, or a firewall said no. */
				continue;
			default:
				log_error_errno(errno,
						"Failed to accept a metrics scrape, no longer "
						"serving metrics: %m");
				s->failed = true;
				server_update_listener(s);
				return 0;
			}
		}
		scrape_start(s, sc, cfd);
		server_update_listener(s);
	}
	return 0;
}

int metrics_server_new(sd_event *e, int listen_fd, metrics_render_t render, void *userdata,
		       struct metrics_server **ret)
{
	_cleanup_(metrics_server_freep) struct metrics_server *s = NULL;
	int r;

	if (!e || listen_fd < 0 || !render || !ret)
		return -EINVAL;

	/* About 34 KiB: every scrape's memory but its body, taken once. */
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->event = e;
	s->render = render;
	s->userdata = userdata;
	s->timeout = METRICS_REQUEST_TIMEOUT;
	for (size_t i = 0; i < ELEMENTSOF(s->scrapes); i++)
		s->scrapes[i].fd = -EBADF;

	/*
	 * Created now and kept: the timerfd that backs it (shared by every CLOCK_MONOTONIC timer
	 * of the loop) must not have to be opened when fds run out.
	 */
	r = sd_event_add_time_relative(e, &s->accept_resume, CLOCK_MONOTONIC, ACCEPT_PAUSE, 0,
				       on_accept_resume, s);
	if (r < 0)
		return r;
	r = sd_event_source_set_enabled(s->accept_resume, SD_EVENT_OFF);
	if (r < 0)
		return r;
	(void)sd_event_source_set_description(s->accept_resume, "metrics-accept-resume");

	r = sd_event_add_io(e, &s->listener, listen_fd, EPOLLIN, on_accept, s);
	if (r < 0)
		return r;
	(void)sd_event_source_set_description(s->listener, "metrics-listener");
	s->listening = true;

	*ret = TAKE_PTR(s);
	return 0;
}

struct metrics_server *metrics_server_free(struct metrics_server *s)
{
	if (!s)
		return NULL;
	s->stopping = true;
	for (size_t i = 0; i < ELEMENTSOF(s->scrapes); i++)
		scrape_free(&s->scrapes[i]);
	sd_event_source_disable_unref(s->listener);
	sd_event_source_disable_unref(s->accept_resume);
	free(s);
	return NULL;
}

void metrics_server_set_timeout(struct metrics_server *s, uint64_t usec)
{
	s->timeout = usec;
}
