// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for the /metrics HTTP server (user/metrics-http.c): the server runs in this
 * process's sd-event loop, on 127.0.0.1, and a thread plays the clients with plain blocking
 * sockets, checking every byte of every reply. The thread changes the server only through the
 * loop (a command socket), since sd-event is not thread-safe. Each case ends by waiting for the
 * process's fd count to come back to where it was: a scrape that leaks its socket fails there.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "../user/log.h"
#include "../user/metrics-accept.h"
#include "../user/metrics-http.h"

#include "check.h"

/* The bodies of the test's render(); no Accept gets text, the default of metrics.h. */
#define BODY_TEXT   "# TYPE sr_up gauge\nsr_up 1\n"
#define BODY_OM	    "# TYPE sr_up gauge\nsr_up 1\n# EOF\n"
#define CTYPE_ERROR "text/plain; charset=utf-8"
#define GET_METRICS "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n"
/* A short deadline, for the cases that wait for it. */
#define SHORT_TIMEOUT_MS 300

/* What the loop does for the client thread. */
enum {
	CMD_QUIT,
	CMD_TIMEOUT, /* arg: µs */
	CMD_FAIL,    /* arg: render fails with -arg, or works if 0 */
	CMD_BIG,     /* arg: body bytes, or 0 for the fixed bodies */
};

struct cmd {
	int op;
	uint64_t arg;
};

/* The loop's side; only the loop thread touches it. */
struct server_side {
	sd_event *event;
	struct metrics_server *server;
	int render_error;
	size_t big;
	unsigned renders;
};

static int render(FILE *f, enum metrics_format fmt, void *userdata)
{
	struct server_side *ss = userdata;
	static char chunk[65536];

	ss->renders++;
	if (ss->render_error)
		return -ss->render_error;
	if (ss->big) {
		memset(chunk, 'x', sizeof(chunk));
		for (size_t n = 0; n < ss->big; n += sizeof(chunk))
			fwrite(chunk, 1, MIN(sizeof(chunk), ss->big - n), f);
		return 0;
	}
	fputs(fmt == METRICS_OPENMETRICS ? BODY_OM : BODY_TEXT, f);
	return 0;
}

static int on_cmd(sd_event_source *es, int fd, uint32_t revents, void *userdata)
{
	struct server_side *ss = userdata;
	struct cmd c;
	char ack = 1;

	if (read(fd, &c, sizeof(c)) != sizeof(c)) {
		/* The thread is gone: nothing left to serve. */
		return sd_event_exit(ss->event, 0);
	}
	switch (c.op) {
	case CMD_QUIT:
		(void)sd_event_exit(ss->event, 0);
		break;
	case CMD_TIMEOUT:
		metrics_server_set_timeout(ss->server, c.arg);
		break;
	case CMD_FAIL:
		ss->render_error = c.arg;
		break;
	case CMD_BIG:
		ss->big = c.arg;
		break;
	}
	if (write(fd, &ack, 1) != 1)
		return sd_event_exit(ss->event, 0);
	return 0;
}

static unsigned count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	unsigned n = 0;

	if (!d)
		return 0;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* The client thread's. */
static int ctl_fd;
static struct sockaddr_in server_addr;
static unsigned idle_fds;

static void command(int op, uint64_t arg)
{
	struct cmd c = { .op = op, .arg = arg };
	char ack;

	if (write(ctl_fd, &c, sizeof(c)) != sizeof(c) || read(ctl_fd, &ack, 1) != 1) {
		fprintf(stderr, "the loop does not answer\n");
		exit(1);
	}
}

static uint64_t elapsed_ms(uint64_t since_usec)
{
	return (now_usec() - since_usec) / USEC_PER_MSEC;
}

/* Every socket the server had is closed, or the case leaked one (waits up to 2 s). */
static void check_idle(const char *what)
{
	uint64_t start = now_usec();
	unsigned n;

	while ((n = count_fds()) != idle_fds && elapsed_ms(start) < 2000)
		usleep(10 * 1000);
	CHECK(n == idle_fds, "%s: %u fds open, %u when idle", what, n, idle_fds);
}

/* A connected client socket; reads time out after 10 s, so that no case hangs. */
static int client_connect(void)
{
	struct timeval tv = { .tv_sec = 10 };
	int fd;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&server_addr, sizeof(server_addr)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

static bool send_all(int fd, const void *p, size_t n)
{
	while (n > 0) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);

		if (k < 0)
			return false;
		p = (const char *)p + k;
		n -= k;
	}
	return true;
}

/* Read until EOF: 0, or a negative errno (the bytes read so far are in *buf either way). */
static int read_all(int fd, char **buf, size_t *len)
{
	size_t cap = 4096;
	int r = 0;

	*buf = malloc(cap + 1);
	*len = 0;
	for (;;) {
		ssize_t k;

		if (*len == cap) {
			cap *= 2;
			*buf = realloc(*buf, cap + 1);
		}
		k = recv(fd, *buf + *len, cap - *len, 0);
		if (k < 0) {
			r = -errno;
			break;
		}
		if (k == 0)
			break;
		*len += k;
	}
	(*buf)[*len] = '\0';
	return r;
}

struct reply {
	int status;
	char head[2048]; /* status line and headers, with the empty line */
	char *body;
	size_t body_len;
	long content_length; /* -1: none */
};

static void reply_done(struct reply *rp)
{
	rp->body = mfree(rp->body);
}

/* A header's value from rp->head, or "" if there is none. */
static const char *header(const struct reply *rp, const char *name)
{
	static char value[512];
	char key[64];
	const char *p, *e;

	snprintf(key, sizeof(key), "\r\n%s: ", name);
	p = strstr(rp->head, key);
	if (!p)
		return "";
	p += strlen(key);
	e = strstr(p, "\r\n");
	snprintf(value, sizeof(value), "%.*s", (int)(e - p), p);
	return value;
}

/* Send req (n bytes) on a new connection and read the whole reply. */
static bool request(const void *req, size_t n, struct reply *rp)
{
	char *raw, *end;
	size_t len;
	int fd, r;

	*rp = (struct reply){ .content_length = -1 };
	fd = client_connect();
	if (!CHECK(fd >= 0, "connect: %s", strerror(-fd)))
		return false;
	if (!CHECK(send_all(fd, req, n), "send: %m")) {
		close(fd);
		return false;
	}
	r = read_all(fd, &raw, &len);
	close(fd);
	if (!CHECK(r == 0, "read: %s (after %zu bytes)", strerror(-r), len))
		goto fail;
	end = strstr(raw, "\r\n\r\n");
	if (!CHECK(end && end - raw < (ssize_t)sizeof(rp->head) - 4, "no end of headers: '%s'",
		   raw))
		goto fail;
	snprintf(rp->head, sizeof(rp->head), "%.*s", (int)(end + 4 - raw), raw);
	if (!CHECK(sscanf(raw, "HTTP/1.1 %d ", &rp->status) == 1, "status line: '%.40s'", raw))
		goto fail;
	rp->body_len = len - (end + 4 - raw);
	rp->body = malloc(rp->body_len + 1);
	memcpy(rp->body, end + 4, rp->body_len + 1);
	if (*header(rp, "Content-Length"))
		rp->content_length = atol(header(rp, "Content-Length"));
	free(raw);
	return true;
fail:
	free(raw);
	return false;
}

static bool request_str(const char *req, struct reply *rp)
{
	return request(req, strlen(req), rp);
}

/* A full reply: status, Content-Type, the body and its length, Connection: close. */
static void check_reply(const char *what, const struct reply *rp, int status, const char *ctype,
			const char *body)
{
	CHECK(rp->status == status, "%s: status %d, want %d", what, rp->status, status);
	CHECK(streq(header(rp, "Content-Type"), ctype), "%s: Content-Type '%s', want '%s'", what,
	      header(rp, "Content-Type"), ctype);
	CHECK(rp->content_length == (long)rp->body_len, "%s: Content-Length %ld, body %zu bytes",
	      what, rp->content_length, rp->body_len);
	CHECK(rp->body && streq(rp->body, body), "%s: body '%s', want '%s'", what,
	      rp->body ? rp->body : "", body);
	CHECK(streq(header(rp, "Connection"), "close"), "%s: no Connection: close", what);
	CHECK(status == 405 || !*header(rp, "Allow"), "%s: Allow on a %d", what, status);
}

/* req gets status with the error body of reason. */
static void expect_error(const char *what, const char *req, int status, const char *reason)
{
	struct reply rp;
	char body[64];

	if (!request_str(req, &rp)) {
		CHECK(false, "%s: no reply", what);
		return;
	}
	snprintf(body, sizeof(body), "%s\n", reason);
	check_reply(what, &rp, status, CTYPE_ERROR, body);
	reply_done(&rp);
}

/*
 * A 200 for a request whose Accept value, as the server should hand it to metrics.c, is accept
 * (NULL: none). The format is metrics.c's choice; the server's part is to find and join the
 * Accept lines, and to use the same format for the body and the Content-Type.
 */
static void check_metrics(const char *what, const struct reply *rp, const char *accept)
{
	enum metrics_format fmt = metrics_format_from_accept(accept);

	check_reply(what, rp, 200, metrics_content_type(fmt),
		    fmt == METRICS_OPENMETRICS ? BODY_OM : BODY_TEXT);
}

static void expect_metrics(const char *what, const char *req, const char *accept)
{
	struct reply rp;

	if (!request_str(req, &rp)) {
		CHECK(false, "%s: no reply", what);
		return;
	}
	check_metrics(what, &rp, accept);
	reply_done(&rp);
}

static void test_get(void)
{
	/* Else the cases below that ask for OpenMetrics would test nothing. */
	CHECK(metrics_format_from_accept("application/openmetrics-text") == METRICS_OPENMETRICS,
	      "metrics.c does not offer OpenMetrics");

	expect_metrics("GET", GET_METRICS, NULL);
	expect_metrics("Accept text", "GET /metrics HTTP/1.1\r\nAccept: text/plain\r\n\r\n",
		       "text/plain");
	expect_metrics(
		"Accept openmetrics",
		"GET /metrics HTTP/1.1\r\nHost: h\r\n"
		"Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n",
		"application/openmetrics-text;version=1.0.0,text/plain;q=0.5");
	expect_metrics("accept, lower case",
		       "GET /metrics HTTP/1.1\r\naCCepT:application/openmetrics-text\r\n\r\n",
		       "application/openmetrics-text");
	expect_metrics("two Accept lines, joined",
		       "GET /metrics HTTP/1.1\r\nAccept: text/plain;q=0.5\r\nX: y\r\n"
		       "Accept:  application/openmetrics-text \r\n\r\n",
		       "text/plain;q=0.5, application/openmetrics-text");
	expect_metrics("Accept-Foo is not Accept",
		       "GET /metrics HTTP/1.1\r\nAccept-Foo: application/openmetrics-text\r\n\r\n",
		       NULL);
	expect_metrics("query", "GET /metrics?name[]=sr_up HTTP/1.1\r\n\r\n", NULL);
	expect_metrics("absolute form", "GET http://localhost:9100/metrics HTTP/1.1\r\n\r\n", NULL);
	expect_metrics("HTTP/1.0", "GET /metrics HTTP/1.0\r\n\r\n", NULL);
	expect_metrics("bare LF", "GET /metrics HTTP/1.1\nAccept: text/plain\n\n", "text/plain");
	expect_metrics("no headers, bare LF", "GET /metrics HTTP/1.1\n\n", NULL);
	expect_metrics("empty lines first", "\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n", NULL);
	check_idle("GET");
}

static void test_head(void)
{
	struct reply rp;

	if (!request_str("HEAD /metrics HTTP/1.1\r\nHost: h\r\n\r\n", &rp)) {
		CHECK(false, "HEAD: no reply");
		return;
	}
	CHECK(rp.status == 200, "HEAD: status %d", rp.status);
	CHECK(rp.body_len == 0, "HEAD: %zu body bytes", rp.body_len);
	CHECK(rp.content_length == (long)strlen(BODY_TEXT), "HEAD: Content-Length %ld, want %zu",
	      rp.content_length, strlen(BODY_TEXT));
	CHECK(streq(header(&rp, "Content-Type"), metrics_content_type(METRICS_TEXT)),
	      "HEAD: Content-Type '%s'", header(&rp, "Content-Type"));
	reply_done(&rp);

	/* An error to a HEAD has no body either. */
	if (request_str("HEAD /other HTTP/1.1\r\n\r\n", &rp)) {
		CHECK(rp.status == 404 && rp.body_len == 0 &&
			      rp.content_length == (long)strlen("Not Found\n"),
		      "HEAD /other: %d, %zu bytes, Content-Length %ld", rp.status, rp.body_len,
		      rp.content_length);
		reply_done(&rp);
	}
	check_idle("HEAD");
}

static void test_errors(void)
{
	struct reply rp;

	if (request_str("POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", &rp)) {
		check_reply("POST", &rp, 405, CTYPE_ERROR, "Method Not Allowed\n");
		CHECK(streq(header(&rp, "Allow"), "GET, HEAD"), "POST: Allow '%s'",
		      header(&rp, "Allow"));
		reply_done(&rp);
	}
	expect_error("DELETE", "DELETE /metrics HTTP/1.1\r\n\r\n", 405, "Method Not Allowed");
	expect_error("lower-case get", "get /metrics HTTP/1.1\r\n\r\n", 405, "Method Not Allowed");

	expect_error("/other", "GET /other HTTP/1.1\r\n\r\n", 404, "Not Found");
	expect_error("/", "GET / HTTP/1.1\r\n\r\n", 404, "Not Found");
	expect_error("/metricsx", "GET /metricsx HTTP/1.1\r\n\r\n", 404, "Not Found");
	expect_error("/metrics/", "GET /metrics/ HTTP/1.1\r\n\r\n", 404, "Not Found");
	expect_error("absolute, no path", "GET http://localhost HTTP/1.1\r\n\r\n", 404,
		     "Not Found");

	expect_error("garbage", "hello there\r\n\r\n", 400, "Bad Request");
	expect_error("binary", "\x16\x03\x01\x02\x01\x01\x01\xfc\x03\x03\n\n", 400, "Bad Request");
	expect_error("HTTP/0.9", "GET /metrics\r\n\r\n", 400, "Bad Request");
	expect_error("two spaces", "GET  /metrics HTTP/1.1\r\n\r\n", 400, "Bad Request");
	expect_error("HTTP/2.0", "GET /metrics HTTP/2.0\r\n\r\n", 400, "Bad Request");
	expect_error("HTTP/1.1 and more", "GET /metrics HTTP/1.1 x\r\n\r\n", 400, "Bad Request");
	expect_error("bad method", "G(T /metrics HTTP/1.1\r\n\r\n", 400, "Bad Request");
	expect_error("control in target", "GET /met\trics HTTP/1.1\r\n\r\n", 400, "Bad Request");
	expect_error("header without colon", "GET /metrics HTTP/1.1\r\nAccept\r\n\r\n", 400,
		     "Bad Request");
	expect_error("space before colon", "GET /metrics HTTP/1.1\r\nAccept : x\r\n\r\n", 400,
		     "Bad Request");
	expect_error("obs-fold", "GET /metrics HTTP/1.1\r\nAccept: a,\r\n b\r\n\r\n", 400,
		     "Bad Request");
	if (request("GET /metrics HTTP/1.1\r\nX: a\0b\r\n\r\n", 33, &rp)) {
		check_reply("NUL", &rp, 400, CTYPE_ERROR, "Bad Request\n");
		reply_done(&rp);
	}
	check_idle("errors");
}

static void test_too_long(void)
{
	char req[9100];
	struct reply rp;
	int n;

	/* 9000 bytes of one header, complete: it doesn't fit the 8 KiB buffer. */
	n = snprintf(req, sizeof(req), "GET /metrics HTTP/1.1\r\nX-Big: ");
	memset(req + n, 'a', 9000);
	n += 9000;
	n += snprintf(req + n, sizeof(req) - n, "\r\n\r\n");
	if (request(req, n, &rp)) {
		check_reply("9000-byte header", &rp, 431, CTYPE_ERROR,
			    "Request Header Fields Too Large\n");
		reply_done(&rp);
	}

	/* The largest that fits: 8192 bytes with its empty line. */
	n = snprintf(req, sizeof(req), "GET /metrics HTTP/1.1\r\nX-Big: ");
	memset(req + n, 'a', METRICS_REQUEST_MAX - n - 4);
	memcpy(req + METRICS_REQUEST_MAX - 4, "\r\n\r\n", 4);
	if (request(req, METRICS_REQUEST_MAX, &rp)) {
		check_metrics("8192-byte request", &rp, NULL);
		reply_done(&rp);
	}
	/* One byte more: the last "\n" of its empty line doesn't fit. */
	n = snprintf(req, sizeof(req), "GET /metrics HTTP/1.1\r\nX-Big: ");
	memset(req + n, 'a', METRICS_REQUEST_MAX + 1 - n - 4);
	memcpy(req + METRICS_REQUEST_MAX + 1 - 4, "\r\n\r\n", 4);
	if (request(req, METRICS_REQUEST_MAX + 1, &rp)) {
		CHECK(rp.status == 431, "8193-byte request: status %d", rp.status);
		reply_done(&rp);
	}
	check_idle("too long");
}

/* The request in pieces, and more bytes after it than the request. */
static void test_pieces(void)
{
	static char junk[40000];
	const char *req = GET_METRICS;
	struct reply rp;
	char *raw;
	size_t len;
	int fd, one = 1;

	fd = client_connect();
	if (!CHECK(fd >= 0, "connect: %s", strerror(-fd)))
		return;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (size_t i = 0; req[i]; i++) {
		send_all(fd, req + i, 1);
		usleep(1000);
	}
	CHECK(read_all(fd, &raw, &len) == 0, "byte by byte: read: %m");
	CHECK(strstr(raw, "\r\n\r\n" BODY_TEXT) && strncmp(raw, "HTTP/1.1 200 OK\r\n", 17) == 0,
	      "byte by byte: '%s'", raw);
	free(raw);
	close(fd);

	/*
	 * A pipelined second request and 40 KB more, unread by the server when it replies: its
	 * close must not reset the connection before the client has the reply.
	 */
	memset(junk, 'j', sizeof(junk));
	memcpy(junk, GET_METRICS GET_METRICS, 2 * strlen(GET_METRICS));
	if (request(junk, sizeof(junk), &rp)) {
		check_metrics("pipelined", &rp, NULL);
		reply_done(&rp);
	}
	check_idle("pieces");
}

static void test_render_fails(void)
{
	command(CMD_FAIL, ENOMEM);
	expect_error("render fails", GET_METRICS, 500, "Internal Server Error");
	command(CMD_FAIL, 0);
	expect_metrics("render works again", GET_METRICS, NULL);
	check_idle("render fails");
}

/* A big body, read slowly: the writes wait for EPOLLOUT. */
static void test_big(void)
{
	size_t size = 8 << 20;
	char *raw, *body;
	size_t len;
	int fd, rcvbuf = 65536;

	command(CMD_BIG, size);
	fd = client_connect();
	if (CHECK(fd >= 0, "connect: %s", strerror(-fd))) {
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
		send_all(fd, GET_METRICS, strlen(GET_METRICS));
		usleep(100 * 1000);
		CHECK(read_all(fd, &raw, &len) == 0, "big: read: %m");
		body = strstr(raw, "\r\n\r\n");
		CHECK(body && len - (body + 4 - raw) == size, "big: %zu bytes of body, want %zu",
		      body ? len - (body + 4 - raw) : 0, size);
		CHECK(strstr(raw, "\r\nContent-Length: 8388608\r\n"), "big: Content-Length");
		free(raw);
		close(fd);
	}
	command(CMD_BIG, 0);
	check_idle("big");
}

/* Clients that never send, or never read, are closed at the deadline. */
static void test_deadline(void)
{
	uint64_t start, ms;
	int fd, rcvbuf = 65536;
	char *raw;
	size_t len;

	command(CMD_TIMEOUT, SHORT_TIMEOUT_MS * USEC_PER_MSEC);

	fd = client_connect();
	if (CHECK(fd >= 0, "connect: %s", strerror(-fd))) {
		start = now_usec();
		CHECK(read_all(fd, &raw, &len) == 0 && len == 0, "silent: %zu bytes", len);
		ms = elapsed_ms(start);
		CHECK(ms >= SHORT_TIMEOUT_MS - 50 && ms < 2000,
		      "silent: closed after %" PRIu64 " ms, deadline %d ms", ms, SHORT_TIMEOUT_MS);
		free(raw);
		close(fd);
	}

	/* Half a request, then silence. */
	fd = client_connect();
	if (CHECK(fd >= 0, "connect: %s", strerror(-fd))) {
		start = now_usec();
		send_all(fd, "GET /metrics HTTP/1.1\r\nHost:", 28);
		CHECK(read_all(fd, &raw, &len) == 0 && len == 0, "half: %zu bytes", len);
		ms = elapsed_ms(start);
		CHECK(ms >= SHORT_TIMEOUT_MS - 50 && ms < 2000, "half: closed after %" PRIu64 " ms",
		      ms);
		free(raw);
		close(fd);
	}

	/* Never reads a 32 MB reply: the server gives up with most of it unsent. */
	command(CMD_BIG, 32 << 20);
	fd = client_connect();
	if (CHECK(fd >= 0, "connect: %s", strerror(-fd))) {
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
		send_all(fd, GET_METRICS, strlen(GET_METRICS));
		usleep(2 * SHORT_TIMEOUT_MS * 1000);
		read_all(fd, &raw, &len);
		CHECK(len < (32 << 20), "non-reader: all %zu bytes sent past the deadline", len);
		CHECK(strncmp(raw, "HTTP/1.1 200 OK\r\n", 17) == 0, "non-reader: '%.20s'", raw);
		free(raw);
		close(fd);
	}
	command(CMD_BIG, 0);
	command(CMD_TIMEOUT, METRICS_REQUEST_TIMEOUT);
	check_idle("deadline");
}

/* With METRICS_MAX_SCRAPES clients that send nothing, the next waits for one of them to end. */
static void test_max_scrapes(void)
{
	int silent[METRICS_MAX_SCRAPES], fd;
	uint64_t start, ms;
	char *raw;
	size_t len;

	command(CMD_TIMEOUT, SHORT_TIMEOUT_MS * USEC_PER_MSEC);
	for (size_t i = 0; i < ELEMENTSOF(silent); i++) {
		silent[i] = client_connect();
		CHECK(silent[i] >= 0, "connect: %s", strerror(-silent[i]));
	}
	/* Accepted in order from the backlog: the silent ones first. */
	fd = client_connect();
	start = now_usec();
	if (CHECK(fd >= 0, "connect: %s", strerror(-fd))) {
		send_all(fd, GET_METRICS, strlen(GET_METRICS));
		CHECK(read_all(fd, &raw, &len) == 0, "fifth: read: %m");
		ms = elapsed_ms(start);
		CHECK(strstr(raw, "\r\n\r\n" BODY_TEXT) != NULL, "fifth: '%s'", raw);
		/* The deadline runs from accept, and the fifth isn't accepted before it. */
		CHECK(ms >= SHORT_TIMEOUT_MS - 50,
		      "fifth: served after %" PRIu64 " ms, before "
		      "a slot was free (%d ms)",
		      ms, SHORT_TIMEOUT_MS);
		free(raw);
		close(fd);
	}
	for (size_t i = 0; i < ELEMENTSOF(silent); i++) {
		if (silent[i] < 0)
			continue;
		CHECK(read_all(silent[i], &raw, &len) == 0 && len == 0, "silent %zu: %zu bytes", i,
		      len);
		free(raw);
		close(silent[i]);
	}
	command(CMD_TIMEOUT, METRICS_REQUEST_TIMEOUT);
	check_idle("max scrapes");
}

/* 100 clients connect and send at once: each gets its whole reply. */
static void test_concurrent(void)
{
	int fds[100];
	unsigned ok = 0;
	char *raw;
	size_t len;

	for (size_t i = 0; i < ELEMENTSOF(fds); i++) {
		fds[i] = client_connect();
		CHECK(fds[i] >= 0, "connect %zu: %s", i, strerror(-fds[i]));
	}
	for (size_t i = 0; i < ELEMENTSOF(fds); i++)
		if (fds[i] >= 0)
			send_all(fds[i], GET_METRICS, strlen(GET_METRICS));
	for (size_t i = 0; i < ELEMENTSOF(fds); i++) {
		if (fds[i] < 0)
			continue;
		if (read_all(fds[i], &raw, &len) == 0 &&
		    strncmp(raw, "HTTP/1.1 200 OK\r\n", 17) == 0 &&
		    strstr(raw, "\r\nContent-Length: 27\r\n") &&
		    strstr(raw, "\r\n\r\n" BODY_TEXT) &&
		    streq(strstr(raw, "\r\n\r\n") + 4, BODY_TEXT))
			ok++;
		free(raw);
		close(fds[i]);
	}
	CHECK(ok == ELEMENTSOF(fds), "concurrent: %u of %zu full replies", ok, ELEMENTSOF(fds));
	check_idle("concurrent");
}

/* accept() fails with EMFILE: the server stops watching for a second, then serves. */
static void test_emfile(void)
{
	struct rlimit old, low;
	uint64_t start, ms;
	int fd, lowest;
	char *raw;
	size_t len;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	lowest = dup(ctl_fd);
	if (!CHECK(fd >= 0 && lowest >= 0, "socket: %m"))
		return;
	close(lowest);
	getrlimit(RLIMIT_NOFILE, &old);
	/* No fd number free below the limit: the server's accept() fails, and sd-event's too. */
	low = (struct rlimit){ .rlim_cur = lowest, .rlim_max = old.rlim_max };
	if (!CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0, "setrlimit: %m"))
		return;
	start = now_usec();
	CHECK(connect(fd, (struct sockaddr *)&server_addr, sizeof(server_addr)) == 0,
	      "connect: %m");
	send_all(fd, GET_METRICS, strlen(GET_METRICS));
	usleep(200 * 1000);
	setrlimit(RLIMIT_NOFILE, &old);
	CHECK(read_all(fd, &raw, &len) == 0, "emfile: read: %m");
	ms = elapsed_ms(start);
	CHECK(strstr(raw, "\r\n\r\n" BODY_TEXT) != NULL, "emfile: '%s'", raw);
	CHECK(ms >= 900 && ms < 3000, "emfile: served after %" PRIu64 " ms, want the 1 s pause",
	      ms);
	free(raw);
	close(fd);
	check_idle("emfile");
}

static void *client_main(void *userdata)
{
	idle_fds = count_fds();

	test_get();
	test_head();
	test_errors();
	test_too_long();
	test_pieces();
	test_render_fails();
	test_big();
	test_deadline();
	test_max_scrapes();
	test_concurrent();
	test_emfile();

	command(CMD_QUIT, 0);
	return NULL;
}

int main(void)
{
	struct server_side ss = {};
	sd_event_source *ctl_source = NULL;
	socklen_t alen = sizeof(server_addr);
	unsigned fds_before;
	pthread_t thread;
	int lfd, ctl[2], r;

	log_open();
	/* TEST_DEBUG=1: a line per scrape. Else errors only: test_emfile's warning is expected. */
	log_set_max_level(getenv("TEST_DEBUG") ? LOG_DEBUG : LOG_ERR);
	fds_before = count_fds();

	r = sd_event_new(&ss.event);
	if (!CHECK(r >= 0, "sd_event_new: %s", strerror(-r)))
		return 1;
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	server_addr = (struct sockaddr_in){ .sin_family = AF_INET,
					    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (!CHECK(lfd >= 0 &&
			   bind(lfd, (struct sockaddr *)&server_addr, sizeof(server_addr)) == 0 &&
			   listen(lfd, 128) == 0 &&
			   getsockname(lfd, (struct sockaddr *)&server_addr, &alen) == 0,
		   "listen on 127.0.0.1: %m"))
		return 1;

	CHECK(metrics_server_new(ss.event, lfd, NULL, NULL, &ss.server) == -EINVAL && !ss.server,
	      "no render: not -EINVAL, or ret written");
	r = metrics_server_new(ss.event, lfd, render, &ss, &ss.server);
	if (!CHECK(r >= 0, "metrics_server_new: %s", strerror(-r)))
		return 1;

	if (!CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl) == 0,
		   "socketpair: %m"))
		return 1;
	r = sd_event_add_io(ss.event, &ctl_source, ctl[0], EPOLLIN, on_cmd, &ss);
	if (!CHECK(r >= 0, "sd_event_add_io: %s", strerror(-r)))
		return 1;
	ctl_fd = ctl[1];
	if (!CHECK(pthread_create(&thread, NULL, client_main, NULL) == 0, "pthread_create"))
		return 1;

	r = sd_event_loop(ss.event);
	CHECK(r >= 0, "sd_event_loop: %s", strerror(-r));
	pthread_join(thread, NULL);
	printf("%u renders\n", ss.renders);

	ss.server = metrics_server_free(ss.server);
	sd_event_source_disable_unref(ctl_source);
	close(ctl[0]);
	close(ctl[1]);
	close(lfd);
	sd_event_unref(ss.event);
	CHECK(count_fds() == fds_before, "%u fds open at the end, %u at the start", count_fds(),
	      fds_before);

	return CHECK_REPORT("test-metrics-http");
}
