// SPDX-License-Identifier: GPL-2.0
/*
 * bench-client: drives one measurement against bench-backend, directly or through a proxy, and
 * prints one JSON object on stdout.
 *
 * Tests:
 *   probe     connect and do one 64 B round trip, retrying until --stall seconds have passed;
 *             used to wait for a proxy to be ready (and to make a socket-activated one exec).
 *   rr        request/response of --size bytes, --conns connections each with one message in
 *             flight, for --duration seconds (or --max-count round trips). One connection runs
 *             blocking calls in this process; more run in --procs forked processes with epoll.
 *   up, down  --size bytes in one connection, to a sink or from a source.
 *   connrate  connect, one 64 B round trip, close; in --procs processes, each one at a time.
 *
 * Every echoed byte is compared with what was sent, and bulk bytes with the pattern of proto.h,
 * so every result says how many bytes were checked and whether they were right.
 *
 * CPU is the whole machine's, from /proc/stat, so that kernel threads (psock workers,
 * softirqs) count. With --watch-pid, the proxy's process tree (the pid and every descendant,
 * all threads) is sampled for context switches (its wakeups), fds, VmRSS and Pss.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

#define MAX_PROCS  16
#define BULK_CHUNK (256 * 1024)
#define MAX_MSG	   (1024 * 1024)
/* Connections per process that may be connecting at once; more overflow the listen backlog. */
#define CONNECT_PACE 64
#define NSEC_PER_SEC 1000000000ull
#define RR_STRIDE    131071 /* pattern offset step between messages, so each differs */

/*
 * Latency histogram, log-linear like HdrHistogram: values below 2^(SUB_BITS+1) ns are exact,
 * and above that each power of two is cut into 2^SUB_BITS buckets, so a bucket is never wider
 * than 1/128 of its value. Values from 2^40 ns (18 minutes) up share the last bucket.
 */
#define SUB_BITS 7
#define SUB	 (1u << SUB_BITS)
#define HIST_N	 ((40 - SUB_BITS) * SUB + 2 * SUB)

struct hist {
	uint64_t n[HIST_N];
	uint64_t count, sum_ns, max_ns, min_ns;
};

enum test { T_PROBE, T_RR, T_UP, T_DOWN, T_CONNRATE };

static struct {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	bool tcp;
	enum test test;
	uint64_t size;
	unsigned conns, procs;
	double duration, stall;
	uint64_t max_count;
	pid_t watch;
	const char *hist_path;
} o = {.size = 64, .conns = 1, .procs = 1, .duration = 1, .stall = 5, .max_count = 10000000};

static uint8_t *pattern;

/* One result line: "key":value pairs joined as they come. */
static char json[8192];
static size_t json_len;

static void jadd(const char *fmt, ...)
{
	va_list ap;

	if (json_len >= sizeof(json))
		return;
	va_start(ap, fmt);
	json_len += (size_t)vsnprintf(json + json_len, sizeof(json) - json_len, fmt, ap);
	va_end(ap);
	if (json_len > sizeof(json))
		json_len = sizeof(json);
}

static void jnum(const char *key, double v)
{
	if (isfinite(v))
		jadd(",\"%s\":%.6g", key, v);
	else
		jadd(",\"%s\":null", key);
}

static void ju64(const char *key, uint64_t v)
{
	jadd(",\"%s\":%llu", key, (unsigned long long)v);
}

/* A JSON string with the few characters that need it escaped. */
static void jstr(const char *key, const char *v)
{
	jadd(",\"%s\":\"", key);
	for (; *v; v++) {
		if (*v == '"' || *v == '\\')
			jadd("\\%c", *v);
		else if ((unsigned char)*v < 0x20)
			jadd(" ");
		else
			jadd("%c", *v);
	}
	jadd("\"");
}

static const char *test_name(enum test t)
{
	static const char *names[] = {"probe", "rr", "up", "down", "connrate"};

	return names[t];
}

/* Print the result and exit: 0 when ok, 1 when failed (the reason is in the JSON). */
static __attribute__((noreturn)) void finish(const char *failure)
{
	if (failure)
		jstr("reason", failure);
	printf("{\"test\":\"%s\",\"size\":%llu,\"conns\":%u,\"procs\":%u,\"status\":\"%s\"",
	       test_name(o.test), (unsigned long long)o.size, o.conns, o.procs,
	       failure ? "failed" : "ok");
	fwrite(json, 1, json_len, stdout);
	printf("}\n");
	fflush(stdout);
	exit(failure ? 1 : 0);
}

static __attribute__((format(printf, 1, 2), noreturn)) void fail(const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	finish(buf);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

/* ---- the histogram ---- */

static unsigned hist_index(uint64_t v)
{
	unsigned msb, shift;

	if (v < 2 * SUB)
		return (unsigned)v;
	msb = 63 - (unsigned)__builtin_clzll(v);
	shift = msb - SUB_BITS;
	if (shift * SUB + (v >> shift) >= HIST_N)
		return HIST_N - 1;
	return shift * SUB + (unsigned)(v >> shift);
}

/* The middle of a bucket, which is what percentiles report. */
static double hist_value(unsigned i)
{
	unsigned shift;

	if (i < 2 * SUB)
		return i;
	shift = i / SUB - 1;
	return (double)((uint64_t)(i - shift * SUB) << shift) + (double)(1ull << shift) / 2;
}

static void hist_add(struct hist *h, uint64_t v)
{
	h->n[hist_index(v)]++;
	h->count++;
	h->sum_ns += v;
	if (v > h->max_ns)
		h->max_ns = v;
	if (!h->min_ns || v < h->min_ns)
		h->min_ns = v;
}

static void hist_merge(struct hist *to, const struct hist *from)
{
	for (unsigned i = 0; i < HIST_N; i++)
		to->n[i] += from->n[i];
	to->count += from->count;
	to->sum_ns += from->sum_ns;
	if (from->max_ns > to->max_ns)
		to->max_ns = from->max_ns;
	if (from->min_ns && (!to->min_ns || from->min_ns < to->min_ns))
		to->min_ns = from->min_ns;
}

static double hist_pct(const struct hist *h, double q)
{
	uint64_t want = (uint64_t)ceil(q * (double)h->count), seen = 0;

	if (want == 0)
		want = 1;
	for (unsigned i = 0; i < HIST_N; i++) {
		seen += h->n[i];
		if (seen >= want)
			return hist_value(i);
	}
	return (double)h->max_ns;
}

static void hist_report(const struct hist *h)
{
	ju64("count", h->count);
	if (!h->count)
		return;
	jnum("p50_us", hist_pct(h, 0.50) / 1e3);
	jnum("p90_us", hist_pct(h, 0.90) / 1e3);
	jnum("p99_us", hist_pct(h, 0.99) / 1e3);
	jnum("p999_us", hist_pct(h, 0.999) / 1e3);
	jnum("max_us", (double)h->max_ns / 1e3);
	jnum("min_us", (double)h->min_ns / 1e3);
	jnum("mean_us", (double)h->sum_ns / (double)h->count / 1e3);
}

/* Nonzero buckets as "ns,count" lines, for the CDF plots. */
static void hist_write(const struct hist *h, const char *path)
{
	FILE *f;

	if (!path)
		return;
	f = fopen(path, "we");
	if (!f) {
		fprintf(stderr, "bench-client: %s: %s\n", path, strerror(errno));
		return;
	}
	fprintf(f, "ns,count\n");
	for (unsigned i = 0; i < HIST_N; i++)
		if (h->n[i])
			fprintf(f, "%.1f,%llu\n", hist_value(i), (unsigned long long)h->n[i]);
	fclose(f);
}

/* ---- what the machine and the proxy spent ---- */

struct cpu_sample {
	uint64_t busy, total, steal, ctxt; /* jiffies, and context switches since boot */
};

static void cpu_read(struct cpu_sample *s)
{
	unsigned long long v[10] = {};
	char line[512];
	FILE *f = fopen("/proc/stat", "re");

	*s = (struct cpu_sample){};
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "cpu ", 4)) {
			sscanf(line + 4, "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
			       &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
			/* user nice system idle iowait irq softirq steal (guest is inside user) */
			s->busy = v[0] + v[1] + v[2] + v[5] + v[6];
			s->steal = v[7];
			s->total = s->busy + v[3] + v[4] + v[7];
		} else if (!strncmp(line, "ctxt ", 5)) {
			s->ctxt = strtoull(line + 5, NULL, 10);
		}
	}
	fclose(f);
}

struct tree_sample {
	unsigned procs;
	uint64_t ctxt, fds, rss_kb, pss_kb;
};

static uint64_t file_field(const char *path, const char *key)
{
	char line[256];
	size_t klen = strlen(key);
	uint64_t v = 0;
	FILE *f = fopen(path, "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, klen)) {
			v = strtoull(line + klen, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static uint64_t count_dir(const char *path, bool numeric_only)
{
	DIR *d = opendir(path);
	struct dirent *e;
	uint64_t n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.' &&
		    (!numeric_only || (e->d_name[0] >= '0' && e->d_name[0] <= '9')))
			n++;
	closedir(d);
	return n;
}

static uint64_t task_ctxt(pid_t pid)
{
	char path[64];
	DIR *d;
	struct dirent *e;
	uint64_t n = 0;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	d = opendir(path);
	if (!d)
		return 0;
	while ((e = readdir(d))) {
		char p[128];

		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "/proc/%d/task/%d/status", pid, atoi(e->d_name));
		n += file_field(p, "voluntary_ctxt_switches:");
		n += file_field(p, "nonvoluntary_ctxt_switches:");
	}
	closedir(d);
	return n;
}

/*
 * The proxy's processes: the watched pid and its descendants (nginx workers, socat's
 * per-connection children). /proc/PID/task/TID/children isn't built into this kernel, so scan.
 */
static void tree_read(struct tree_sample *s, bool full)
{
	size_t cap = 1024, n = 0;
	pid_t *pid = malloc(cap * sizeof(*pid)), *ppid = malloc(cap * sizeof(*ppid));
	bool *in = NULL, *in_pid = NULL;
	size_t max_pid;
	DIR *d;
	struct dirent *e;
	bool grew = true;

	*s = (struct tree_sample){};
	if (!o.watch || !pid || !ppid || !(d = opendir("/proc")))
		goto out;
	while ((e = readdir(d))) {
		char path[64], buf[512], *p;
		FILE *f;

		if (e->d_name[0] < '1' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", atoi(e->d_name));
		f = fopen(path, "re");
		if (!f)
			continue;
		p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
		fclose(f);
		if (!p)
			continue;
		if (n == cap) {
			cap *= 2;
			pid = realloc(pid, cap * sizeof(*pid));
			ppid = realloc(ppid, cap * sizeof(*ppid));
			if (!pid || !ppid)
				break;
		}
		pid[n] = atoi(e->d_name);
		ppid[n] = atoi(p + 4); /* ") S PPID" */
		n++;
	}
	closedir(d);
	/* Membership by pid, so each pass is linear; one pass per level of the tree. */
	max_pid = (size_t)file_field("/proc/sys/kernel/pid_max", "") + 1;
	in_pid = calloc(max_pid, sizeof(*in_pid));
	in = calloc(n + 1, sizeof(*in));
	if (!in || !in_pid || !pid || !ppid)
		goto out;
	if ((size_t)o.watch < max_pid)
		in_pid[o.watch] = true;
	for (int pass = 0; grew && pass < 16; pass++) {
		grew = false;
		for (size_t i = 0; i < n; i++) {
			if (in[i] || (size_t)ppid[i] >= max_pid || (size_t)pid[i] >= max_pid)
				continue;
			if (pid[i] == o.watch || in_pid[ppid[i]]) {
				in[i] = in_pid[pid[i]] = true;
				grew = true;
			}
		}
	}
	for (size_t i = 0; i < n; i++) {
		char path[64];

		if (!in[i])
			continue;
		s->procs++;
		s->ctxt += task_ctxt(pid[i]);
		if (!full)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/status", pid[i]);
		s->rss_kb += file_field(path, "VmRSS:");
		snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid[i]);
		s->pss_kb += file_field(path, "Pss:");
		snprintf(path, sizeof(path), "/proc/%d/fd", pid[i]);
		s->fds += count_dir(path, true);
	}
out:
	free(in);
	free(in_pid);
	free(pid);
	free(ppid);
}

static uint64_t mem_used_kb(void)
{
	return file_field("/proc/meminfo", "MemTotal:") -
	       file_field("/proc/meminfo", "MemAvailable:");
}

/* CPU-seconds of the whole machine between two samples. */
static double cpu_seconds(const struct cpu_sample *a, const struct cpu_sample *b)
{
	return (double)(b->busy - a->busy) / (double)sysconf(_SC_CLK_TCK);
}

static void report_cpu(const struct cpu_sample *a, const struct cpu_sample *b)
{
	jnum("cpu_s", cpu_seconds(a, b));
	ju64("ctxt", b->ctxt - a->ctxt);
	if (b->total > a->total)
		jnum("steal_pct",
		     100.0 * (double)(b->steal - a->steal) / (double)(b->total - a->total));
}

/* Rate, latency and CPU cost of h.count round trips (or connections) in elapsed_ns. */
static void report_rr(const struct hist *h, uint64_t elapsed_ns, const struct cpu_sample *c0,
		      const struct cpu_sample *c1)
{
	jnum("seconds", (double)elapsed_ns / 1e9);
	jnum("rate", (double)h->count / ((double)elapsed_ns / 1e9));
	hist_report(h);
	report_cpu(c0, c1);
	jnum("cpu_s_per_10k", cpu_seconds(c0, c1) * 1e4 / (double)h->count);
	jnum("ctxt_per_rr", (double)(c1->ctxt - c0->ctxt) / (double)h->count);
}

static void report_tree(const char *prefix, const struct tree_sample *t)
{
	char key[64];

	if (!o.watch)
		return;
	snprintf(key, sizeof(key), "%s_procs", prefix);
	ju64(key, t->procs);
	snprintf(key, sizeof(key), "%s_fds", prefix);
	ju64(key, t->fds);
	snprintf(key, sizeof(key), "%s_rss_kb", prefix);
	ju64(key, t->rss_kb);
	snprintf(key, sizeof(key), "%s_pss_kb", prefix);
	ju64(key, t->pss_kb);
}

/* ---- sockets ---- */

static int parse_addr(const char *s)
{
	if (s[0] == '/' || !strncmp(s, "unix:", 5)) {
		struct sockaddr_un *sa = (struct sockaddr_un *)&o.addr;
		const char *path = s[0] == '/' ? s : s + 5;

		if (strlen(path) >= sizeof(sa->sun_path))
			return -1;
		sa->sun_family = AF_UNIX;
		strcpy(sa->sun_path, path);
		o.addrlen = sizeof(*sa);
		o.tcp = false;
		return 0;
	} else {
		struct sockaddr_in *sa = (struct sockaddr_in *)&o.addr;
		char host[64];
		const char *colon = strrchr(s, ':');

		if (!colon || (size_t)(colon - s) >= sizeof(host))
			return -1;
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = '\0';
		sa->sin_family = AF_INET;
		sa->sin_port = htons((uint16_t)atoi(colon + 1));
		if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
			return -1;
		o.addrlen = sizeof(*sa);
		o.tcp = true;
		return 0;
	}
}

static int new_socket(bool nonblock)
{
	int fd = socket(o.addr.ss_family,
			SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	int one = 1;

	if (fd < 0)
		return -1;
	/*
	 * Every message is written in one call, so Nagle only delays: a 64 KiB message's last
	 * segment would wait for an ACK. Proxies that don't set it themselves lose here.
	 */
	if (o.tcp)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (!nonblock) {
		/* Bounds every blocking call: a stalled proxy fails the test after --stall s. */
		struct timeval tv = {.tv_sec = (time_t)o.stall,
				     .tv_usec = (suseconds_t)((o.stall - floor(o.stall)) * 1e6)};

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	return fd;
}

static int connect_blocking(void)
{
	int fd = new_socket(false);

	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&o.addr, o.addrlen) < 0) {
		int e = errno;

		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static const char *io_error(ssize_t n)
{
	if (n == 0)
		return "the connection was closed";
	if (errno == EAGAIN)
		return "timed out (--stall)";
	return strerror(errno);
}

static int send_all(int fd, const void *buf, size_t len, const char **err)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);

		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			*err = io_error(n);
			return -1;
		}
		buf = (const uint8_t *)buf + n;
		len -= (size_t)n;
	}
	return 0;
}

static int recv_all(int fd, void *buf, size_t len, const char **err)
{
	while (len > 0) {
		ssize_t n = recv(fd, buf, len, 0);

		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			*err = io_error(n);
			return -1;
		}
		buf = (uint8_t *)buf + n;
		len -= (size_t)n;
	}
	return 0;
}

static void hdr_init(struct bench_hdr *h, enum bench_mode mode, uint64_t len)
{
	*h = (struct bench_hdr){.magic = BENCH_MAGIC, .mode = (uint8_t)mode, .len = len};
}

/* One blocking round trip of o.size bytes, checked; 0, or -1 with *err set. */
static int rr_once(int fd, uint64_t seq, uint8_t *rx, const char **err)
{
	const uint8_t *msg = pattern + (seq * RR_STRIDE) % BENCH_PERIOD;

	if (send_all(fd, msg, o.size, err) < 0 || recv_all(fd, rx, o.size, err) < 0)
		return -1;
	if (memcmp(msg, rx, o.size) != 0) {
		*err = "the echo differs from the request";
		return -1;
	}
	return 0;
}

/* ---- probe, one-connection RR, bulk ---- */

static void run_probe(void)
{
	uint64_t start = now_ns(), deadline = start + (uint64_t)(o.stall * 1e9);
	struct bench_hdr h;
	uint8_t rx[64];
	const char *err = "never connected";
	int fd;

	o.size = 64;
	hdr_init(&h, BENCH_ECHO, 0);
	while (now_ns() < deadline) {
		fd = connect_blocking();
		if (fd < 0) {
			err = strerror(errno);
			sleep_ms(20);
			continue;
		}
		if (send_all(fd, &h, sizeof(h), &err) == 0 && rr_once(fd, 0, rx, &err) == 0) {
			close(fd);
			jnum("ms", (double)(now_ns() - start) / 1e6);
			finish(NULL);
		}
		close(fd);
		sleep_ms(20);
	}
	fail("not ready after %.1f s: %s", o.stall, err);
}

static void run_rr1(void)
{
	static struct hist h;
	struct cpu_sample c0, c1;
	struct tree_sample t0, t1;
	struct bench_hdr hdr;
	const char *err = NULL;
	uint8_t *rx = malloc(o.size);
	uint64_t seq = 0, start, end, deadline;
	int fd;

	if (!rx)
		fail("out of memory");
	fd = connect_blocking();
	if (fd < 0)
		fail("connect: %s", strerror(errno));
	hdr_init(&hdr, BENCH_ECHO, 0);
	if (send_all(fd, &hdr, sizeof(hdr), &err) < 0)
		fail("sending the header: %s", err);
	/* Warm up: the proxy's first round trip sets up its path (and socat forks). */
	deadline = now_ns() + 100000000ull;
	while (seq < 200 && now_ns() < deadline)
		if (rr_once(fd, seq++, rx, &err) < 0)
			fail("warm-up round trip %llu: %s", (unsigned long long)seq, err);

	tree_read(&t0, true);
	cpu_read(&c0);
	start = now_ns();
	deadline = start + (uint64_t)(o.duration * 1e9);
	for (uint64_t i = 0; i < o.max_count; i++) {
		uint64_t t = now_ns();

		if (t >= deadline)
			break;
		if (rr_once(fd, seq++, rx, &err) < 0)
			fail("round trip %llu: %s", (unsigned long long)i, err);
		hist_add(&h, now_ns() - t);
	}
	end = now_ns();
	cpu_read(&c1);
	tree_read(&t1, true);
	close(fd);

	report_rr(&h, end - start, &c0, &c1);
	if (o.watch) {
		jnum("proxy_wakeups_per_rr", (double)(t1.ctxt - t0.ctxt) / (double)h.count);
		report_tree("proxy_before", &t0);
		report_tree("proxy_after", &t1);
	}
	ju64("verified_bytes", 2 * seq * o.size);
	jadd(",\"verified\":true");
	hist_write(&h, o.hist_path);
	finish(NULL);
}

static void run_bulk(bool up)
{
	struct cpu_sample c0, c1;
	struct tree_sample t0, t1;
	struct bench_hdr hdr;
	const char *err = NULL;
	uint8_t *buf = NULL;
	uint64_t done = 0, start, end;
	int fd;

	if (!up && !(buf = malloc(BULK_CHUNK)))
		fail("out of memory");
	fd = connect_blocking();
	if (fd < 0)
		fail("connect: %s", strerror(errno));
	hdr_init(&hdr, up ? BENCH_SINK : BENCH_SOURCE, o.size);

	tree_read(&t0, true);
	cpu_read(&c0);
	start = now_ns();
	if (send_all(fd, &hdr, sizeof(hdr), &err) < 0)
		fail("sending the header: %s", err);
	if (up) {
		struct bench_sink_reply reply;

		while (done < o.size) {
			uint64_t left = o.size - done;
			size_t len = left < BULK_CHUNK ? (size_t)left : BULK_CHUNK;

			if (send_all(fd, pattern + done % BENCH_PERIOD, len, &err) < 0)
				fail("upload after %llu bytes: %s", (unsigned long long)done, err);
			done += len;
		}
		if (recv_all(fd, &reply, sizeof(reply), &err) < 0)
			fail("waiting for the backend's count after %llu bytes: %s",
			     (unsigned long long)done, err);
		end = now_ns();
		if (reply.received != o.size)
			fail("the backend received %llu bytes of %llu",
			     (unsigned long long)reply.received, (unsigned long long)o.size);
		if (reply.mismatch != BENCH_NO_MISMATCH)
			fail("the backend saw a wrong byte at offset %llu",
			     (unsigned long long)reply.mismatch);
	} else {
		while (done < o.size) {
			uint64_t left = o.size - done;
			ssize_t n = recv(fd, buf, left < BULK_CHUNK ? (size_t)left : BULK_CHUNK, 0);
			int64_t bad;

			if (n <= 0) {
				if (n < 0 && errno == EINTR)
					continue;
				fail("download after %llu bytes: %s", (unsigned long long)done,
				     io_error(n));
			}
			bad = bench_pattern_check(pattern, done, buf, (size_t)n);
			if (bad >= 0)
				fail("wrong byte at offset %lld", (long long)bad);
			done += (uint64_t)n;
		}
		end = now_ns();
	}
	cpu_read(&c1);
	tree_read(&t1, true);
	close(fd);

	jnum("seconds", (double)(end - start) / 1e9);
	jnum("mb_s", (double)o.size / 1e6 / ((double)(end - start) / 1e9));
	report_cpu(&c0, &c1);
	jnum("cpu_s_per_gib", cpu_seconds(&c0, &c1) / ((double)o.size / (1ull << 30)));
	if (o.watch) {
		ju64("proxy_wakeups", t1.ctxt - t0.ctxt);
		report_tree("proxy_before", &t0);
		report_tree("proxy_after", &t1);
	}
	ju64("verified_bytes", o.size);
	jadd(",\"verified\":true");
	finish(NULL);
}

/* ---- several processes: RR over many connections, and the connection rate ---- */

struct child_res {
	struct hist h;
	uint64_t errors, verified;
	unsigned established;
	char reason[256];
};

struct shared {
	_Atomic unsigned established; /* connections whose first round trip came back */
	_Atomic unsigned quiet;	      /* processes done measuring, connections still open */
	_Atomic int go, release, abort;
	uint64_t end_ns;
	struct child_res res[];
};

static struct shared *sh;

static void child_fail(struct child_res *r, const char *fmt, ...)
{
	va_list ap;

	r->errors++;
	if (!r->reason[0]) {
		va_start(ap, fmt);
		vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
		va_end(ap);
	}
	atomic_store(&sh->abort, 1);
}

/* Wait for a flag the parent sets; false if it aborted instead. */
static bool child_wait(_Atomic int *flag)
{
	while (!atomic_load(flag)) {
		if (atomic_load(&sh->abort))
			return false;
		sleep_ms(1);
	}
	return true;
}

enum cstate { C_NEW, C_CONNECTING, C_SEND, C_RECV, C_IDLE, C_DONE };

struct cconn {
	int fd;
	enum cstate state;
	bool hello; /* the round trip that proves the connection, not timed */
	uint32_t sent, rcvd;
	uint64_t seq, t0;
};

static int cconn_watch(int ep, struct cconn *c, uint32_t events, int op)
{
	struct epoll_event ev = {.events = events, .data.ptr = c};

	return epoll_ctl(ep, op, c->fd, &ev);
}

static const uint8_t *cconn_msg(const struct cconn *c)
{
	return pattern + (c->seq * RR_STRIDE) % BENCH_PERIOD;
}

/* Start a round trip (the header goes in front of the hello). */
static void cconn_start(struct cconn *c, uint64_t seq, bool hello)
{
	c->seq = seq;
	c->hello = hello;
	c->sent = hello ? 0 : sizeof(struct bench_hdr);
	c->rcvd = 0;
	c->state = C_SEND;
	c->t0 = now_ns();
}

/* Make progress on one connection; -1 on a failure (already recorded). */
static int cconn_io(int ep, struct cconn *c, struct child_res *r, uint8_t *rx, uint32_t ev,
		    unsigned *ndone)
{
	const size_t hsz = sizeof(struct bench_hdr);

	if (c->state == C_CONNECTING) {
		int err = 0;
		socklen_t l = sizeof(err);

		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err) {
			child_fail(r, "connect: %s", strerror(err));
			return -1;
		}
		cconn_start(c, c->seq, true);
	}
	if (c->state == C_SEND) {
		while (c->sent < hsz + o.size) {
			struct bench_hdr h;
			const uint8_t *p;
			size_t len;
			ssize_t n;

			if (c->sent < hsz) {
				/* The header and the hello go out in one send, like a request. */
				uint8_t buf[sizeof(h) + 64];

				hdr_init(&h, BENCH_ECHO, 0);
				memcpy(buf, &h, hsz);
				len = o.size <= 64 ? (size_t)o.size : 0;
				memcpy(buf + hsz, cconn_msg(c), len);
				n = send(c->fd, buf + c->sent, hsz + len - c->sent,
					 MSG_NOSIGNAL | MSG_DONTWAIT);
			} else {
				p = cconn_msg(c) + (c->sent - hsz);
				len = hsz + o.size - c->sent;
				n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
			}
			if (n < 0) {
				if (errno == EAGAIN)
					break;
				child_fail(r, "send: %s", strerror(errno));
				return -1;
			}
			c->sent += (uint32_t)n;
		}
		if (c->sent == hsz + o.size) {
			c->state = C_RECV;
			if (cconn_watch(ep, c, EPOLLIN, EPOLL_CTL_MOD) < 0) {
				child_fail(r, "epoll_ctl: %s", strerror(errno));
				return -1;
			}
		} else if (cconn_watch(ep, c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD) < 0) {
			child_fail(r, "epoll_ctl: %s", strerror(errno));
			return -1;
		}
		return 0;
	}
	if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return 0;
	if (c->state != C_RECV) {
		/* An idle connection is readable only when the proxy closed or reset it. */
		char b;
		ssize_t n = recv(c->fd, &b, 1, MSG_DONTWAIT);

		if (n < 0 && errno == EAGAIN)
			return 0;
		child_fail(r, "an idle connection %s",
			   n == 0  ? "was closed by the proxy"
			   : n > 0 ? "received unexpected bytes"
				   : strerror(errno));
		return -1;
	}
	for (;;) {
		ssize_t n = recv(c->fd, rx, o.size - c->rcvd, MSG_DONTWAIT);

		if (n <= 0) {
			if (n < 0 && errno == EAGAIN)
				return 0;
			child_fail(r, "waiting for an echo: %s",
				   n == 0 ? "the connection was closed" : strerror(errno));
			return -1;
		}
		if (memcmp(rx, cconn_msg(c) + c->rcvd, (size_t)n) != 0) {
			child_fail(r, "the echo differs from the request");
			return -1;
		}
		c->rcvd += (uint32_t)n;
		if (c->rcvd == o.size)
			break;
	}
	r->verified += 2 * o.size;
	if (c->hello) {
		c->state = C_IDLE;
		r->established++;
		atomic_fetch_add(&sh->established, 1);
	} else {
		uint64_t t = now_ns();

		hist_add(&r->h, t - c->t0);
		if (t < sh->end_ns && r->h.count < o.max_count) {
			cconn_start(c, c->seq + 1, false);
			return cconn_io(ep, c, r, rx, EPOLLOUT, ndone);
		}
		c->state = C_DONE;
		(*ndone)++;
	}
	return 0;
}

static void child_rr(unsigned idx, unsigned n)
{
	struct child_res *r = &sh->res[idx];
	struct cconn *cs = calloc(n, sizeof(*cs));
	struct epoll_event evs[256];
	uint8_t *rx = malloc(o.size);
	unsigned next = 0, connecting = 0, ndone = 0, idle = 0;
	uint64_t last_progress;
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (!cs || !rx || ep < 0) {
		child_fail(r, "out of memory");
		return;
	}
	/* Open the connections, CONNECT_PACE at a time, each proven by one round trip. */
	last_progress = now_ns();
	while (r->established < n && !atomic_load(&sh->abort)) {
		while (connecting < CONNECT_PACE && next < n) {
			struct cconn *c = &cs[next];

			c->fd = new_socket(true);
			if (c->fd < 0) {
				child_fail(r, "socket: %s", strerror(errno));
				return;
			}
			c->seq = idx * 1000003ull + next;
			if (connect(c->fd, (struct sockaddr *)&o.addr, o.addrlen) < 0 &&
			    errno != EINPROGRESS) {
				if (errno == EAGAIN) {
					/* A Unix listener's backlog is full: try again later. */
					close(c->fd);
					break;
				}
				child_fail(r, "connect: %s", strerror(errno));
				return;
			}
			c->state = C_CONNECTING;
			if (cconn_watch(ep, c, EPOLLOUT, EPOLL_CTL_ADD) < 0) {
				child_fail(r, "epoll_ctl: %s", strerror(errno));
				return;
			}
			next++;
			connecting++;
		}
		int k = epoll_wait(ep, evs, 256, 10);

		for (int i = 0; i < k; i++) {
			struct cconn *c = evs[i].data.ptr;
			unsigned before = r->established;

			if (cconn_io(ep, c, r, rx, evs[i].events, &ndone) < 0)
				return;
			if (r->established > before) {
				connecting--;
				last_progress = now_ns();
			}
		}
		if (now_ns() - last_progress > (uint64_t)(o.stall * 1e9))
			break; /* the parent reports it */
	}
	if (!child_wait(&sh->go))
		return;

	/* Measure: every connection keeps one message in flight until end_ns. */
	for (unsigned i = 0; i < n; i++) {
		cconn_start(&cs[i], cs[i].seq + 1, false);
		if (cconn_io(ep, &cs[i], r, rx, EPOLLOUT, &ndone) < 0)
			return;
	}
	last_progress = now_ns();
	while (ndone < n && !atomic_load(&sh->abort)) {
		int k = epoll_wait(ep, evs, 256, 10);
		uint64_t before = r->h.count;

		for (int i = 0; i < k; i++)
			if (cconn_io(ep, evs[i].data.ptr, r, rx, evs[i].events, &ndone) < 0)
				return;
		if (r->h.count != before)
			last_progress = now_ns();
		else if (now_ns() - last_progress > (uint64_t)(o.stall * 1e9)) {
			for (unsigned i = 0; i < n; i++)
				idle += cs[i].state == C_RECV || cs[i].state == C_SEND;
			child_fail(r, "%u connections got no echo for %.1f s", idle, o.stall);
			return;
		}
	}
	atomic_fetch_add(&sh->quiet, 1);
	/* Hold the connections open while the parent measures the proxy. */
	child_wait(&sh->release);
}

static void child_connrate(unsigned idx)
{
	struct child_res *r = &sh->res[idx];
	struct bench_hdr h;
	uint8_t buf[sizeof(h) + 64], rx[64];
	const char *err;
	uint64_t seq = idx * 1000003ull;

	hdr_init(&h, BENCH_ECHO, 0);
	memcpy(buf, &h, sizeof(h));
	atomic_fetch_add(&sh->established, 1);
	if (!child_wait(&sh->go))
		return;
	while (r->h.count < o.max_count && !atomic_load(&sh->abort)) {
		uint64_t t0 = now_ns();
		const uint8_t *msg = pattern + (seq * RR_STRIDE) % BENCH_PERIOD;
		int fd;

		if (t0 >= sh->end_ns)
			break;
		fd = connect_blocking();
		if (fd < 0) {
			child_fail(r, "connect: %s", strerror(errno));
			return;
		}
		memcpy(buf + sizeof(h), msg, 64);
		if (send_all(fd, buf, sizeof(buf), &err) < 0 || recv_all(fd, rx, 64, &err) < 0) {
			close(fd);
			child_fail(r, "connection %llu: %s", (unsigned long long)r->h.count, err);
			return;
		}
		close(fd);
		if (memcmp(rx, msg, 64) != 0) {
			child_fail(r, "the echo differs from the request");
			return;
		}
		r->verified += 128;
		hist_add(&r->h, now_ns() - t0);
		seq++;
	}
	atomic_fetch_add(&sh->quiet, 1);
	/* Exit only when released: the parent takes a child that exits early for a crash. */
	child_wait(&sh->release);
}

/* Wait for a shared counter to reach want, giving up after stall seconds without progress. */
static bool parent_wait(_Atomic unsigned *v, unsigned want, double stall, double cap)
{
	uint64_t start = now_ns(), last = start;
	unsigned seen = atomic_load(v);

	while (atomic_load(v) < want) {
		uint64_t t = now_ns();

		if (atomic_load(&sh->abort))
			return false;
		if (atomic_load(v) != seen) {
			seen = atomic_load(v);
			last = t;
		}
		if (t - last > (uint64_t)(stall * 1e9) || t - start > (uint64_t)(cap * 1e9))
			return false;
		/* A child that died can't count any more. */
		if (waitpid(-1, NULL, WNOHANG) > 0) {
			atomic_store(&sh->abort, 1);
			return false;
		}
		sleep_ms(1);
	}
	return true;
}

static void run_multi(void)
{
	size_t size = sizeof(struct shared) + o.procs * sizeof(struct child_res);
	struct tree_sample t_idle = {}, t_busy0 = {}, t_busy1 = {}, t_held = {};
	struct cpu_sample c0 = {}, c1 = {};
	uint64_t mem_idle = 0, mem_held = 0, start = 0, end = 0, errors = 0, verified = 0;
	unsigned established = 0;
	static struct hist h;
	pid_t kids[MAX_PROCS];
	const char *reason = NULL, *child_reason = NULL;
	char why[512] = "", final[800];
	bool rr = o.test == T_RR;
	double cap = o.duration + 2 * o.stall + 30;
	bool ok;

	sh = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		fail("mmap: %s", strerror(errno));
	if (rr) {
		tree_read(&t_idle, true);
		mem_idle = mem_used_kb();
	}
	for (unsigned i = 0; i < o.procs; i++) {
		kids[i] = fork();
		if (kids[i] < 0)
			fail("fork: %s", strerror(errno));
		if (kids[i] == 0) {
			/* Spread connections evenly: the first ones get the remainder. */
			unsigned n = o.conns / o.procs + (i < o.conns % o.procs);

			if (rr)
				child_rr(i, n);
			else
				child_connrate(i);
			_exit(0);
		}
	}

	/* Every connection proven by one round trip; stalls fail the level. */
	ok = parent_wait(&sh->established, rr ? o.conns : o.procs, o.stall,
			 o.stall + 60 + o.conns / 100.0);
	established = atomic_load(&sh->established);
	if (!ok) {
		snprintf(why, sizeof(why),
			 "%u of %u connections completed their first round trip "
			 "(no progress for %.1f s or a failure)",
			 established, rr ? o.conns : o.procs, o.stall);
		reason = why;
	}
	if (ok) {
		if (rr)
			tree_read(&t_busy0, false);
		cpu_read(&c0);
		start = now_ns();
		sh->end_ns = start + (uint64_t)(o.duration * 1e9);
		atomic_store(&sh->go, 1);
		/*
		 * The children detect stalls themselves (no echo for --stall s); the count of
		 * finished children only moves at the end, so only the overall cap applies here.
		 */
		ok = parent_wait(&sh->quiet, o.procs, cap, cap);
		end = now_ns();
		cpu_read(&c1);
		if (!ok && !why[0]) {
			snprintf(why, sizeof(why), "the measurement did not finish");
			reason = why;
		}
	}
	if (ok && rr) {
		/* The connections are open and quiet: what does the proxy hold for them? */
		tree_read(&t_busy1, false);
		tree_read(&t_held, true);
		mem_held = mem_used_kb();
	} else if (!ok && o.watch) {
		/* Still held: say how many fds the proxy had when it stopped keeping up. */
		tree_read(&t_held, true);
		size_t l = strlen(why);

		snprintf(why + l, sizeof(why) - l,
			 "; the proxy had %llu fds open in %u process(es)",
			 (unsigned long long)t_held.fds, t_held.procs);
		reason = why;
		report_tree("proxy_at_failure", &t_held);
	}
	atomic_store(&sh->abort, !ok);
	atomic_store(&sh->release, 1);
	for (unsigned i = 0; i < o.procs; i++) {
		uint64_t deadline = now_ns() + 10 * NSEC_PER_SEC;

		while (waitpid(kids[i], NULL, WNOHANG) == 0) {
			if (now_ns() > deadline) {
				kill(kids[i], SIGKILL);
				waitpid(kids[i], NULL, 0);
				break;
			}
			sleep_ms(1);
		}
	}
	for (unsigned i = 0; i < o.procs; i++) {
		hist_merge(&h, &sh->res[i].h);
		errors += sh->res[i].errors;
		verified += sh->res[i].verified;
		if (!child_reason && sh->res[i].reason[0])
			child_reason = sh->res[i].reason;
	}
	/* A child's own error says most; the parent's adds how far it got. */
	if (child_reason) {
		snprintf(final, sizeof(final), "%s%s%s", child_reason, why[0] ? "; " : "", why);
		reason = final;
	}

	ju64("established", established);
	ju64("errors", errors);
	if (ok) {
		report_rr(&h, end - start, &c0, &c1);
	}
	if (ok && rr && o.watch) {
		jnum("proxy_wakeups_per_rr",
		     (double)(t_busy1.ctxt - t_busy0.ctxt) / (double)h.count);
		report_tree("proxy_idle", &t_idle);
		report_tree("proxy_held", &t_held);
		jnum("fds_per_conn", ((double)t_held.fds - (double)t_idle.fds) / o.conns);
		jnum("rss_kb_per_conn", ((double)t_held.rss_kb - (double)t_idle.rss_kb) / o.conns);
		jnum("pss_kb_per_conn", ((double)t_held.pss_kb - (double)t_idle.pss_kb) / o.conns);
	}
	if (ok && rr)
		jnum("machine_kb_per_conn", ((double)mem_held - (double)mem_idle) / o.conns);
	ju64("verified_bytes", verified);
	if (ok && !errors)
		jadd(",\"verified\":true");
	hist_write(&h, o.hist_path);
	if (!ok || errors)
		finish(reason ? reason : "errors");
	finish(NULL);
}

static __attribute__((noreturn)) void usage(void)
{
	fprintf(stderr,
		"usage: bench-client --connect ADDR --test probe|rr|up|down|connrate [--size N]\n"
		"       [--conns N] [--procs N] [--duration S] [--max-count N] [--stall S]\n"
		"       [--watch-pid PID] [--hist FILE]\n"
		"ADDR is /path, unix:/path or IPv4:PORT. --size takes K, M and G suffixes.\n");
	exit(2);
}

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 10);

	switch (*end) {
	case 'K':
		return v << 10;
	case 'M':
		return v << 20;
	case 'G':
		return v << 30;
	case '\0':
		return v;
	default:
		usage();
	}
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {{"connect", required_argument, NULL, 'c'},
						 {"test", required_argument, NULL, 't'},
						 {"size", required_argument, NULL, 's'},
						 {"conns", required_argument, NULL, 'n'},
						 {"procs", required_argument, NULL, 'p'},
						 {"duration", required_argument, NULL, 'd'},
						 {"max-count", required_argument, NULL, 'm'},
						 {"stall", required_argument, NULL, 'S'},
						 {"watch-pid", required_argument, NULL, 'w'},
						 {"hist", required_argument, NULL, 'H'},
						 {}};
	const char *addr = NULL, *test = NULL;
	int c;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			addr = optarg;
			break;
		case 't':
			test = optarg;
			break;
		case 's':
			o.size = parse_size(optarg);
			break;
		case 'n':
			o.conns = (unsigned)atoi(optarg);
			break;
		case 'p':
			o.procs = (unsigned)atoi(optarg);
			break;
		case 'd':
			o.duration = atof(optarg);
			break;
		case 'm':
			o.max_count = strtoull(optarg, NULL, 10);
			break;
		case 'S':
			o.stall = atof(optarg);
			break;
		case 'w':
			o.watch = atoi(optarg);
			break;
		case 'H':
			o.hist_path = optarg;
			break;
		default:
			usage();
		}
	}
	if (!addr || !test || parse_addr(addr) < 0 || o.conns < 1 || o.procs < 1 ||
	    o.procs > MAX_PROCS || o.stall <= 0 || o.duration <= 0)
		usage();
	if (!strcmp(test, "probe"))
		o.test = T_PROBE;
	else if (!strcmp(test, "rr"))
		o.test = T_RR;
	else if (!strcmp(test, "up"))
		o.test = T_UP;
	else if (!strcmp(test, "down"))
		o.test = T_DOWN;
	else if (!strcmp(test, "connrate"))
		o.test = T_CONNRATE;
	else
		usage();
	if (o.test == T_RR && (o.size < 1 || o.size > MAX_MSG))
		usage();
	if (o.procs > o.conns && o.test == T_RR)
		o.procs = o.conns;
	signal(SIGPIPE, SIG_IGN);

	pattern = bench_pattern_new();
	if (!pattern)
		fail("out of memory");
	switch (o.test) {
	case T_PROBE:
		run_probe();
		break;
	case T_RR:
		if (o.conns == 1)
			run_rr1();
		else
			run_multi();
		break;
	case T_UP:
	case T_DOWN:
		run_bulk(o.test == T_UP);
		break;
	case T_CONNRATE:
		run_multi();
		break;
	}
	return 0;
}
