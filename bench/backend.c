// SPDX-License-Identifier: GPL-2.0
/*
 * bench-backend: the Unix-socket backend every benchmark variant talks to.
 *
 * One listening socket serves echo, sink and source; the first 16 bytes of each connection
 * (struct bench_hdr) choose. The listener is bound before forking --procs processes, each
 * with its own epoll and the listener added with EPOLLEXCLUSIVE, so one wakeup goes to one
 * process. Each process is single-threaded and holds its connections in epoll, so 10,000
 * connections cost 10,000 fds spread over the processes, well under the 20,000 per process.
 *
 * It also listens on TCP (--listen 127.0.0.1:PORT) for the "direct TCP" variant: the same
 * backend with a TCP socket instead, the floor for any proxy whose clients arrive on TCP.
 *
 * Usage: bench-backend --listen PATH|IPV4:PORT [--procs N] [--ready-file PATH]
 * On SIGTERM each process prints one line to stderr: connections, and errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto.h"

#define MAX_PROCS 16

static bool listen_is_tcp;
#define READ_BUF  (256 * 1024)
/* Reads per connection per wakeup, so that one bulk flow can't starve the others. */
#define READ_BATCH   8
#define ACCEPT_BATCH 64
#define EVENTS	     256
/* Error messages each process prints before it only counts them. */
#define MAX_ERROR_LINES 10

enum conn_state {
	ST_HEADER,
	ST_ECHO,
	ST_SINK,
	ST_SINK_REPLY,
	ST_SOURCE,
	ST_WAIT_CLOSE,
};

struct conn {
	int fd;
	enum conn_state state;
	unsigned hdr_got;
	struct bench_hdr hdr;
	uint64_t done; /* sink: bytes received; source: bytes sent */
	uint64_t mismatch;
	uint8_t *pend; /* echo bytes that didn't fit in the send buffer */
	size_t pend_len, pend_off;
	struct bench_sink_reply reply;
	size_t reply_off;
	uint32_t events; /* what epoll watches now */
};

static volatile sig_atomic_t stop;
static uint8_t *pattern;
static uint8_t *rbuf;
static int epfd;
static unsigned long n_conns, n_errors, n_lines;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static void error_msg(const char *what, int err)
{
	n_errors++;
	if (n_lines++ < MAX_ERROR_LINES)
		fprintf(stderr, "bench-backend[%d]: %s%s%s\n", getpid(), what, err ? ": " : "",
			err ? strerror(err) : "");
}

static void conn_free(struct conn *c)
{
	close(c->fd);
	free(c->pend);
	free(c);
}

static int conn_watch(struct conn *c, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = c};

	if (c->events == events)
		return 0;
	c->events = events;
	return epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write out what an earlier echo couldn't; 1 when done, 0 when the socket is full, -1 on error. */
static int echo_flush(struct conn *c)
{
	while (c->pend_off < c->pend_len) {
		ssize_t n = send(c->fd, c->pend + c->pend_off, c->pend_len - c->pend_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN)
				return 0;
			return -1;
		}
		c->pend_off += (size_t)n;
	}
	free(c->pend);
	c->pend = NULL;
	c->pend_len = c->pend_off = 0;
	return 1;
}

/* Echo one chunk; keeps what doesn't fit and stops reading until it is written. */
static int echo_chunk(struct conn *c, const uint8_t *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		ssize_t n = send(c->fd, buf + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0) {
			if (errno != EAGAIN)
				return -1;
			c->pend = malloc(len - off);
			if (!c->pend)
				return -1;
			memcpy(c->pend, buf + off, len - off);
			c->pend_len = len - off;
			c->pend_off = 0;
			return conn_watch(c, EPOLLOUT);
		}
		off += (size_t)n;
	}
	return 0;
}

static int sink_chunk(struct conn *c, const uint8_t *buf, size_t len)
{
	if (c->mismatch == BENCH_NO_MISMATCH) {
		uint64_t room = c->hdr.len - c->done;
		int64_t bad = bench_pattern_check(pattern, c->done, buf, len < room ? len : room);

		if (bad >= 0)
			c->mismatch = (uint64_t)bad;
		else if (len > room)
			c->mismatch = c->hdr.len; /* more bytes than announced */
	}
	c->done += len;
	if (c->done < c->hdr.len)
		return 0;
	c->reply = (struct bench_sink_reply){.received = c->done, .mismatch = c->mismatch};
	c->state = ST_SINK_REPLY;
	return conn_watch(c, EPOLLOUT);
}

static int source_send(struct conn *c)
{
	for (int i = 0; i < READ_BATCH && c->done < c->hdr.len; i++) {
		uint64_t left = c->hdr.len - c->done;
		size_t len = left < READ_BUF ? (size_t)left : READ_BUF;
		ssize_t n =
		    send(c->fd, pattern + c->done % BENCH_PERIOD, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0)
			return errno == EAGAIN ? 0 : -1;
		c->done += (uint64_t)n;
	}
	if (c->done == c->hdr.len) {
		c->state = ST_WAIT_CLOSE;
		return conn_watch(c, EPOLLIN);
	}
	return 0;
}

static int header_done(struct conn *c)
{
	if (c->hdr.magic != BENCH_MAGIC) {
		error_msg("bad request header", 0);
		return -1;
	}
	switch (c->hdr.mode) {
	case BENCH_ECHO:
		c->state = ST_ECHO;
		return 0;
	case BENCH_SINK:
		c->state = ST_SINK;
		c->mismatch = BENCH_NO_MISMATCH;
		if (c->hdr.len == 0)
			return sink_chunk(c, NULL, 0);
		return 0;
	case BENCH_SOURCE:
		c->state = ST_SOURCE;
		return conn_watch(c, EPOLLOUT);
	default:
		error_msg("unknown mode in request header", 0);
		return -1;
	}
}

/* Readable: -1 closes the connection (EOF is not an error, the caller can't tell, so count here).
 */
static int conn_read(struct conn *c)
{
	for (int i = 0; i < READ_BATCH; i++) {
		size_t want = READ_BUF;
		ssize_t n;

		if (c->state == ST_HEADER)
			want = sizeof(c->hdr) - c->hdr_got;
		n = recv(c->fd, c->state == ST_HEADER ? (uint8_t *)&c->hdr + c->hdr_got : rbuf,
			 want, MSG_DONTWAIT);
		if (n == 0) {
			/* The client closed. Only a sink that is still owed bytes has lost any. */
			if (c->state == ST_SINK)
				error_msg("client closed before the announced upload was complete",
					  0);
			return -1;
		}
		if (n < 0) {
			if (errno == EAGAIN)
				return 0;
			if (errno != ECONNRESET)
				error_msg("recv", errno);
			return -1;
		}
		switch (c->state) {
		case ST_HEADER:
			c->hdr_got += (unsigned)n;
			if (c->hdr_got == sizeof(c->hdr) && header_done(c) < 0)
				return -1;
			break;
		case ST_ECHO:
			if (echo_chunk(c, rbuf, (size_t)n) < 0)
				return -1;
			if (c->pend)
				return 0;
			break;
		case ST_SINK:
			if (sink_chunk(c, rbuf, (size_t)n) < 0)
				return -1;
			break;
		case ST_SINK_REPLY:
		case ST_SOURCE:
		case ST_WAIT_CLOSE:
			error_msg("unexpected bytes after the request", 0);
			return -1;
		}
		if (c->state == ST_SINK_REPLY || c->state == ST_SOURCE)
			return 0;
	}
	return 0;
}

static int conn_write(struct conn *c)
{
	int r;

	switch (c->state) {
	case ST_ECHO:
		r = echo_flush(c);
		if (r <= 0)
			return r;
		return conn_watch(c, EPOLLIN);
	case ST_SINK_REPLY:
		while (c->reply_off < sizeof(c->reply)) {
			ssize_t n =
			    send(c->fd, (uint8_t *)&c->reply + c->reply_off,
				 sizeof(c->reply) - c->reply_off, MSG_NOSIGNAL | MSG_DONTWAIT);

			if (n < 0)
				return errno == EAGAIN ? 0 : -1;
			c->reply_off += (size_t)n;
		}
		c->state = ST_WAIT_CLOSE;
		return conn_watch(c, EPOLLIN);
	case ST_SOURCE:
		return source_send(c);
	default:
		return 0;
	}
}

static void on_listener(int lfd)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		struct epoll_event ev;
		struct conn *c;
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != ECONNABORTED && errno != EINTR)
				error_msg("accept", errno);
			return;
		}
		if (listen_is_tcp)
			(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){1}, sizeof(int));
		c = calloc(1, sizeof(*c));
		if (!c) {
			error_msg("out of memory", ENOMEM);
			close(fd);
			return;
		}
		c->fd = fd;
		c->state = ST_HEADER;
		c->events = EPOLLIN;
		ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = c};
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			error_msg("epoll_ctl", errno);
			conn_free(c);
			continue;
		}
		n_conns++;
	}
}

static int serve(int lfd)
{
	struct epoll_event evs[EVENTS];
	struct epoll_event lev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL};

	rbuf = malloc(READ_BUF);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (!rbuf || epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) < 0) {
		perror("bench-backend: setup");
		return 1;
	}
	while (!stop) {
		int n = epoll_wait(epfd, evs, EVENTS, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("bench-backend: epoll_wait");
			return 1;
		}
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			int r = 0;

			if (!c) {
				on_listener(lfd);
				continue;
			}
			if (evs[i].events & EPOLLOUT)
				r = conn_write(c);
			if (r >= 0 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
			    (c->events & EPOLLIN))
				r = conn_read(c);
			else if (r >= 0 && (evs[i].events & (EPOLLHUP | EPOLLERR)))
				r = -1;
			if (r < 0)
				conn_free(c); /* close() also takes it out of epoll */
		}
	}
	fprintf(stderr, "bench-backend[%d]: %lu connections, %lu errors\n", getpid(), n_conns,
		n_errors);
	return 0;
}

/* IPv4 HOST:PORT, with TCP_NODELAY on every accepted socket, as the proxies set it. */
static int listen_tcp(const char *spec)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	const char *colon = strrchr(spec, ':');
	char host[64];
	int fd;

	if (!colon || (size_t)(colon - spec) >= sizeof(host))
		return -1;
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	sa.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "bench-backend: bad address %s\n", spec);
		return -1;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0) {
		fprintf(stderr, "bench-backend: listen on %s: %s\n", spec, strerror(errno));
		return -1;
	}
	listen_is_tcp = true;
	return fd;
}

static int listen_unix(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "bench-backend: path too long: %s\n", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	unlink(path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(fd, SOMAXCONN) < 0) {
		fprintf(stderr, "bench-backend: listen on %s: %s\n", path, strerror(errno));
		return -1;
	}
	return fd;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: bench-backend --listen PATH|IPV4:PORT [--procs N] [--ready-file PATH]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {{"listen", required_argument, NULL, 'l'},
						 {"procs", required_argument, NULL, 'p'},
						 {"ready-file", required_argument, NULL, 'r'},
						 {}};
	const char *path = NULL, *ready = NULL;
	pid_t kids[MAX_PROCS];
	struct sigaction sa = {.sa_handler = on_term};
	int procs = 2, lfd, c, status = 0;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'l':
			path = optarg;
			break;
		case 'p':
			procs = atoi(optarg);
			break;
		case 'r':
			ready = optarg;
			break;
		default:
			usage();
		}
	}
	if (!path || procs < 1 || procs > MAX_PROCS)
		usage();

	pattern = bench_pattern_new();
	if (!pattern) {
		perror("bench-backend: pattern");
		return 1;
	}
	lfd = path[0] == '/' ? listen_unix(path) : listen_tcp(path);
	if (lfd < 0)
		return 1;
	/* No SA_RESTART: epoll_wait() must return EINTR so that the loop sees the flag. */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	for (int i = 0; i < procs; i++) {
		kids[i] = fork();
		if (kids[i] < 0) {
			perror("bench-backend: fork");
			procs = i;
			stop = 1;
			break;
		}
		if (kids[i] == 0)
			return serve(lfd);
	}
	if (ready && !stop) {
		int fd = open(ready, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

		if (fd >= 0)
			close(fd);
	}
	while (!stop)
		pause();
	for (int i = 0; i < procs; i++)
		kill(kids[i], SIGTERM);
	for (int i = 0; i < procs; i++) {
		int ws;

		if (waitpid(kids[i], &ws, 0) > 0 && !(WIFEXITED(ws) && WEXITSTATUS(ws) == 0))
			status = 1;
	}
	unlink(path);
	return status;
}
