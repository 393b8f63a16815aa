// SPDX-License-Identifier: GPL-2.0
/*
 * srpeer: both ends of sockredir's end-to-end tests, the client and the backend.
 *
 * Both ends derive the bytes they exchange from seeds, so every byte that crosses the proxy is
 * regenerated and compared where it arrives: a lost, duplicated, reordered or flipped byte is
 * reported at its exact stream offset, not as a checksum that does not match.
 *
 *   srpeer backend --listen ADDR --mode echo|banner|proto|http|sink-slow [options]
 *   srpeer client --connect ADDR --test TEST [options]
 *   srpeer notify-listen PATH [--timeout SEC]
 *
 * "srpeer --help" lists the options; tests/srpeer-selftest.sh runs every test without a proxy.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define NSEC_PER_SEC  1000000000ULL
#define NSEC_PER_MSEC 1000000ULL
#define NSEC_PER_USEC 1000ULL

/* 1000+ connections each get a thread; they never recurse, so a small stack is plenty. */
#define THREAD_STACK_SIZE (256 * 1024)
/* Large enough that a 256 MiB transfer costs a few thousand syscalls, not a million. */
#define IO_BUF_SIZE (256 * 1024)
/* Expected bytes are regenerated in pieces this big: stays in cache next to the received data. */
#define VERIFY_CHUNK   (16 * 1024)
#define LISTEN_BACKLOG 4096

/* The proto protocol, see usage(). All integers are little-endian. */
#define PROTO_MAGIC		  0x51505253U /* "SRPQ" */
#define PROTO_F_PAYLOAD_UNTIL_EOF (1U << 0)
#define PROTO_F_CLOSE_AT_ONCE	  (1U << 1)
#define PROTO_F_DUPLEX		  (1U << 2)
#define PROTO_F_REPLY_SHUT	  (1U << 3)
#define PROTO_F_ALL \
	(PROTO_F_PAYLOAD_UNTIL_EOF | PROTO_F_CLOSE_AT_ONCE | PROTO_F_DUPLEX | PROTO_F_REPLY_SHUT)
#define PROTO_HDR_SIZE		  32
/* With PROTO_F_DUPLEX the header goes on: u64 reply rate in bytes per second (0: unpaced). */
#define PROTO_EXT_SIZE		  8
#define PROTO_STATUS_SIZE	  16
#define REPLY_SEED_XOR		  0x5EED5EED5EED5EEDULL
#define BANNER_SEED		  0xBA77E5ULL

#define DRAIN_TIMEOUT_SEC 30
#define HTTP_HEAD_MAX	  (16 * 1024)
#define SINK_CHUNK	  (16 * 1024)
#define SINK_PAUSE_US	  100
/* How long the client's watchdog lets a run overstay its deadline before it aborts. */
#define WATCHDOG_GRACE_NS (5 * NSEC_PER_SEC)
/* A paced sender wakes this often to send what the pace allows by then. */
#define PACE_TICK_NS (100 * NSEC_PER_MSEC)

/* ------------------------------------------------------------------------------------------ */
/* Small helpers */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

static struct timespec ns_to_timespec(uint64_t ns)
{
	return (struct timespec){ .tv_sec = ns / NSEC_PER_SEC, .tv_nsec = ns % NSEC_PER_SEC };
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = ns_to_timespec(ns);

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * --unpace-file: once this file exists, every pace is lifted and the rest goes as fast as it can.
 * A test paces transfers long enough to span its events on a slow machine, then ends them at
 * once. Checked at most once a pace tick, by any thread; once seen, for good.
 */
static const char *unpace_path;

static bool unpaced(void)
{
	static _Atomic bool seen;
	static _Atomic uint64_t checked;
	uint64_t now;

	if (!unpace_path || atomic_load(&seen))
		return atomic_load(&seen);
	now = now_ns();
	if (now - atomic_load(&checked) < PACE_TICK_NS)
		return false;
	atomic_store(&checked, now);
	if (access(unpace_path, F_OK) == 0)
		atomic_store(&seen, true);
	return atomic_load(&seen);
}

/*
 * How many of len bytes a pace of rate bytes per second allows after elapsed ns (0: all). It
 * grows a tick at a time: were it to grow with every nanosecond, each end would wake on the
 * other's few bytes and send its own few, a ping-pong of tiny writes that ate the CPU.
 */
static uint64_t pace_allowed(uint64_t rate, uint64_t len, uint64_t elapsed)
{
	if (!rate || unpaced())
		return len;
	elapsed -= elapsed % PACE_TICK_NS;
	return (uint64_t)MIN((unsigned __int128)len,
			     (unsigned __int128)rate * elapsed / NSEC_PER_SEC);
}

/* Nanoseconds from elapsed to the pace's next tick. */
static uint64_t pace_next(uint64_t elapsed)
{
	return PACE_TICK_NS - elapsed % PACE_TICK_NS;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

static uint32_t get_le32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

/* A decimal or 0x number with an optional K, M or G suffix (powers of 1024). */
static int parse_size(const char *s, uint64_t *ret)
{
	unsigned long long v;
	unsigned int shift = 0;
	char *end;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	}
	if (shift)
		end++;
	if (*end)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*ret = (uint64_t)v << shift;
	return 0;
}

static uint64_t parse_opt_num(const char *opt, const char *s, uint64_t min, uint64_t max)
{
	uint64_t v;

	if (parse_size(s, &v) < 0 || v < min || v > max) {
		fprintf(stderr,
			"srpeer: invalid value for --%s: '%s' (expected %" PRIu64 "..%" PRIu64
			")\n",
			opt, s, min, max);
		exit(2);
	}
	return v;
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("srpeer: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see srpeer --help)\n", stderr);
	exit(2);
}

/* ------------------------------------------------------------------------------------------ */
/* The pseudo-random stream both ends derive the data from */

/*
 * splitmix64, 8 little-endian bytes per step. The struct keeps the unused bytes of the last step,
 * so a stream can be produced or checked in pieces of any size and stays the same stream.
 */
struct prng {
	uint64_t state;
	uint64_t offset; /* stream offset of the next byte */
	uint8_t tail[8]; /* the last step's bytes; the unused ones are the last ntail */
	unsigned int ntail;
};

static uint64_t splitmix64_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static void prng_init(struct prng *p, uint64_t seed)
{
	*p = (struct prng){ .state = seed };
}

static void prng_fill(struct prng *p, uint8_t *buf, size_t n)
{
	size_t done = 0;

	p->offset += n;
	if (p->ntail) {
		done = MIN(n, (size_t)p->ntail);
		memcpy(buf, p->tail + sizeof(p->tail) - p->ntail, done);
		p->ntail -= done;
	}
	for (; n - done >= 8; done += 8)
		put_le64(buf + done, splitmix64_next(&p->state));
	if (done < n) {
		put_le64(p->tail, splitmix64_next(&p->state));
		memcpy(buf + done, p->tail, n - done);
		p->ntail = sizeof(p->tail) - (n - done);
	}
}

struct mismatch {
	uint64_t offset; /* stream offset of the first byte that differs */
	uint8_t expected, got;
};

/*
 * Check that data continues the stream. On a mismatch the stream has moved past the bad byte,
 * so the caller must stop checking this stream.
 */
static int prng_verify(struct prng *p, const uint8_t *data, size_t n, uint8_t *scratch,
		       struct mismatch *m)
{
	while (n > 0) {
		size_t k = MIN(n, (size_t)VERIFY_CHUNK), i = 0;
		uint64_t base = p->offset;

		prng_fill(p, scratch, k);
		if (memcmp(scratch, data, k) != 0) {
			while (scratch[i] == data[i])
				i++;
			*m = (struct mismatch){ base + i, scratch[i], data[i] };
			return -EBADMSG;
		}
		data += k;
		n -= k;
	}
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Addresses and sockets */

struct sr_addr {
	union {
		struct sockaddr sa;
		struct sockaddr_un un;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
		struct sockaddr_storage ss;
	};
	socklen_t len;
	bool fs_path; /* AF_UNIX with a file system path in un.sun_path */
};

static int parse_port(const char *s, uint16_t *port)
{
	uint64_t v;

	if (!*s || parse_size(s, &v) < 0 || v > 65535 || strpbrk(s, "kKmMgGxX"))
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

static int addr_parse_unix(const char *s, bool abstract, struct sr_addr *a)
{
	size_t len = strlen(s);

	/*
	 * Abstract names have a leading NUL instead of a trailing one: both take one byte, and the
	 * kernel takes an abstract name's length from the address length.
	 */
	if (!len || len + 1 > sizeof(a->un.sun_path))
		return -ENAMETOOLONG;
	a->un.sun_family = AF_UNIX;
	memcpy(a->un.sun_path + abstract, s, len);
	a->len = offsetof(struct sockaddr_un, sun_path) + len + 1;
	a->fs_path = !abstract;
	return 0;
}

/*
 * ADDR: /path or ./path or unix:path (AF_UNIX), @name (abstract AF_UNIX), host:port (IPv4
 * literal or localhost), [v6]:port. With unix_only, anything else is a path too.
 */
static int addr_parse(const char *s, bool unix_only, struct sr_addr *a)
{
	char host[INET6_ADDRSTRLEN];
	const char *colon, *port;
	size_t hlen;

	memset(a, 0, sizeof(*a));
	if (!strncmp(s, "unix:", 5))
		return addr_parse_unix(s + 5, false, a);
	if (s[0] == '@')
		return addr_parse_unix(s + 1, true, a);
	if (s[0] == '/' || s[0] == '.' || unix_only)
		return addr_parse_unix(s, false, a);

	if (s[0] == '[') {
		colon = strstr(s, "]:");
		if (!colon)
			return -EINVAL;
		hlen = colon - (s + 1);
		if (hlen >= sizeof(host))
			return -EINVAL;
		memcpy(host, s + 1, hlen);
		host[hlen] = 0;
		a->in6.sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, host, &a->in6.sin6_addr) != 1 ||
		    parse_port(colon + 2, &a->in6.sin6_port) < 0)
			return -EINVAL;
		a->in6.sin6_port = htons(a->in6.sin6_port);
		a->len = sizeof(a->in6);
		return 0;
	}

	colon = strrchr(s, ':');
	if (!colon || colon == s)
		return -EINVAL;
	port = colon + 1;
	hlen = colon - s;
	if (hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hlen);
	host[hlen] = 0;
	if (!strcmp(host, "localhost"))
		strcpy(host, "127.0.0.1");
	a->in.sin_family = AF_INET;
	if (inet_pton(AF_INET, host, &a->in.sin_addr) != 1 || parse_port(port, &a->in.sin_port) < 0)
		return -EINVAL;
	a->in.sin_port = htons(a->in.sin_port);
	a->len = sizeof(a->in);
	return 0;
}

/* Format a bound address in the ADDR syntax, e.g. to tell tests which port "host:0" got. */
static void addr_format(const struct sockaddr_storage *ss, socklen_t len, char *buf, size_t size)
{
	const struct sockaddr_un *un = (const void *)ss;
	const struct sockaddr_in *in = (const void *)ss;
	const struct sockaddr_in6 *in6 = (const void *)ss;
	char host[INET6_ADDRSTRLEN];
	size_t nlen;

	switch (ss->ss_family) {
	case AF_INET:
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(buf, size, "%s:%u", host, ntohs(in->sin_port));
		break;
	case AF_INET6:
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(buf, size, "[%s]:%u", host, ntohs(in6->sin6_port));
		break;
	case AF_UNIX:
		nlen = len - offsetof(struct sockaddr_un, sun_path);
		if (nlen > 0 && un->sun_path[0] == 0)
			snprintf(buf, size, "@%.*s", (int)(nlen - 1), un->sun_path + 1);
		else
			snprintf(buf, size, "%.*s", (int)strnlen(un->sun_path, nlen), un->sun_path);
		break;
	default:
		snprintf(buf, size, "?");
	}
}

/* Remove a socket an earlier run left behind, but never a file that is not a socket. */
static int unlink_stale_socket(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

static int sock_bind(const struct sr_addr *a, int type)
{
	int fd, one = 1, r;

	fd = socket(a->sa.sa_family, type | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (a->sa.sa_family != AF_UNIX)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (a->fs_path) {
		r = unlink_stale_socket(a->un.sun_path);
		if (r < 0)
			goto fail;
	}
	if (bind(fd, &a->sa, a->len) < 0)
		goto fail_errno;
	/* The proxy under test may run as another user (DynamicUser=, User=). */
	if (a->fs_path && chmod(a->un.sun_path, 0666) < 0)
		goto fail_errno;
	if (type == SOCK_STREAM && listen(fd, LISTEN_BACKLOG) < 0)
		goto fail_errno;
	return fd;

fail_errno:
	r = -errno;
fail:
	close(fd);
	return r;
}

static void sock_set_timeouts(int fd, uint64_t ns)
{
	struct timeval tv = { .tv_sec = ns / NSEC_PER_SEC,
			      .tv_usec = (ns % NSEC_PER_SEC) / NSEC_PER_USEC };

	/* All zero would mean "no timeout", the opposite of an expired one. */
	if (!tv.tv_sec && !tv.tv_usec)
		tv.tv_usec = 1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* Small writes (headers, 1-byte round trips) must not wait for Nagle and delayed ACKs. */
static void sock_nodelay(int fd, int family)
{
	int one = 1;

	if (family == AF_INET || family == AF_INET6)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void proto_hdr_pack(uint8_t *hdr, uint32_t flags, uint64_t seed, uint64_t payload,
			   uint64_t reply)
{
	put_le32(hdr, PROTO_MAGIC);
	put_le32(hdr + 4, flags);
	put_le64(hdr + 8, seed);
	put_le64(hdr + 16, payload);
	put_le64(hdr + 24, reply);
}

/* ------------------------------------------------------------------------------------------ */
/* Client */

struct conn;

struct test_desc {
	const char *name;
	int (*run)(struct conn *c);
};

static struct client_cfg {
	struct sr_addr addr;
	const char *addr_text;
	const struct test_desc *test;
	unsigned int conns, parallel, rounds, timeout_sec;
	uint64_t size, banner_size, seed;
	uint64_t duration_ms; /* duplex: spread each connection's traffic over this; 0: unpaced */
	bool no_backend_shut; /* duplex: no connection of kinds 4 and 5 (the backend half-closes) */
	long eof_within_ms;   /* -1: not asked for */
	bool barrier, quiet, corrupt;
	uint64_t corrupt_at; /* conn 0 flips the low bit of this sent stream byte (selftest) */
	const char *hold_path; /* --hold: created at the barrier, held there until removed */
	size_t bufsz;
} cfg = {
	.conns = 1,
	.parallel = 1,
	.rounds = 1,
	.timeout_sec = 60,
	.size = 64 * 1024,
	.banner_size = 4096,
	.seed = 1,
	.eof_within_ms = -1,
};

/* Why a connection failed, for the totals: a proxy that resets differs from one that loses. */
enum fail_kind { FAIL_OTHER, FAIL_RESET, FAIL_EOF, FAIL_DATA, FAIL_TIMEOUT, FAIL_KINDS };

static const char *const fail_kind_names[FAIL_KINDS] = {
	[FAIL_OTHER] = "other", [FAIL_RESET] = "reset",	    [FAIL_EOF] = "early EOF",
	[FAIL_DATA] = "data",	[FAIL_TIMEOUT] = "timeout",
};

static struct client_run {
	uint64_t start_ns, deadline_ns;
	atomic_uint_fast64_t sent, received;
	atomic_uint failed, finished;
	atomic_uint failed_by[FAIL_KINDS];
	pthread_mutex_t lock; /* protects arrived and released */
	pthread_cond_t cond;  /* CLOCK_MONOTONIC */
	unsigned int arrived;
	bool released;
} run;

struct worker {
	pthread_t thread;
	unsigned int first; /* runs connections first, first + parallel, ... */
	uint8_t *txbuf, *rxbuf, *scratch;
};

struct conn {
	struct worker *w;
	unsigned int idx;
	int fd;
	uint64_t seed;
	unsigned int round; /* 1-based, for messages; 0 outside of rounds */
	uint64_t sent, received;
	bool failed, arrived;
	enum fail_kind kind; /* of the first failure */
};

/* One expected piece of the incoming byte stream. */
struct rx_seg {
	struct prng *prng;
	uint64_t len;
	const char *what;
	bool banner; /* explain a mismatch in terms of the banner */
};

static int conn_failv(struct conn *c, enum fail_kind kind, const char *fmt, va_list ap)
{
	char msg[512], where[32] = "";

	/* The first failure explains the connection; what follows is usually its consequence. */
	if (c->failed)
		return -1;
	c->failed = true;
	c->kind = kind;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (c->round)
		snprintf(where, sizeof(where), "round %u/%u: ", c->round, cfg.rounds);
	fprintf(stderr, "srpeer: FAIL conn=%u test=%s: %s%s\n", c->idx, cfg.test->name, where, msg);
	return -1;
}

static int conn_fail(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int conn_fail(struct conn *c, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = conn_failv(c, FAIL_OTHER, fmt, ap);
	va_end(ap);
	return r;
}

/* conn_fail() with the kind of failure, for the totals. */
static int conn_failk(struct conn *c, enum fail_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int conn_failk(struct conn *c, enum fail_kind kind, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = conn_failv(c, kind, fmt, ap);
	va_end(ap);
	return r;
}

/* The kind of a failed socket call or wait (negative errno, -ETIME for our timeout). */
static enum fail_kind fail_kind_of(int err)
{
	switch (err) {
	case -ECONNRESET:
	case -EPIPE:
		return FAIL_RESET;
	case -ETIME:
		return FAIL_TIMEOUT;
	default:
		return FAIL_OTHER;
	}
}

static const char *err_text(int err, char *buf, size_t size)
{
	if (err == -ETIME)
		snprintf(buf, size, "timed out (--timeout %u s)", cfg.timeout_sec);
	else
		snprintf(buf, size, "%s", strerror(-err));
	return buf;
}

/* Nanoseconds left until the run's deadline, at most one per-operation timeout. */
static uint64_t conn_time_left(void)
{
	uint64_t now = now_ns();

	if (now >= run.deadline_ns)
		return 0;
	return MIN(run.deadline_ns - now, cfg.timeout_sec * NSEC_PER_SEC);
}

/*
 * Wait until the socket is ready. Data moves with MSG_DONTWAIT and waits here, so that no call
 * can block past the deadline: SO_RCVTIMEO/SO_SNDTIMEO are only the backstop.
 */
static int conn_wait(struct conn *c, short events, uint64_t max_ns)
{
	struct pollfd pfd = { .fd = c->fd, .events = events };
	uint64_t until = now_ns() + MIN(conn_time_left(), max_ns);
	int r;

	for (;;) {
		uint64_t now = now_ns();

		if (now >= until)
			return -ETIME;
		r = poll(&pfd, 1, (int)((until - now + NSEC_PER_MSEC - 1) / NSEC_PER_MSEC));
		if (r > 0)
			return 0; /* POLLERR and POLLHUP too: the next call reports them */
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

static int conn_open(struct conn *c)
{
	char e[96];
	uint64_t left = conn_time_left();

	if (!left)
		return conn_fail(c, "connect to %s: %s", cfg.addr_text,
				 err_text(-ETIME, e, sizeof(e)));
	c->fd = socket(cfg.addr.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return conn_fail(c, "socket: %s", strerror(errno));
	/* Bounds the blocking connect(): an AF_UNIX connect waits while the backlog is full. */
	sock_set_timeouts(c->fd, left);
	sock_nodelay(c->fd, cfg.addr.sa.sa_family);
	if (connect(c->fd, &cfg.addr.sa, cfg.addr.len) < 0) {
		if (errno == EINPROGRESS || errno == EAGAIN)
			return conn_fail(c, "connect to %s: %s", cfg.addr_text,
					 err_text(-ETIME, e, sizeof(e)));
		return conn_fail(c, "connect to %s: %s", cfg.addr_text, strerror(errno));
	}
	return 0;
}

/* Produce the next n bytes c sends from stream p, with the selftest's corruption if asked. */
static void conn_gen_tx(struct conn *c, struct prng *p, uint8_t *buf, size_t n)
{
	uint64_t base = p->offset;

	prng_fill(p, buf, n);
	if (cfg.corrupt && c->idx == 0 && cfg.corrupt_at >= base && cfg.corrupt_at - base < n)
		buf[cfg.corrupt_at - base] ^= 0x01;
}

/* Send bytes that are not part of a stream: request headers. */
static int conn_send_raw(struct conn *c, const void *buf, size_t len, const char *what)
{
	size_t done = 0;
	char e[96];
	int r;

	while (done < len) {
		ssize_t n = send(c->fd, (const uint8_t *)buf + done, len - done,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n > 0) {
			done += n;
			c->sent += n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return conn_failk(c, fail_kind_of(-errno),
					  "send %s: %s after %zu of %zu bytes", what,
					  strerror(errno), done, len);
		r = conn_wait(c, POLLOUT, UINT64_MAX);
		if (r < 0)
			return conn_failk(c, fail_kind_of(r), "send %s: %s after %zu of %zu bytes",
					  what, err_text(r, e, sizeof(e)), done, len);
	}
	return 0;
}

/* Receive exactly len bytes that are not part of a stream: the proto status. */
static int conn_recv_raw(struct conn *c, void *buf, size_t len, const char *what)
{
	size_t done = 0;
	char e[96];
	int r;

	while (done < len) {
		ssize_t n = recv(c->fd, (uint8_t *)buf + done, len - done, MSG_DONTWAIT);

		if (n > 0) {
			done += n;
			c->received += n;
			continue;
		}
		if (n == 0)
			return conn_failk(c, FAIL_EOF, "EOF after %zu of %zu bytes of %s", done,
					  len, what);
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return conn_failk(c, fail_kind_of(-errno),
					  "receiving %s: %s after %zu of %zu bytes", what,
					  strerror(errno), done, len);
		r = conn_wait(c, POLLIN, UINT64_MAX);
		if (r < 0)
			return conn_failk(c, fail_kind_of(r),
					  "receiving %s: %s after %zu of %zu bytes", what,
					  err_text(r, e, sizeof(e)), done, len);
	}
	return 0;
}

/* Whether data (avail bytes) continues stream p, judged by up to its first 16 bytes. */
static bool looks_like(const struct prng *p, const uint8_t *data, size_t avail)
{
	struct prng copy = *p;
	uint8_t expect[16];
	size_t k = MIN(avail, sizeof(expect));

	prng_fill(&copy, expect, k);
	return k >= 4 && !memcmp(expect, data, k);
}

/* A mismatch around the banner: say so plainly when it is not first, not whole, or too long. */
static int conn_banner_mismatch(struct conn *c, const struct rx_seg *s, const struct rx_seg *banner,
				const uint8_t *data, size_t avail, const struct mismatch *m)
{
	struct prng echo;

	prng_init(&echo, c->seed);
	if (s == banner && looks_like(&echo, data, avail))
		return conn_failk(c, FAIL_DATA,
				  "banner not first/whole: echoed payload arrived after %" PRIu64
				  " of %" PRIu64 " banner bytes",
				  m->offset, s->len);
	if (s != banner && !m->offset && looks_like(banner->prng, data, avail))
		return conn_failk(c, FAIL_DATA,
				  "banner longer than the %" PRIu64 " bytes expected "
				  "(--banner-size?)",
				  banner->len);
	return conn_failk(c, FAIL_DATA,
			  "%s mismatch (stream offset %" PRIu64 ", expected 0x%02x, got 0x%02x)",
			  s->what, m->offset, m->expected, m->got);
}

static int conn_shutdown(struct conn *c)
{
	if (shutdown(c->fd, SHUT_WR) < 0)
		return conn_failk(c, fail_kind_of(-errno), "shutdown(SHUT_WR): %s",
				  strerror(errno));
	return 0;
}

/* Where a conn_xfer() stands, for its steps and its messages. */
struct xfer {
	struct prng *tx;
	uint64_t tx_len, tx_gen, tx_done;
	size_t pend_off, pend_len; /* generated, not yet sent, in txbuf */
	struct rx_seg *seg;
	unsigned int nseg, si; /* si: the segment being received */
	uint64_t seg_done;
	uint64_t rate, t0;  /* sending paced at rate bytes per second from t0; 0: unpaced */
	bool shut_after_tx; /* shutdown(SHUT_WR) as soon as the last byte is sent */
	bool shut;
};

/* How many bytes of tx the pace allows to have been generated by now. */
static uint64_t xfer_allowed(const struct xfer *x)
{
	return pace_allowed(x->rate, x->tx_len, x->rate ? now_ns() - x->t0 : 0);
}

static void xfer_skip_empty(struct xfer *x)
{
	while (x->si < x->nseg && !x->seg[x->si].len)
		x->si++;
}

/* Send what the socket takes now. Returns 1 on progress, 0 if it would block, -1 on failure. */
static int xfer_send(struct conn *c, struct xfer *x)
{
	ssize_t n;

	if (!x->pend_len) {
		uint64_t allowed = xfer_allowed(x);

		if (allowed <= x->tx_gen)
			return 0; /* paced: not yet */
		x->pend_len = MIN(cfg.bufsz, allowed - x->tx_gen);
		x->pend_off = 0;
		conn_gen_tx(c, x->tx, c->w->txbuf, x->pend_len);
		x->tx_gen += x->pend_len;
	}
	n = send(c->fd, c->w->txbuf + x->pend_off, x->pend_len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n < 0 && x->si == x->nseg)
		return conn_failk(c, fail_kind_of(-errno),
				  "send: %s after %" PRIu64 " of %" PRIu64
				  " bytes (all expected bytes received)",
				  strerror(errno), x->tx_done, x->tx_len);
	if (n < 0)
		return conn_failk(c, fail_kind_of(-errno),
				  "send: %s after %" PRIu64 " of %" PRIu64
				  " bytes (received %" PRIu64 " of %" PRIu64 " bytes of %s)",
				  strerror(errno), x->tx_done, x->tx_len, x->seg_done,
				  x->seg[x->si].len, x->seg[x->si].what);
	x->pend_off += n;
	x->pend_len -= n;
	x->tx_done += n;
	c->sent += n;
	return 1;
}

/* Receive and check what has arrived, never past the segment: the rest belongs to the next step. */
static int xfer_recv(struct conn *c, struct xfer *x)
{
	struct rx_seg *s = &x->seg[x->si];
	uint64_t base = s->prng->offset;
	uint8_t *buf = c->w->rxbuf;
	struct mismatch m;
	size_t at;
	ssize_t n;

	n = recv(c->fd, buf, MIN(cfg.bufsz, s->len - x->seg_done), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n <= 0)
		return conn_failk(c, n ? fail_kind_of(-errno) : FAIL_EOF,
				  "%s%s after %" PRIu64 " of %" PRIu64 " bytes of %s (sent %" PRIu64
				  " of %" PRIu64 ")",
				  n ? "recv: " : "EOF", n ? strerror(errno) : "", x->seg_done,
				  s->len, s->what, x->tx_done, x->tx_len);
	if (prng_verify(s->prng, buf, n, c->w->scratch, &m) < 0) {
		at = m.offset - base;
		if (x->seg[0].banner)
			return conn_banner_mismatch(c, s, &x->seg[0], buf + at, n - at, &m);
		return conn_failk(c, FAIL_DATA,
				  "%s data mismatch (stream offset %" PRIu64
				  ", expected 0x%02x, got 0x%02x)",
				  s->what, m.offset, m.expected, m.got);
	}
	c->received += n;
	x->seg_done += n;
	if (x->seg_done == s->len) {
		x->si++;
		x->seg_done = 0;
		xfer_skip_empty(x);
	}
	return 1;
}

/* A half-close as soon as everything is sent, if the xfer asks for one. */
static int xfer_shut(struct conn *c, struct xfer *x)
{
	if (!x->shut_after_tx || x->shut || x->tx_done < x->tx_len)
		return 0;
	x->shut = true;
	return conn_shutdown(c);
}

/*
 * Send tx_len bytes of tx while receiving and checking the segments, both at once: an echo of
 * more than the socket buffers hold would deadlock if we sent everything before reading. With
 * a rate, the sending is paced (from now); with shut, the client half-closes right after its
 * last byte, while the segments may still be arriving.
 */
static int conn_xfer_paced(struct conn *c, struct prng *tx, uint64_t tx_len, struct rx_seg *seg,
			   unsigned int nseg, uint64_t rate, bool shut)
{
	struct xfer x = { .tx = tx,
			  .tx_len = tx_len,
			  .seg = seg,
			  .nseg = nseg,
			  .rate = rate,
			  .t0 = now_ns(),
			  .shut_after_tx = shut };
	uint64_t wait;
	short events;
	int r, progress;
	char e[96];

	xfer_skip_empty(&x);
	while (x.tx_done < tx_len || x.si < nseg) {
		if (xfer_shut(c, &x) < 0)
			return -1;
		progress = 0;
		if (x.tx_done < tx_len) {
			r = xfer_send(c, &x);
			if (r < 0)
				return -1;
			progress |= r;
		}
		if (x.si < nseg) {
			r = xfer_recv(c, &x);
			if (r < 0)
				return -1;
			progress |= r;
		}
		if (progress)
			continue;
		events = x.si < nseg ? POLLIN : 0;
		wait = UINT64_MAX;
		if (x.tx_done < tx_len && (x.pend_len || xfer_allowed(&x) > x.tx_gen))
			events |= POLLOUT;
		else if (x.tx_done < tx_len)
			wait = pace_next(now_ns() - x.t0); /* the pace allows nothing more yet */
		r = conn_wait(c, events, wait);
		if (r == -ETIME && wait != UINT64_MAX && conn_time_left() > 0)
			continue;
		if (r < 0)
			return conn_failk(c, fail_kind_of(r),
					  "%s: sent %" PRIu64 " of %" PRIu64
					  " bytes, received %" PRIu64 " of %" PRIu64 " bytes of %s",
					  err_text(r, e, sizeof(e)), x.tx_done, tx_len, x.seg_done,
					  x.si < nseg ? seg[x.si].len : 0,
					  x.si < nseg ? seg[x.si].what : "-");
	}
	return xfer_shut(c, &x);
}

static int conn_xfer(struct conn *c, struct prng *tx, uint64_t tx_len, struct rx_seg *seg,
		     unsigned int nseg)
{
	return conn_xfer_paced(c, tx, tx_len, seg, nseg, 0, false);
}

static int conn_send_stream(struct conn *c, struct prng *tx, uint64_t len)
{
	return conn_xfer(c, tx, len, NULL, 0);
}

static int conn_recv_stream(struct conn *c, struct prng *rx, uint64_t len, const char *what)
{
	struct rx_seg seg = { .prng = rx, .len = len, .what = what };

	return conn_xfer(c, NULL, 0, &seg, 1);
}

static int conn_expect_eof(struct conn *c, const char *after)
{
	uint8_t buf[64];
	char e[96];
	ssize_t n;
	int r;

	for (;;) {
		n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0)
			return 0;
		if (n > 0)
			return conn_failk(
				c, FAIL_DATA,
				"expected EOF after %s, got %zd more bytes (first 0x%02x)", after,
				n, buf[0]);
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return conn_failk(c, fail_kind_of(-errno), "expected EOF after %s, got %s",
					  after, strerror(errno));
		r = conn_wait(c, POLLIN, UINT64_MAX);
		if (r < 0)
			return conn_failk(c, fail_kind_of(r), "waiting for EOF after %s: %s", after,
					  err_text(r, e, sizeof(e)));
	}
}

static int conn_send_hdr(struct conn *c, uint32_t flags, uint64_t payload, uint64_t reply)
{
	uint8_t hdr[PROTO_HDR_SIZE];

	proto_hdr_pack(hdr, flags, c->seed, payload, reply);
	return conn_send_raw(c, hdr, sizeof(hdr), "request header");
}

static int conn_recv_status(struct conn *c, uint64_t expect_count)
{
	uint8_t st[PROTO_STATUS_SIZE];
	uint64_t v;

	if (conn_recv_raw(c, st, sizeof(st), "status") < 0)
		return -1;
	v = get_le64(st + 8);
	if (!memcmp(st, "OK\0\0", 4) && !get_le32(st + 4)) {
		if (v != expect_count)
			return conn_failk(c, FAIL_DATA,
					  "backend verified %" PRIu64 " payload bytes, %" PRIu64
					  " were sent",
					  v, expect_count);
		return 0;
	}
	if (!memcmp(st, "BAD\0", 4) && !get_le32(st + 4))
		return conn_failk(c, FAIL_DATA,
				  "backend reported payload mismatch (stream offset %" PRIu64 ")",
				  v);
	return conn_failk(c, FAIL_DATA, "malformed status %02x %02x %02x %02x %08x %016" PRIx64,
			  st[0], st[1], st[2], st[3], get_le32(st + 4), v);
}

/*
 * With --hold, the last connection to arrive creates the file and polls for its removal while
 * the others wait on the condition: a test can then act (say, SIGTERM the proxy) at a moment
 * when every connection is open, accepted and has work left, instead of racing the transfer.
 */
static int barrier_hold(void)
{
	int fd = open(cfg.hold_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

	if (fd < 0)
		return -errno;
	close(fd);
	while (access(cfg.hold_path, F_OK) == 0) {
		if (now_ns() >= run.deadline_ns)
			return -ETIMEDOUT;
		usleep(10 * 1000);
	}
	return errno == ENOENT ? 0 : -errno;
}

/*
 * Everyone waits here until all connections are open and through their first round trip, so
 * that "N connections at once" really holds N at once. For rr and banner that is the first
 * round; for the proto tests, the status; for connect-only, the connect (and the EOF); for
 * duplex, the connect, so that every transfer starts and is paced from the release.
 */
static int conn_barrier(struct conn *c)
{
	struct timespec until = ns_to_timespec(run.deadline_ns);
	unsigned int arrived;
	bool released;
	int r;

	if (!cfg.barrier)
		return 0;
	pthread_mutex_lock(&run.lock);
	c->arrived = true;
	if (++run.arrived == cfg.conns) {
		if (cfg.hold_path) {
			pthread_mutex_unlock(&run.lock);
			r = barrier_hold();
			pthread_mutex_lock(&run.lock);
			if (r < 0) {
				pthread_mutex_unlock(&run.lock);
				return conn_fail(c, "--hold %s: %s", cfg.hold_path, strerror(-r));
			}
		}
		run.released = true;
		pthread_cond_broadcast(&run.cond);
	}
	while (!run.released)
		if (pthread_cond_timedwait(&run.cond, &run.lock, &until) == ETIMEDOUT)
			break;
	arrived = run.arrived;
	released = run.released;
	pthread_mutex_unlock(&run.lock);
	if (arrived < cfg.conns)
		return conn_fail(c,
				 "barrier: only %u of %u connections completed their first round "
				 "trip within the deadline",
				 arrived, cfg.conns);
	if (!released)
		return conn_fail(c, "barrier: not released within the deadline");
	return 0;
}

/* A connection that failed early still arrives, so the others need not wait for the deadline. */
static void conn_barrier_leave(struct conn *c)
{
	if (!cfg.barrier || c->arrived)
		return;
	pthread_mutex_lock(&run.lock);
	c->arrived = true;
	/* Nobody is left to hold: a failed run releases at once. */
	if (++run.arrived == cfg.conns) {
		run.released = true;
		pthread_cond_broadcast(&run.cond);
	}
	pthread_mutex_unlock(&run.lock);
}

/* The tests. Each returns 0, or -1 after conn_fail() said why. */

static int test_rr(struct conn *c)
{
	struct prng tx, rx;
	struct rx_seg seg = { .prng = &rx, .len = cfg.size, .what = "echo" };

	prng_init(&tx, c->seed);
	prng_init(&rx, c->seed);
	for (c->round = 1; c->round <= cfg.rounds; c->round++) {
		if (conn_xfer(c, &tx, cfg.size, &seg, 1) < 0)
			return -1;
		if (c->round == 1 && conn_barrier(c) < 0)
			return -1;
	}
	c->round = 0;
	if (conn_shutdown(c) < 0)
		return -1;
	return conn_expect_eof(c, "the last echo");
}

static int test_banner(struct conn *c)
{
	struct prng tx, rx, banner;
	struct rx_seg seg[2] = {
		{ .prng = &banner, .len = cfg.banner_size, .what = "banner", .banner = true },
		{ .prng = &rx, .len = cfg.size, .what = "echo" },
	};

	prng_init(&tx, c->seed);
	prng_init(&rx, c->seed);
	prng_init(&banner, BANNER_SEED);
	/* Send at once, without waiting for the banner: it must still arrive first and whole. */
	c->round = 1;
	if (conn_xfer(c, &tx, cfg.size, seg, 2) < 0 || conn_barrier(c) < 0)
		return -1;
	for (c->round = 2; c->round <= cfg.rounds; c->round++)
		if (conn_xfer(c, &tx, cfg.size, &seg[1], 1) < 0)
			return -1;
	c->round = 0;
	if (conn_shutdown(c) < 0)
		return -1;
	return conn_expect_eof(c, "the last echo");
}

static int test_up(struct conn *c)
{
	struct prng tx;

	prng_init(&tx, c->seed);
	if (conn_send_hdr(c, 0, cfg.size, 0) < 0 || conn_send_stream(c, &tx, cfg.size) < 0 ||
	    conn_shutdown(c) < 0 || conn_recv_status(c, cfg.size) < 0 || conn_barrier(c) < 0)
		return -1;
	return conn_expect_eof(c, "the status");
}

/* The backend half-closes first here; we close only after its EOF arrived. */
static int test_down(struct conn *c)
{
	struct prng rx;

	prng_init(&rx, c->seed ^ REPLY_SEED_XOR);
	if (conn_send_hdr(c, 0, 0, cfg.size) < 0 || conn_recv_status(c, 0) < 0 ||
	    conn_barrier(c) < 0 || conn_recv_stream(c, &rx, cfg.size, "reply") < 0)
		return -1;
	return conn_expect_eof(c, "the reply");
}

static int test_halfclose(struct conn *c)
{
	struct prng tx, rx;

	prng_init(&tx, c->seed);
	prng_init(&rx, c->seed ^ REPLY_SEED_XOR);
	if (conn_send_hdr(c, PROTO_F_PAYLOAD_UNTIL_EOF, 0, cfg.size) < 0 ||
	    conn_send_stream(c, &tx, cfg.size) < 0 || conn_shutdown(c) < 0 ||
	    conn_recv_status(c, cfg.size) < 0 || conn_barrier(c) < 0 ||
	    conn_recv_stream(c, &rx, cfg.size, "reply") < 0)
		return -1;
	return conn_expect_eof(c, "the reply");
}

/* Reply sizes around packet, page and buffer sizes, and one arbitrary one, all in 1..size. */
static uint64_t replyclose_size(const struct conn *c)
{
	uint64_t s = c->seed, r;

	switch (c->idx % 7) {
	case 0:
		r = 1;
		break;
	case 1:
		r = 1460;
		break;
	case 2:
		r = 4096;
		break;
	case 3:
		r = 65536;
		break;
	case 4:
		r = cfg.size / 3;
		break;
	case 5:
		r = cfg.size;
		break;
	default:
		r = 1 + splitmix64_next(&s) % cfg.size;
	}
	return MAX(1, MIN(r, cfg.size));
}

/* The backend writes the reply and closes at once: every byte must still come before the EOF. */
static int test_replyclose(struct conn *c)
{
	uint64_t len = replyclose_size(c);
	struct prng rx;

	prng_init(&rx, c->seed ^ REPLY_SEED_XOR);
	if (conn_send_hdr(c, PROTO_F_CLOSE_AT_ONCE, 0, len) < 0 || conn_recv_status(c, 0) < 0 ||
	    conn_barrier(c) < 0 || conn_recv_stream(c, &rx, len, "reply") < 0)
		return -1;
	return conn_expect_eof(c, "the reply");
}

/*
 * The request and the FIN right behind it, before the proxy has even accepted: whatever it
 * finds queued, it must deliver the bytes and then the EOF.
 */
static int test_sendclose(struct conn *c)
{
	uint8_t *buf = c->w->txbuf;
	size_t first = MIN(cfg.size, cfg.bufsz - PROTO_HDR_SIZE);
	struct prng tx, rx;
	ssize_t n;

	prng_init(&tx, c->seed);
	prng_init(&rx, c->seed ^ REPLY_SEED_XOR);
	proto_hdr_pack(buf, PROTO_F_PAYLOAD_UNTIL_EOF, c->seed, 0, cfg.size);
	conn_gen_tx(c, &tx, buf + PROTO_HDR_SIZE, first);
	/* One blocking send (bounded by SO_SNDTIMEO), not a loop that might wait for the peer. */
	do {
		n = send(c->fd, buf, PROTO_HDR_SIZE + first, MSG_NOSIGNAL);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return conn_fail(c, "send request: %s",
				 errno == EAGAIN ? "timed out" : strerror(errno));
	c->sent += n;
	if ((size_t)n < PROTO_HDR_SIZE + first &&
	    conn_send_raw(c, buf + n, PROTO_HDR_SIZE + first - n, "request") < 0)
		return -1;
	if (conn_send_stream(c, &tx, cfg.size - first) < 0 || conn_shutdown(c) < 0 ||
	    conn_recv_status(c, cfg.size) < 0 || conn_barrier(c) < 0 ||
	    conn_recv_stream(c, &rx, cfg.size, "reply") < 0)
		return -1;
	return conn_expect_eof(c, "the reply");
}

/*
 * Upload and download at once, each paced over --duration (from the barrier on, if any), with
 * the half-closes a proxy must carry while the other direction is still moving. Connection i,
 * by i % 6:
 *   0, 1  --size each way over the whole duration; the client half-closes after its upload,
 *         the backend then sends the status and half-closes
 *   2, 3  the upload is 1/8 (2) or 1/2 (3) of --size: the client half-closes after it, at that
 *         point of the duration, while the download goes on to the end; then the status
 *   4, 5  the download is 1/8 or 1/2 of --size, and the backend half-closes after it while the
 *         upload goes on to the end. No status: the backend checks the upload and reports a
 *         mismatch, an early EOF or a reset in its log ("N errors")
 */
static void duplex_plan(const struct conn *c, uint64_t *ret_up, uint64_t *ret_down,
			uint32_t *ret_flags)
{
	static const unsigned int div[6] = { 1, 1, 8, 2, 8, 2 };
	unsigned int v = c->idx % (cfg.no_backend_shut ? 4 : 6);

	*ret_up = v == 2 || v == 3 ? cfg.size / div[v] : cfg.size;
	*ret_down = v >= 4 ? cfg.size / div[v] : cfg.size;
	*ret_flags = PROTO_F_DUPLEX | (v >= 4 ? PROTO_F_REPLY_SHUT : 0);
}

static int test_duplex(struct conn *c)
{
	uint8_t hdr[PROTO_HDR_SIZE + PROTO_EXT_SIZE];
	uint64_t up, down, rate = 0;
	struct prng tx, rx;
	struct rx_seg seg = { .prng = &rx, .what = "reply" };
	uint32_t flags;

	duplex_plan(c, &up, &down, &flags);
	seg.len = down;
	/* Both ends send at the same rate: --size bytes over --duration. */
	if (cfg.duration_ms)
		rate = MAX(1, (uint64_t)MIN((unsigned __int128)UINT64_MAX,
					    (unsigned __int128)cfg.size * 1000 / cfg.duration_ms));
	prng_init(&tx, c->seed);
	prng_init(&rx, c->seed ^ REPLY_SEED_XOR);
	proto_hdr_pack(hdr, flags, c->seed, up, down);
	put_le64(hdr + PROTO_HDR_SIZE, rate);
	/* The request only after the barrier: the backend paces its reply from the request on. */
	if (conn_barrier(c) < 0 || conn_send_raw(c, hdr, sizeof(hdr), "request header") < 0 ||
	    conn_xfer_paced(c, &tx, up, &seg, 1, rate, true) < 0)
		return -1;
	if (flags & PROTO_F_REPLY_SHUT)
		return conn_expect_eof(c, "the reply");
	if (conn_recv_status(c, up) < 0)
		return -1;
	return conn_expect_eof(c, "the status");
}

/* With --expect-eof-within: the far side must close (or reset) soon, without sending a byte. */
static int test_connect_only(struct conn *c)
{
	uint64_t start = now_ns(), limit = (uint64_t)cfg.eof_within_ms * NSEC_PER_MSEC;
	uint8_t buf[64];
	char e[96];
	ssize_t n;
	int r;

	while (cfg.eof_within_ms >= 0) {
		n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			break;
		if (n > 0)
			return conn_fail(c, "expected EOF, got %zd bytes (first 0x%02x)", n,
					 buf[0]);
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return conn_fail(c, "expected EOF or reset, got %s", strerror(errno));
		if (now_ns() - start >= limit)
			return conn_fail(c, "still open after %ld ms, expected EOF or reset",
					 cfg.eof_within_ms);
		r = conn_wait(c, POLLIN, limit - (now_ns() - start));
		if (r == -ETIME && now_ns() - start >= limit)
			continue; /* one last look, then the failure above */
		if (r < 0)
			return conn_fail(c, "waiting for EOF: %s", err_text(r, e, sizeof(e)));
	}
	return conn_barrier(c);
}

static const struct test_desc tests[] = {
	{ "rr", test_rr },
	{ "up", test_up },
	{ "down", test_down },
	{ "halfclose", test_halfclose },
	{ "replyclose", test_replyclose },
	{ "sendclose", test_sendclose },
	{ "duplex", test_duplex },
	{ "banner", test_banner },
	{ "connect-only", test_connect_only },
};

static void *client_worker(void *arg)
{
	struct worker *w = arg;

	for (unsigned int i = w->first; i < cfg.conns; i += cfg.parallel) {
		struct conn c = { .w = w, .idx = i, .fd = -1, .seed = cfg.seed + i };

		if (conn_open(&c) == 0)
			cfg.test->run(&c);
		conn_barrier_leave(&c);
		if (c.fd >= 0)
			close(c.fd);
		atomic_fetch_add(&run.sent, c.sent);
		atomic_fetch_add(&run.received, c.received);
		if (c.failed) {
			atomic_fetch_add(&run.failed, 1);
			atomic_fetch_add(&run.failed_by[c.kind], 1);
		}
		atomic_fetch_add(&run.finished, 1);
	}
	return NULL;
}

/* The hard bound: nothing should block past the deadline, but if something does, we go. */
static void *client_watchdog(void *arg)
{
	struct timespec until = ns_to_timespec(run.deadline_ns + WATCHDOG_GRACE_NS);

	(void)arg;
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
		;
	fprintf(stderr,
		"srpeer: FAIL test=%s: still running %llu s past the %u s deadline with %u of %u "
		"connections finished; aborting\n",
		cfg.test->name, WATCHDOG_GRACE_NS / NSEC_PER_SEC, cfg.timeout_sec,
		atomic_load(&run.finished), cfg.conns);
	_exit(1);
}

static int thread_start(pthread_t *t, void *(*fn)(void *), void *arg, bool detach)
{
	pthread_attr_t attr;
	int r;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, THREAD_STACK_SIZE);
	if (detach)
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = pthread_create(t, &attr, fn, arg);
	pthread_attr_destroy(&attr);
	return -r;
}

static void *xmalloc(size_t size)
{
	void *p = malloc(size);

	if (!p) {
		fprintf(stderr, "srpeer: out of memory\n");
		exit(1);
	}
	return p;
}

static int cmd_client(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "test", required_argument, NULL, 't' },
		{ "conns", required_argument, NULL, 'n' },
		{ "parallel", required_argument, NULL, 'p' },
		{ "size", required_argument, NULL, 's' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "seed", required_argument, NULL, 'S' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "barrier", no_argument, NULL, 'b' },
		{ "expect-eof-within", required_argument, NULL, 'e' },
		{ "banner-size", required_argument, NULL, 'B' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "corrupt-at", required_argument, NULL, 'X' },
		{ "hold", required_argument, NULL, 'H' },
		{ "duration", required_argument, NULL, 'd' },
		{ "no-backend-halfclose", no_argument, NULL, 'N' },
		{ "unpace-file", required_argument, NULL, 'U' },
		{}
	};
	const char *connect_arg = NULL;
	bool parallel_set = false;
	pthread_condattr_t cattr;
	struct worker *workers;
	pthread_t watchdog;
	uint64_t elapsed;
	int opt, r;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			connect_arg = optarg;
			break;
		case 't':
			for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
				if (!strcmp(optarg, tests[i].name))
					cfg.test = &tests[i];
			if (!cfg.test)
				usage_error("unknown test '%s'", optarg);
			break;
		case 'n':
			cfg.conns = parse_opt_num("conns", optarg, 1, 1000000);
			break;
		case 'p':
			cfg.parallel = parse_opt_num("parallel", optarg, 1, 100000);
			parallel_set = true;
			break;
		case 's':
			cfg.size = parse_opt_num("size", optarg, 0, UINT64_MAX / 2);
			break;
		case 'r':
			cfg.rounds = parse_opt_num("rounds", optarg, 1, 1000000000);
			break;
		case 'S':
			cfg.seed = parse_opt_num("seed", optarg, 0, UINT64_MAX);
			break;
		case 'T':
			cfg.timeout_sec = parse_opt_num("timeout", optarg, 1, 86400);
			break;
		case 'b':
			cfg.barrier = true;
			break;
		case 'e':
			cfg.eof_within_ms = parse_opt_num("expect-eof-within", optarg, 0, 86400000);
			break;
		case 'B':
			cfg.banner_size = parse_opt_num("banner-size", optarg, 0, UINT64_MAX / 2);
			break;
		case 'q':
			cfg.quiet = true;
			break;
		case 'X':
			cfg.corrupt_at = parse_opt_num("corrupt-at", optarg, 0, UINT64_MAX);
			cfg.corrupt = true;
			break;
		case 'H':
			cfg.hold_path = optarg;
			break;
		case 'd':
			cfg.duration_ms = parse_opt_num("duration", optarg, 0, 86400000);
			break;
		case 'N':
			cfg.no_backend_shut = true;
			break;
		case 'U':
			unpace_path = optarg;
			break;
		default:
			usage_error("client: bad option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		usage_error("client: unexpected argument '%s'", argv[optind]);
	if (!connect_arg || !cfg.test)
		usage_error("client: --connect and --test are required");
	if (addr_parse(connect_arg, false, &cfg.addr) < 0)
		usage_error("client: bad address '%s'", connect_arg);
	cfg.addr_text = connect_arg;
	if (cfg.eof_within_ms >= 0 && cfg.test->run != test_connect_only)
		usage_error("client: --expect-eof-within needs --test connect-only");
	if (cfg.test->run == test_replyclose && !cfg.size)
		usage_error("client: replyclose needs --size of at least 1");
	if (cfg.barrier && !parallel_set)
		cfg.parallel = cfg.conns;
	if (cfg.barrier && cfg.parallel != cfg.conns)
		usage_error("client: --barrier needs --parallel equal to --conns");
	if (cfg.hold_path && !cfg.barrier)
		usage_error("client: --hold needs --barrier");
	if (cfg.duration_ms && cfg.test->run != test_duplex)
		usage_error("client: --duration needs --test duplex");
	cfg.parallel = MIN(cfg.parallel, cfg.conns);
	/* Big buffers for big transfers, small ones when a thousand threads move a byte each. */
	cfg.bufsz = MAX(cfg.size, cfg.banner_size) + PROTO_HDR_SIZE;
	cfg.bufsz = MIN(MAX(cfg.bufsz, (size_t)4096), (size_t)IO_BUF_SIZE);

	signal(SIGPIPE, SIG_IGN);
	pthread_mutex_init(&run.lock, NULL);
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&run.cond, &cattr);
	run.start_ns = now_ns();
	run.deadline_ns = run.start_ns + cfg.timeout_sec * NSEC_PER_SEC;
	r = thread_start(&watchdog, client_watchdog, NULL, true);
	if (r < 0) {
		fprintf(stderr, "srpeer: cannot start the watchdog: %s\n", strerror(-r));
		return 1;
	}

	workers = calloc(cfg.parallel, sizeof(*workers));
	if (!workers) {
		fprintf(stderr, "srpeer: out of memory\n");
		return 1;
	}
	for (unsigned int t = 0; t < cfg.parallel; t++) {
		struct worker *w = &workers[t];

		w->first = t;
		w->txbuf = xmalloc(cfg.bufsz);
		w->rxbuf = xmalloc(cfg.bufsz);
		w->scratch = xmalloc(VERIFY_CHUNK);
		r = thread_start(&w->thread, client_worker, w, false);
		if (r < 0) {
			/* Threads already running may sit in the barrier: do not wait for them. */
			fprintf(stderr, "srpeer: cannot start thread %u of %u: %s\n", t + 1,
				cfg.parallel, strerror(-r));
			_exit(1);
		}
	}
	for (unsigned int t = 0; t < cfg.parallel; t++) {
		pthread_join(workers[t].thread, NULL);
		free(workers[t].txbuf);
		free(workers[t].rxbuf);
		free(workers[t].scratch);
	}
	free(workers);
	elapsed = now_ns() - run.start_ns;

	if (atomic_load(&run.failed)) {
		fprintf(stderr, "srpeer: %u of %u connections failed\n", atomic_load(&run.failed),
			cfg.conns);
		fprintf(stderr, "srpeer: failed by kind:");
		for (int k = 0; k < FAIL_KINDS; k++)
			fprintf(stderr, "%s %s %u", k ? "," : "", fail_kind_names[k],
				atomic_load(&run.failed_by[k]));
		fprintf(stderr, "\n");
		return 1;
	}
	if (!cfg.quiet)
		printf("srpeer: ok test=%s conns=%u sent=%" PRIu64 " received=%" PRIu64
		       " seconds=%.3f\n",
		       cfg.test->name, cfg.conns, (uint64_t)atomic_load(&run.sent),
		       (uint64_t)atomic_load(&run.received), (double)elapsed / NSEC_PER_SEC);
	return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Backend */

enum be_mode { MODE_ECHO, MODE_BANNER, MODE_PROTO, MODE_HTTP, MODE_SINK_SLOW };

static const char *const mode_names[] = {
	[MODE_ECHO] = "echo",	[MODE_BANNER] = "banner",	[MODE_PROTO] = "proto",
	[MODE_HTTP] = "http",	[MODE_SINK_SLOW] = "sink-slow",
};

static struct backend_cfg {
	struct sr_addr addr;
	enum be_mode mode;
	uint64_t banner_size, banner_delay_us;
	const char *ready_file;
} bcfg = {
	.mode = MODE_ECHO,
	.banner_size = 4096,
};

static atomic_ulong be_nconns, be_nerrors, be_nrequests;
static atomic_bool be_bound; /* the socket path is ours to remove */

struct bconn {
	unsigned long id;
	int fd;
	uint8_t *buf;	  /* IO_BUF_SIZE */
	uint8_t *scratch; /* VERIFY_CHUNK */
};

static void be_report(struct bconn *b, bool error, const char *fmt, va_list ap)
{
	char msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	fprintf(stderr, "srpeer backend: conn %lu: %s%s\n", b->id, error ? "" : "note: ", msg);
	if (error)
		atomic_fetch_add(&be_nerrors, 1);
}

/* A protocol error: printed and counted. */
static void be_err(struct bconn *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void be_err(struct bconn *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	be_report(b, true, fmt, ap);
	va_end(ap);
}

/* Worth a line, but not an error: e.g. a probe that connects and closes without a byte. */
static void be_note(struct bconn *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void be_note(struct bconn *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	be_report(b, false, fmt, ap);
	va_end(ap);
}

static ssize_t be_recv(int fd, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = recv(fd, buf, len, 0);

		if (n >= 0)
			return n;
		if (errno != EINTR)
			return -errno;
	}
}

/* Receive len bytes or up to EOF; returns how many came, or -errno. */
static ssize_t be_recv_full(int fd, uint8_t *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = be_recv(fd, buf + done, len - done);

		if (n < 0)
			return n;
		if (n == 0)
			break;
		done += n;
	}
	return done;
}

static int be_send_all(int fd, const void *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf = (const uint8_t *)buf + n;
		len -= n;
	}
	return 0;
}

/* Send len bytes of stream p; *done says how far it got. */
static int be_send_stream(struct bconn *b, struct prng *p, uint64_t len, uint64_t *done)
{
	int r;

	for (*done = 0; *done < len;) {
		size_t k = MIN(len - *done, (uint64_t)IO_BUF_SIZE);

		prng_fill(p, b->buf, k);
		r = be_send_all(b->fd, b->buf, k);
		if (r < 0)
			return r;
		*done += k;
	}
	return 0;
}

static int be_send_status(struct bconn *b, bool ok, uint64_t value)
{
	uint8_t st[PROTO_STATUS_SIZE] = { 0 };

	memcpy(st, ok ? "OK\0\0" : "BAD\0", 4);
	put_le64(st + 8, value);
	return be_send_all(b->fd, st, sizeof(st));
}

/*
 * After our half-close, wait for the peer's: closing with unread data would send a reset that
 * can destroy the reply still in flight.
 */
static void be_drain(struct bconn *b, bool complain)
{
	uint64_t until = now_ns() + DRAIN_TIMEOUT_SEC * NSEC_PER_SEC, extra = 0;
	ssize_t n;

	sock_set_timeouts(b->fd, NSEC_PER_SEC);
	for (;;) {
		n = be_recv(b->fd, b->buf, IO_BUF_SIZE);
		if (n == 0)
			break;
		if (n > 0) {
			extra += n;
		} else if (n != -EAGAIN) {
			if (complain)
				be_err(b, "proto: waiting for EOF: %s", strerror(-n));
			return;
		}
		if (now_ns() >= until) {
			be_err(b, "proto: peer did not close within %d s", DRAIN_TIMEOUT_SEC);
			return;
		}
	}
	if (extra && complain)
		be_err(b, "proto: %" PRIu64 " unexpected bytes after the request", extra);
}

static void be_echo(struct bconn *b)
{
	uint64_t total = 0;
	ssize_t n;
	int r;

	for (;;) {
		n = be_recv(b->fd, b->buf, IO_BUF_SIZE);
		if (n == 0)
			break;
		if (n < 0) {
			be_err(b, "echo: recv: %s after %" PRIu64 " bytes", strerror(-n), total);
			return;
		}
		r = be_send_all(b->fd, b->buf, n);
		if (r < 0) {
			be_err(b, "echo: send: %s after %" PRIu64 " bytes", strerror(-r), total);
			return;
		}
		total += n;
	}
	shutdown(b->fd, SHUT_WR);
}

static void be_banner(struct bconn *b)
{
	struct prng p;
	uint64_t done;
	int r;

	if (bcfg.banner_delay_us)
		sleep_ns(bcfg.banner_delay_us * NSEC_PER_USEC);
	prng_init(&p, BANNER_SEED);
	r = be_send_stream(b, &p, bcfg.banner_size, &done);
	if (r < 0) {
		be_err(b, "banner: send: %s after %" PRIu64 " of %" PRIu64 " bytes", strerror(-r),
		       done, bcfg.banner_size);
		return;
	}
	be_echo(b);
}

/*
 * PROTO_F_DUPLEX: send the reply, paced at the rate the header's extension gives, while
 * receiving and checking the payload. Then the status and a half-close, after the client's
 * EOF; or, with PROTO_F_REPLY_SHUT, a half-close right after the reply and no status: what goes
 * wrong with the upload is only reported here.
 */
static void be_duplex(struct bconn *b, uint32_t flags, uint64_t seed, uint64_t payload,
		      uint64_t reply)
{
	uint8_t ext[PROTO_EXT_SIZE], txbuf[SINK_CHUNK];
	uint64_t rate, t0, last, got = 0, sent = 0, gen = 0, bad_at = 0;
	size_t pend_off = 0, pend_len = 0;
	bool eof = false, bad = false, shut = false;
	struct prng rx, tx;
	struct mismatch m;
	ssize_t n;
	int r;

	n = be_recv_full(b->fd, ext, sizeof(ext));
	if (n != (ssize_t)sizeof(ext)) {
		be_err(b, "proto: duplex: receiving the header's extension: %s",
		       n < 0 ? strerror(-n) : "EOF");
		return;
	}
	rate = get_le64(ext);
	prng_init(&rx, seed);
	prng_init(&tx, seed ^ REPLY_SEED_XOR);
	t0 = last = now_ns();
	while (!eof || sent < reply) {
		struct pollfd pfd = { .fd = b->fd };
		uint64_t now = now_ns(), allowed = pace_allowed(rate, reply, now - t0);
		bool progress = false;
		int timeout;

		if (!pend_len && gen < allowed) {
			pend_len = MIN(sizeof(txbuf), allowed - gen);
			pend_off = 0;
			prng_fill(&tx, txbuf, pend_len);
			gen += pend_len;
		}
		if (pend_len) {
			n = send(b->fd, txbuf + pend_off, pend_len, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n > 0) {
				pend_off += n;
				pend_len -= n;
				sent += n;
				progress = true;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				be_err(b,
				       "proto: duplex: sending reply: %s after %" PRIu64
				       " of %" PRIu64 " bytes (received %" PRIu64 " of %" PRIu64
				       ")",
				       strerror(errno), sent, reply, got, payload);
				return;
			}
		}
		if (sent == reply && (flags & PROTO_F_REPLY_SHUT) && !shut) {
			shutdown(b->fd, SHUT_WR);
			shut = true;
		}
		if (!eof) {
			n = recv(b->fd, b->buf, IO_BUF_SIZE, MSG_DONTWAIT);
			if (n > 0) {
				progress = true;
				if (!bad && got + n > payload) {
					be_err(b,
					       "proto: duplex: more than the %" PRIu64
					       " payload bytes",
					       payload);
					bad = true;
					bad_at = payload;
				} else if (!bad &&
					   prng_verify(&rx, b->buf, n, b->scratch, &m) < 0) {
					be_err(b,
					       "proto: duplex: payload mismatch (stream offset %" PRIu64
					       ", expected 0x%02x, got 0x%02x)",
					       m.offset, m.expected, m.got);
					bad = true;
					bad_at = m.offset;
				}
				got += n;
			} else if (n == 0) {
				progress = true;
				eof = true;
				if (!bad && got < payload) {
					be_err(b,
					       "proto: duplex: EOF after %" PRIu64 " of %" PRIu64
					       " payload bytes (sent %" PRIu64 " of %" PRIu64 ")",
					       got, payload, sent, reply);
					bad = true;
					bad_at = got;
				}
			} else if (errno != EAGAIN && errno != EINTR) {
				be_err(b,
				       "proto: duplex: receiving payload: %s after %" PRIu64
				       " of %" PRIu64 " bytes (sent %" PRIu64 " of %" PRIu64 ")",
				       strerror(errno), got, payload, sent, reply);
				return;
			}
		}
		if (progress) {
			last = now;
			continue;
		}
		if (now - last > DRAIN_TIMEOUT_SEC * NSEC_PER_SEC) {
			be_err(b,
			       "proto: duplex: nothing moved for %d s (received %" PRIu64
			       " of %" PRIu64 ", sent %" PRIu64 " of %" PRIu64 ")",
			       DRAIN_TIMEOUT_SEC, got, payload, sent, reply);
			return;
		}
		pfd.events = (eof ? 0 : POLLIN) | (pend_len ? POLLOUT : 0);
		timeout = sent < reply && !pend_len ?
				  (int)((pace_next(now - t0) + NSEC_PER_MSEC - 1) / NSEC_PER_MSEC) :
				  1000;
		poll(&pfd, 1, timeout);
	}
	if (flags & PROTO_F_REPLY_SHUT)
		return;
	r = be_send_status(b, !bad, bad ? bad_at : got);
	if (r < 0) {
		be_err(b, "proto: duplex: sending status: %s", strerror(-r));
		return;
	}
	shutdown(b->fd, SHUT_WR);
}

static void be_proto(struct bconn *b)
{
	uint8_t hdr[PROTO_HDR_SIZE];
	uint64_t seed, payload, reply, got = 0, bad_at = 0, done;
	uint32_t magic, flags;
	bool until_eof, bad = false;
	struct mismatch m;
	struct prng p;
	ssize_t n;
	int r;

	n = be_recv_full(b->fd, hdr, sizeof(hdr));
	if (n < 0) {
		be_err(b, "proto: receiving header: %s", strerror(-n));
		return;
	}
	if (n == 0) {
		be_note(b, "proto: closed without sending a header");
		return;
	}
	if (n < PROTO_HDR_SIZE) {
		be_err(b, "proto: EOF after %zd of %d header bytes", n, PROTO_HDR_SIZE);
		return;
	}
	magic = get_le32(hdr);
	flags = get_le32(hdr + 4);
	seed = get_le64(hdr + 8);
	payload = get_le64(hdr + 16);
	reply = get_le64(hdr + 24);
	if (magic != PROTO_MAGIC || (flags & ~PROTO_F_ALL) ||
	    ((flags & PROTO_F_DUPLEX) &&
	     (flags & (PROTO_F_PAYLOAD_UNTIL_EOF | PROTO_F_CLOSE_AT_ONCE))) ||
	    ((flags & PROTO_F_REPLY_SHUT) && !(flags & PROTO_F_DUPLEX))) {
		be_err(b, "proto: bad header (magic 0x%08x, flags 0x%x)", magic, flags);
		return;
	}
	if (flags & PROTO_F_DUPLEX) {
		be_duplex(b, flags, seed, payload, reply);
		return;
	}
	until_eof = flags & PROTO_F_PAYLOAD_UNTIL_EOF;

	prng_init(&p, seed);
	while (until_eof || got < payload) {
		size_t want = until_eof ? IO_BUF_SIZE : MIN(payload - got, IO_BUF_SIZE);

		n = be_recv(b->fd, b->buf, want);
		if (n < 0) {
			be_err(b, "proto: receiving payload: %s after %" PRIu64 " bytes",
			       strerror(-n), got);
			return;
		}
		if (n == 0 && until_eof)
			break;
		if (n == 0) {
			be_err(b, "proto: EOF after %" PRIu64 " of %" PRIu64 " payload bytes", got,
			       payload);
			if (!bad)
				bad_at = got;
			bad = true;
			break;
		}
		/* After a mismatch keep reading, lest the client be reset before it hears why. */
		if (!bad && prng_verify(&p, b->buf, n, b->scratch, &m) < 0) {
			be_err(b,
			       "proto: payload mismatch (stream offset %" PRIu64
			       ", expected 0x%02x, got 0x%02x)",
			       m.offset, m.expected, m.got);
			bad = true;
			bad_at = m.offset;
		}
		got += n;
	}

	r = be_send_status(b, !bad, bad ? bad_at : got);
	if (r < 0) {
		be_err(b, "proto: sending status: %s", strerror(-r));
		return;
	}
	if (bad) {
		shutdown(b->fd, SHUT_WR);
		be_drain(b, false);
		return;
	}
	prng_init(&p, seed ^ REPLY_SEED_XOR);
	r = be_send_stream(b, &p, reply, &done);
	if (r < 0) {
		be_err(b, "proto: sending reply: %s after %" PRIu64 " of %" PRIu64 " bytes",
		       strerror(-r), done, reply);
		return;
	}
	if (flags & PROTO_F_CLOSE_AT_ONCE)
		return;
	shutdown(b->fd, SHUT_WR);
	be_drain(b, true);
}

static void be_http(struct bconn *b)
{
	enum { BODY_MAX = HTTP_HEAD_MAX + 256, RESP_HEAD_MAX = 256 };
	char *req = (char *)b->buf, *body = req + HTTP_HEAD_MAX, *resp = body + BODY_MAX;
	size_t len = 0, line_len;
	int body_len, head_len, r;
	unsigned long k;
	ssize_t n;

	while (!memmem(req, len, "\r\n\r\n", 4)) {
		if (len == HTTP_HEAD_MAX) {
			static const char too_long[] =
				"HTTP/1.1 431 Request Header Fields Too Large\r\n"
				"Content-Length: 0\r\nConnection: close\r\n\r\n";

			be_err(b, "http: request head longer than %d bytes", HTTP_HEAD_MAX);
			be_send_all(b->fd, too_long, sizeof(too_long) - 1);
			return;
		}
		n = be_recv(b->fd, req + len, HTTP_HEAD_MAX - len);
		if (n < 0) {
			be_err(b, "http: recv: %s after %zu bytes", strerror(-n), len);
			return;
		}
		if (n == 0) {
			if (len)
				be_err(b, "http: EOF after %zu bytes of request head", len);
			else
				be_note(b, "http: closed without sending a request");
			return;
		}
		len += n;
	}
	line_len = (char *)memmem(req, len, "\r\n", 2) - req;
	k = atomic_fetch_add(&be_nrequests, 1) + 1;
	body_len = snprintf(body, BODY_MAX - line_len - 1,
			    "Hello from the sockredir demo backend (pid %d, request #%lu)\n",
			    (int)getpid(), k);
	memcpy(body + body_len, req, line_len);
	body_len += line_len;
	body[body_len++] = '\n';
	head_len = snprintf(resp, RESP_HEAD_MAX,
			    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
			    "Connection: close\r\n\r\n",
			    body_len);
	memcpy(resp + head_len, body, body_len);
	r = be_send_all(b->fd, resp, head_len + body_len);
	if (r < 0) {
		be_err(b, "http: send: %s", strerror(-r));
		return;
	}
	shutdown(b->fd, SHUT_WR);
}

/* A slow reader, so that the proxy has to hold the client's data (memory tests). */
static void be_sink_slow(struct bconn *b)
{
	uint8_t first[PROTO_HDR_SIZE];
	uint64_t total = 0, count;
	ssize_t n;
	int r;

	for (;;) {
		n = be_recv(b->fd, b->buf, SINK_CHUNK);
		if (n == 0)
			break;
		if (n < 0) {
			be_err(b, "sink-slow: recv: %s after %" PRIu64 " bytes", strerror(-n),
			       total);
			return;
		}
		if (total < sizeof(first))
			memcpy(first + total, b->buf, MIN((uint64_t)n, sizeof(first) - total));
		total += n;
		sleep_ns(SINK_PAUSE_US * NSEC_PER_USEC);
	}
	/* Report payload bytes, as proto does, so that "client --test up" works here too. */
	count = total;
	if (total >= sizeof(first) && get_le32(first) == PROTO_MAGIC)
		count -= sizeof(first);
	r = be_send_status(b, true, count);
	if (r < 0) {
		be_err(b, "sink-slow: sending status: %s", strerror(-r));
		return;
	}
	shutdown(b->fd, SHUT_WR);
}

static void *be_conn_main(void *arg)
{
	struct bconn *b = arg;

	b->buf = malloc(IO_BUF_SIZE);
	b->scratch = malloc(VERIFY_CHUNK);
	if (!b->buf || !b->scratch) {
		be_err(b, "out of memory");
	} else {
		switch (bcfg.mode) {
		case MODE_ECHO:
			be_echo(b);
			break;
		case MODE_BANNER:
			be_banner(b);
			break;
		case MODE_PROTO:
			be_proto(b);
			break;
		case MODE_HTTP:
			be_http(b);
			break;
		case MODE_SINK_SLOW:
			be_sink_slow(b);
			break;
		}
	}
	close(b->fd);
	free(b->buf);
	free(b->scratch);
	free(b);
	return NULL;
}

static void be_cleanup(void)
{
	if (bcfg.addr.fs_path && atomic_load(&be_bound))
		unlink(bcfg.addr.un.sun_path);
	if (bcfg.ready_file)
		unlink(bcfg.ready_file);
}

static void *be_signal_main(void *arg)
{
	sigset_t *set = arg;
	int sig;

	while (sigwait(set, &sig) != 0)
		;
	be_cleanup();
	fprintf(stderr, "srpeer backend: %lu connections, %lu errors\n", atomic_load(&be_nconns),
		atomic_load(&be_nerrors));
	_exit(0);
}

/* Written under a temporary name and renamed, so that a poller never reads half of it. */
static int write_ready_file(const char *path, const char *text)
{
	char tmp[PATH_MAX];
	int fd, r = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (dprintf(fd, "%s\n", text) < 0)
		r = -errno;
	if (close(fd) < 0 && !r)
		r = -errno;
	if (!r && rename(tmp, path) < 0)
		r = -errno;
	if (r)
		unlink(tmp);
	return r;
}

static void be_accept_loop(int lfd)
{
	uint64_t last_complaint = 0;

	for (;;) {
		struct bconn *b;
		pthread_t t;
		int fd, r;

		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EMFILE && errno != ENFILE && errno != ENOBUFS &&
			    errno != ENOMEM) {
				fprintf(stderr, "srpeer backend: accept: %s\n", strerror(errno));
				be_cleanup();
				exit(1);
			}
			/* Out of descriptors: the clients will time out; say why, once a second. */
			if (now_ns() - last_complaint > NSEC_PER_SEC) {
				fprintf(stderr, "srpeer backend: accept: %s (retrying)\n",
					strerror(errno));
				atomic_fetch_add(&be_nerrors, 1);
				last_complaint = now_ns();
			}
			sleep_ns(10 * NSEC_PER_MSEC);
			continue;
		}
		sock_nodelay(fd, bcfg.addr.sa.sa_family);
		b = calloc(1, sizeof(*b));
		if (!b) {
			fprintf(stderr, "srpeer backend: out of memory\n");
			atomic_fetch_add(&be_nerrors, 1);
			close(fd);
			continue;
		}
		b->fd = fd;
		b->id = atomic_fetch_add(&be_nconns, 1) + 1;
		/* Thread creation fails transiently while many exit at once: retry for a second. */
		for (int tries = 0; (r = thread_start(&t, be_conn_main, b, true)) == -EAGAIN &&
				    tries < 100;
		     tries++)
			sleep_ns(10 * NSEC_PER_MSEC);
		if (r < 0) {
			be_err(b, "cannot start a thread: %s", strerror(-r));
			close(fd);
			free(b);
		}
	}
}

static int cmd_backend(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "mode", required_argument, NULL, 'm' },
		{ "ready-file", required_argument, NULL, 'R' },
		{ "banner-size", required_argument, NULL, 'B' },
		{ "banner-delay-us", required_argument, NULL, 'D' },
		{ "unpace-file", required_argument, NULL, 'U' },
		{}
	};
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	const char *listen_arg = NULL;
	static sigset_t set;
	char bound[160];
	pthread_t t;
	int opt, lfd, r;
	bool mode_ok;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'l':
			listen_arg = optarg;
			break;
		case 'm':
			mode_ok = false;
			for (size_t i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
				if (!strcmp(optarg, mode_names[i])) {
					bcfg.mode = i;
					mode_ok = true;
				}
			if (!mode_ok)
				usage_error("backend: unknown mode '%s'", optarg);
			break;
		case 'R':
			bcfg.ready_file = optarg;
			break;
		case 'B':
			bcfg.banner_size = parse_opt_num("banner-size", optarg, 0, UINT64_MAX / 2);
			break;
		case 'D':
			bcfg.banner_delay_us = parse_opt_num("banner-delay-us", optarg, 0,
							     3600 * 1000000ULL);
			break;
		case 'U':
			unpace_path = optarg;
			break;
		default:
			usage_error("backend: bad option '%s'", argv[optind - 1]);
		}
	}
	if (optind < argc)
		usage_error("backend: unexpected argument '%s'", argv[optind]);
	if (!listen_arg)
		usage_error("backend: --listen is required");
	if (addr_parse(listen_arg, false, &bcfg.addr) < 0)
		usage_error("backend: bad address '%s'", listen_arg);

	/* Only the signal thread takes SIGTERM/SIGINT; every thread created later inherits this. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	r = thread_start(&t, be_signal_main, &set, true);
	if (r < 0) {
		fprintf(stderr, "srpeer backend: cannot start the signal thread: %s\n",
			strerror(-r));
		return 1;
	}

	lfd = sock_bind(&bcfg.addr, SOCK_STREAM);
	if (lfd < 0) {
		fprintf(stderr, "srpeer backend: cannot listen on %s: %s\n", listen_arg,
			strerror(-lfd));
		return 1;
	}
	atomic_store(&be_bound, true);
	if (getsockname(lfd, (struct sockaddr *)&ss, &sslen) < 0)
		addr_format(&bcfg.addr.ss, bcfg.addr.len, bound, sizeof(bound));
	else
		addr_format(&ss, sslen, bound, sizeof(bound));
	if (bcfg.ready_file) {
		r = write_ready_file(bcfg.ready_file, bound);
		if (r < 0) {
			fprintf(stderr, "srpeer backend: cannot write %s: %s\n", bcfg.ready_file,
				strerror(-r));
			bcfg.ready_file = NULL;
			be_cleanup();
			return 1;
		}
	}
	be_accept_loop(lfd);
	return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* notify-listen: stands in for systemd's NOTIFY_SOCKET */

static volatile sig_atomic_t notify_stop;

static void notify_on_signal(int sig)
{
	(void)sig;
	notify_stop = 1;
}

/* sd_notify messages are newline-separated assignments; look for an exact one. */
static bool notify_has(const char *msg, const char *assignment)
{
	size_t len = strlen(assignment);

	for (const char *p = msg; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, assignment, len) && (p[len] == '\n' || p[len] == 0))
			return true;
	return false;
}

static int cmd_notify_listen(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "timeout", required_argument, NULL, 'T' },
		{}
	};
	struct sigaction sa = { .sa_handler = notify_on_signal }; /* no SA_RESTART: poll wakes */
	unsigned int timeout_sec = 60;
	bool ready = false, stopping = false;
	static char buf[65536];
	struct sr_addr addr;
	uint64_t deadline;
	const char *path;
	int opt, fd;

	opterr = 0;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt != 'T')
			usage_error("notify-listen: bad option '%s'", argv[optind - 1]);
		timeout_sec = parse_opt_num("timeout", optarg, 1, 86400);
	}
	if (optind != argc - 1)
		usage_error("notify-listen: expected exactly one PATH");
	path = argv[optind];
	if (addr_parse(path, true, &addr) < 0)
		usage_error("notify-listen: bad path '%s'", path);

	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	fd = sock_bind(&addr, SOCK_DGRAM);
	if (fd < 0) {
		fprintf(stderr, "srpeer notify-listen: cannot bind %s: %s\n", path, strerror(-fd));
		return 1;
	}
	deadline = now_ns() + timeout_sec * NSEC_PER_SEC;
	/* The sender's pid on every line: only the main pid may notify (NotifyAccess=main). */
	if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &(int){ 1 }, sizeof(int)) < 0) {
		fprintf(stderr, "srpeer notify-listen: SO_PASSCRED: %s\n", strerror(errno));
		return 1;
	}
	while (!stopping && !notify_stop) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) - 1 };
		union {
			struct cmsghdr h;
			char b[CMSG_SPACE(sizeof(struct ucred))];
		} control;
		struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
				      .msg_controllen = sizeof(control) };
		struct ucred cred = {};
		struct cmsghdr *cmsg;
		uint64_t now = now_ns();
		ssize_t n;

		if (now >= deadline) {
			fprintf(stderr, "srpeer notify-listen: no STOPPING=1 within %u s\n",
				timeout_sec);
			break;
		}
		if (poll(&pfd, 1, (int)((deadline - now + NSEC_PER_MSEC - 1) / NSEC_PER_MSEC)) <= 0)
			continue;
		n = recvmsg(fd, &msg, MSG_DONTWAIT);
		if (n < 0)
			continue;
		buf[n] = 0;
		cmsg = CMSG_FIRSTHDR(&msg);
		if (cmsg && cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_CREDENTIALS)
			memcpy(&cred, CMSG_DATA(cmsg), sizeof(cred));
		else
			cred.pid = 0;
		ready |= notify_has(buf, "READY=1");
		stopping = notify_has(buf, "STOPPING=1");
		/* One line per datagram; strip the trailing newline sd_notify callers often add. */
		while (n > 0 && buf[n - 1] == '\n')
			buf[--n] = 0;
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] == '\n' || buf[i] == 0)
				buf[i] = ' ';
		printf("pid=%d %s\n", (int)cred.pid, buf);
		fflush(stdout);
	}
	close(fd);
	if (addr.fs_path)
		unlink(addr.un.sun_path);
	if (!ready)
		fprintf(stderr, "srpeer notify-listen: READY=1 never came\n");
	return ready ? 0 : 3;
}

/* ------------------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fputs("usage:\n"
	      "  srpeer backend --listen ADDR --mode MODE [--ready-file F] [--banner-size N]\n"
	      "                 [--banner-delay-us N] [--unpace-file F]\n"
	      "  srpeer client --connect ADDR --test TEST [--conns N] [--parallel P] [--size N]\n"
	      "                [--rounds K] [--seed S] [--timeout SEC] [--barrier]\n"
	      "                [--hold FILE] [--expect-eof-within MS] [--banner-size N] [--quiet]\n"
	      "                [--duration MS] [--no-backend-halfclose] [--unpace-file F]\n"
	      "  srpeer notify-listen PATH [--timeout SEC]   (prints pid=SENDER MESSAGE per datagram)\n"
	      "\n"
	      "ADDR: /path, ./path or unix:path (AF_UNIX), @name (abstract), host:port (IPv4 or\n"
	      "      localhost; port 0 picks one, see --ready-file), [v6]:port\n"
	      "Sizes take K, M, G suffixes (powers of 1024).\n"
	      "\n"
	      "backend modes:\n"
	      "  echo       write back everything, half-close after the client's EOF\n"
	      "  banner     send --banner-size bytes of stream 0xBA77E5 first, then echo\n"
	      "  proto      header-driven: verify the payload, report, send a reply\n"
	      "  http       minimal HTTP/1.1 demo server\n"
	      "  sink-slow  read 16 KiB every 100 us until EOF, then a proto status\n"
	      "  --ready-file F is created (holding the bound address) once listening.\n"
	      "  SIGTERM/SIGINT: exit 0 after 'srpeer backend: N connections, M errors'.\n"
	      "\n"
	      "client tests: rr up down halfclose replyclose sendclose duplex banner connect-only\n"
	      "  defaults: --conns 1 --parallel 1 --size 64K --rounds 1 --seed 1 --timeout 60\n"
	      "            --banner-size 4096; connection i uses seed S+i; --rounds: rr, banner.\n"
	      "  --timeout bounds every socket operation and the whole run.\n"
	      "  --barrier holds every connection after its first round trip until all got there\n"
	      "  (--parallel defaults to --conns with it). --hold FILE: once all got there, create\n"
	      "  FILE and hold them until it is removed. Exit: 0 ok, 1 failure, 2 bad usage.\n"
	      "  On failure a line counts the failed connections by kind: reset (ECONNRESET or\n"
	      "  EPIPE), early EOF, data (a wrong byte, or the backend reported one), timeout.\n"
	      "  duplex (proto backend): upload and download at once, --size each way; connection\n"
	      "  i by i % 6: 0-1 both whole; 2-3 an upload of 1/8 or 1/2 of --size, then the\n"
	      "  client half-closes while the download goes on; 4-5 a download of 1/8 or 1/2,\n"
	      "  then the backend half-closes while the upload goes on (no status: the backend\n"
	      "  checks the upload and counts its errors). --duration MS paces both ends to\n"
	      "  --size per MS\n"
	      "  (duplex only; 0: as fast as possible); with --barrier the pace starts at the\n"
	      "  release, so every transfer spans the same MS. --no-backend-halfclose: i by i % 4\n"
	      "  (kinds 0-3 only). --unpace-file F (client and backend): once F exists, the rest\n"
	      "  goes unpaced.\n"
	      "\n"
	      "proto request (little-endian): u32 magic 0x51505253, u32 flags (1: payload\n"
	      "  until EOF, 2: close at once after the reply), u64 seed, u64 payload size,\n"
	      "  u64 reply size. Status: \"OK\\0\\0\" u32 0 u64 bytes verified, or \"BAD\\0\"\n"
	      "  u32 0 u64 offset of the first bad byte; after OK, reply size bytes of stream\n"
	      "  seed ^ 0x5EED5EED5EED5EED.\n"
	      "  flags 4 (duplex): the header goes on with u64 reply rate (bytes per second, 0:\n"
	      "  unpaced); the reply is sent, paced, while the payload arrives; after the reply\n"
	      "  and the client's EOF, the status, then a half-close. Flags 4|8: a half-close\n"
	      "  right after the reply, and no status.\n"
	      "\n"
	      "notify-listen prints each datagram as a line until STOPPING=1 or the timeout;\n"
	      "  exit 0, or 3 if READY=1 never came.\n",
	      f);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "client"))
		return cmd_client(argc - 1, argv + 1);
	if (!strcmp(argv[1], "backend"))
		return cmd_backend(argc - 1, argv + 1);
	if (!strcmp(argv[1], "notify-listen"))
		return cmd_notify_listen(argc - 1, argv + 1);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	usage(stderr);
	return 2;
}
