// SPDX-License-Identifier: GPL-2.0
/*
 * The counters as Prometheus text (exposition format 0.0.4) or OpenMetrics 1.0 (see metrics.h).
 *
 * The two formats differ in little: OpenMetrics names a counter's family without "_total" (its
 * samples have it), has an info type and "# UNIT", and ends with "# EOF"; the text format names
 * the family as its samples and has no info type, so sockredir_info is a gauge there. Everything
 * else, samples and escapes included, is written alike, in a form that both accept.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "../bpf/sockredir.h"
#include "metrics-table.h"
#include "metrics.h"
#include "options.h"
#include "stats.h"

/*
 * The proxy's counters and the per-backend table are pages that every worker adds to while this
 * reads them: each field is one relaxed atomic load, so none is torn. They need no order
 * between them, except where a family says so.
 */
#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

enum family_type {
	FAMILY_COUNTER,
	FAMILY_GAUGE,
	FAMILY_INFO,
	FAMILY_HISTOGRAM,
};

/* Which inputs have samples in a family: a family none of them has is left out. */
enum family_needs {
	NEEDS_PROXY, /* every input */
	NEEDS_KERNEL,
	NEEDS_SHARED,
};

struct writer;

struct family {
	/* As OpenMetrics names the family: a counter's without "_total", the info's without "_info". */
	const char *name;
	enum family_type type;
	const char *unit; /* NULL, or the base unit the name ends with */
	enum family_needs needs;
	/* No backslash, double quote or newline, which the formats would escape differently. */
	const char *help;
	void (*write)(struct writer *w, const struct metrics_input *in);
};

struct writer {
	FILE *f;
	enum metrics_format fmt;
	const struct family *fam; /* being written */
	const char *instance;	  /* of the input being written, or NULL */
};

/* One label of a sample; max bounds a value kept in a fixed-size field (0: a C string). */
struct label {
	const char *name;
	const char *value;
	size_t max;
};

/*
 * The length of the valid UTF-8 sequence that starts at p, with at most avail bytes, or 0 if
 * there is none: no overlong forms, no surrogates, nothing above U+10FFFF (RFC 3629). A NUL is
 * no continuation byte, so this stops at the end of a string.
 */
static size_t utf8_valid_len(const uint8_t *p, size_t avail)
{
	uint8_t lo = 0x80, hi = 0xbf;
	size_t len;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3;
		if (p[0] == 0xe0)
			lo = 0xa0;
		else if (p[0] == 0xed)
			hi = 0x9f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4;
		if (p[0] == 0xf0)
			lo = 0x90;
		else if (p[0] == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (len > avail || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return len;
}

/*
 * A label value, at most max bytes of s. Label values come from the configuration (routes and
 * backends as given), where a Unix socket path may hold any byte but NUL, while both formats
 * want valid UTF-8 with backslash, double quote and newline escaped as \\, \" and \n. So:
 *   - those three are escaped so;
 *   - a byte that is not part of valid UTF-8, any other control character (U+0000..U+001F,
 *     U+007F, and U+0080..U+009F byte by byte), and '%' itself are written as %XX, uppercase hex;
 *   - every other byte is written as it is.
 * Undoing the backslash escapes, then every %XX, gives back the configured bytes exactly, and the
 * output is always valid UTF-8. An abstract socket backend is configured as "@name", and shows so.
 */
static void write_label_value(FILE *f, const char *s, size_t max)
{
	static const char hex[] = "0123456789ABCDEF";
	const uint8_t *p = (const uint8_t *)s;

	for (size_t i = 0; i < max && p[i];) {
		uint8_t c = p[i];
		size_t len;

		if (c == '\\' || c == '"' || c == '\n') {
			fputc('\\', f);
			fputc(c == '\n' ? 'n' : c, f);
			i++;
			continue;
		}
		if (c >= 0x20 && c < 0x7f && c != '%') {
			fputc(c, f);
			i++;
			continue;
		}
		/* C1 controls are U+0080..U+009F, "\xc2\x80".."\xc2\x9f": not taken whole here. */
		len = c >= 0x80 ? utf8_valid_len(p + i, max - i) : 0;
		if (len > 0 && !(c == 0xc2 && p[i + 1] <= 0x9f)) {
			fwrite(p + i, 1, len, f);
			i += len;
			continue;
		}
		fputc('%', f);
		fputc(hex[c >> 4], f);
		fputc(hex[c & 0xf], f);
		i++;
	}
}

/*
 * µs as seconds in the canonical form OpenMetrics wants for le="": "0.00025", "1.0", "2.5", never
 * "1" or an exponent. The text format takes it too. Exact: no float on the way.
 */
static void format_seconds(char *buf, size_t size, uint64_t usec)
{
	uint64_t frac = usec % USEC_PER_SEC;
	int digits = 6;

	if (frac == 0) {
		snprintf(buf, size, "%" PRIu64 ".0", usec / USEC_PER_SEC);
		return;
	}
	for (; frac % 10 == 0; frac /= 10)
		digits--;
	snprintf(buf, size, "%" PRIu64 ".%0*" PRIu64, usec / USEC_PER_SEC, digits, frac);
}

/* The suffix of a family's samples, after its OpenMetrics name. */
static const char *sample_suffix(enum family_type type)
{
	return type == FAMILY_COUNTER ? "_total" : type == FAMILY_INFO ? "_info" : "";
}

static void write_family_header(struct writer *w)
{
	const struct family *fam = w->fam;

	if (w->fmt == METRICS_OPENMETRICS) {
		static const char *const types[] = {
			[FAMILY_COUNTER] = "counter",
			[FAMILY_GAUGE] = "gauge",
			[FAMILY_INFO] = "info",
			[FAMILY_HISTOGRAM] = "histogram",
		};

		fprintf(w->f, "# TYPE %s %s\n", fam->name, types[fam->type]);
		if (fam->unit)
			fprintf(w->f, "# UNIT %s %s\n", fam->name, fam->unit);
		fprintf(w->f, "# HELP %s %s\n", fam->name, fam->help);
	} else {
		/* The text format has no info type: sockredir_info is a gauge of 1, as is usual. */
		static const char *const types[] = {
			[FAMILY_COUNTER] = "counter",
			[FAMILY_GAUGE] = "gauge",
			[FAMILY_INFO] = "gauge",
			[FAMILY_HISTOGRAM] = "histogram",
		};
		const char *suffix = sample_suffix(fam->type);

		fprintf(w->f, "# HELP %s%s %s\n", fam->name, suffix, fam->help);
		fprintf(w->f, "# TYPE %s%s %s\n", fam->name, suffix, types[fam->type]);
	}
}

/* NAME{labels} before the value: the input's instance label first, if it has one. */
static void write_sample_head(struct writer *w, const char *suffix, const struct label *l, size_t n)
{
	bool first = true;

	fputs(w->fam->name, w->f);
	fputs(suffix ?: sample_suffix(w->fam->type), w->f);
	if (w->instance || n > 0)
		fputc('{', w->f);
	if (w->instance) {
		fputs("name=\"", w->f);
		write_label_value(w->f, w->instance, SIZE_MAX);
		fputc('"', w->f);
		first = false;
	}
	for (size_t i = 0; i < n; i++, first = false) {
		fprintf(w->f, "%s%s=\"", first ? "" : ",", l[i].name);
		write_label_value(w->f, l[i].value, l[i].max ?: SIZE_MAX);
		fputc('"', w->f);
	}
	if (w->instance || n > 0)
		fputc('}', w->f);
	fputc(' ', w->f);
}

/* A sample; suffix NULL: the family's usual one ("_total" for a counter). */
static void sample(struct writer *w, const char *suffix, const struct label *l, size_t n,
		   uint64_t v)
{
	write_sample_head(w, suffix, l, n);
	fprintf(w->f, "%" PRIu64 "\n", v);
}

/* A sample's labels, as the two arguments (array, count) that sample() takes. */
#define L(n, v)	       ((struct label){ .name = (n), .value = (v) })
#define LB(n, v, size) ((struct label){ .name = (n), .value = (v), .max = (size) })
#define LABELS(...) \
	(const struct label[]){ __VA_ARGS__ }, ELEMENTSOF(((const struct label[]){ __VA_ARGS__ }))

static void write_info(struct writer *w, const struct metrics_input *in)
{
	const char *dispatch = !in->kernel			     ? "splice" :
			       LOAD(in->proxy->upload_kernel)	     ? "kernel_both" :
			       LOAD(in->proxy->mode) == SR_MODE_AUTO ? "adaptive" :
								       "kernel_download";
	const char *mode = mode_to_string(LOAD(in->proxy->mode));

	if (in->version)
		sample(w, NULL,
		       LABELS(L("version", in->version), L("mode", mode), L("dispatch", dispatch)),
		       1);
	else
		sample(w, NULL, LABELS(L("mode", mode), L("dispatch", dispatch)), 1);
}

static void write_accepted(struct writer *w, const struct metrics_input *in)
{
	sample(w, NULL, NULL, 0, LOAD(in->proxy->accepted));
}

static void write_open(struct writer *w, const struct metrics_input *in)
{
	sample(w, NULL, NULL, 0, LOAD(in->proxy->open));
}

static void write_kept(struct writer *w, const struct metrics_input *in)
{
	sample(w, NULL, NULL, 0, LOAD(in->proxy->kept));
}

static void write_restored(struct writer *w, const struct metrics_input *in)
{
	sample(w, NULL, NULL, 0, LOAD(in->proxy->restored));
}

static void write_restore_closed(struct writer *w, const struct metrics_input *in)
{
	sample(w, NULL, NULL, 0, LOAD(in->proxy->restore_closed));
}

static void write_store_fds(struct writer *w, const struct metrics_input *in)
{
	sample(w, NULL, NULL, 0, LOAD(in->proxy->store_fds));
}

static const char *const dirs[_SR_DIR_MAX] = { [SR_DIR_DOWN] = "down", [SR_DIR_UP] = "up" };

/*
 * One series per mover that exists: copy and splice always, the kernel and by hand on the kernel
 * path. The mover label takes the names of stats_mover_name(), and by_hand.
 */
static void write_bytes(struct writer *w, const struct metrics_input *in)
{
	const struct sr_proxy_stats *p = in->proxy;

	for (int d = 0; d < _SR_DIR_MAX; d++) {
		sample(w, NULL, LABELS(L("direction", dirs[d]), L("mover", "copy")),
		       LOAD(p->copied_bytes[d]));
		sample(w, NULL, LABELS(L("direction", dirs[d]), L("mover", "splice")),
		       LOAD(p->spliced_bytes[d]));
		if (!in->kernel)
			continue;
		sample(w, NULL, LABELS(L("direction", dirs[d]), L("mover", "kernel")),
		       LOAD(in->kernel->bytes[d]));
		sample(w, NULL, LABELS(L("direction", dirs[d]), L("mover", "by_hand")),
		       d == SR_DIR_DOWN ? LOAD(p->flushed_bytes) : LOAD(p->flushed_bytes_up));
	}
}

/*
 * The mover a flow was promoted to, per direction: splice, and for a download, the kernel path
 * (the kernel's series only where there is one, as for the bytes).
 */
static void write_promotions(struct writer *w, const struct metrics_input *in)
{
	for (int d = 0; d < _SR_DIR_MAX; d++)
		sample(w, NULL, LABELS(L("direction", dirs[d]), L("mover", "splice")),
		       LOAD(in->proxy->promoted_splice[d]));
	if (in->kernel)
		sample(w, NULL, LABELS(L("direction", "down"), L("mover", "kernel")),
		       LOAD(in->proxy->promoted_kernel));
}

/* As the bytes: the kernel's series only where there is a kernel path. */
static void write_carried(struct writer *w, const struct metrics_input *in)
{
	for (int i = 0; i < _SR_MOVER_MAX; i++) {
		if (i == SR_MOVER_KERNEL && !in->kernel)
			continue;
		sample(w, NULL, LABELS(L("mover", stats_mover_name(i))),
		       LOAD(in->proxy->carried[i]));
	}
}

static void write_fallbacks(struct writer *w, const struct metrics_input *in)
{
	for (int i = SR_FALLBACK_NONE + 1; i < _SR_FALLBACK_MAX; i++)
		sample(w, NULL, LABELS(L("reason", stats_fallback_name(i))),
		       LOAD(in->proxy->fallback[i]));
}

static void write_connect_failures(struct writer *w, const struct metrics_input *in)
{
	sample(w, NULL, NULL, 0, LOAD(in->proxy->connect_failed));
}

static void write_peek_failures(struct writer *w, const struct metrics_input *in)
{
	sample(w, NULL, NULL, 0, LOAD(in->proxy->peek_failed));
}

static void write_idle_closed(struct writer *w, const struct metrics_input *in)
{
	sample(w, NULL, NULL, 0, LOAD(in->proxy->idle_closed));
}

static void write_reloads(struct writer *w, const struct metrics_input *in)
{
	sample(w, NULL, LABELS(L("result", "ok")), LOAD(in->proxy->reloads));
	sample(w, NULL, LABELS(L("result", "failed")), LOAD(in->proxy->reloads_failed));
}

static void write_workers(struct writer *w, const struct metrics_input *in)
{
	sample(w, NULL, NULL, 0, LOAD(in->proxy->workers));
}

static void write_redirect_failures(struct writer *w, const struct metrics_input *in)
{
	sample(w, NULL, NULL, 0, LOAD(in->kernel->redirect_failed));
}

static void write_held_skbs(struct writer *w, const struct metrics_input *in)
{
	sample(w, NULL, NULL, 0, LOAD(in->kernel->held));
}

/* Counted by the proxy, but only the kernel path checks a psock backlog. */
static void write_drain_checks(struct writer *w, const struct metrics_input *in)
{
	sample(w, NULL, NULL, 0, LOAD(in->proxy->drain_checks));
}

/* One sample per route and backend pair, of value(pair). */
static void write_backends(struct writer *w, const struct metrics_input *in,
			   uint64_t (*value)(const struct sr_backend_metrics *b, uint64_t now))
{
	const struct sr_metrics_shared *s = in->shared;
	/* Acquire, paired with the release of metrics_table_slot(): the slots below are filled. */
	uint32_t n = MIN(__atomic_load_n(&s->n_backends, __ATOMIC_ACQUIRE), SR_METRICS_BACKENDS);

	for (uint32_t i = 0; i < n; i++) {
		const struct sr_backend_metrics *b = &s->backends[i];

		if (!__atomic_load_n(&b->used, __ATOMIC_ACQUIRE))
			continue;
		sample(w, NULL,
		       LABELS(LB("route", b->route, sizeof(b->route)),
			      LB("backend", b->backend, sizeof(b->backend))),
		       value(b, in->now));
	}
}

static uint64_t backend_open(const struct sr_backend_metrics *b, uint64_t now)
{
	return LOAD(b->open);
}

static uint64_t backend_connect_failures(const struct sr_backend_metrics *b, uint64_t now)
{
	return LOAD(b->connect_failures);
}

static uint64_t backend_up(const struct sr_backend_metrics *b, uint64_t now)
{
	return now >= LOAD(b->down_until) ? 1 : 0;
}

static void write_backend_open(struct writer *w, const struct metrics_input *in)
{
	write_backends(w, in, backend_open);
}

static void write_backend_connect_failures(struct writer *w, const struct metrics_input *in)
{
	write_backends(w, in, backend_connect_failures);
}

static void write_backend_up(struct writer *w, const struct metrics_input *in)
{
	write_backends(w, in, backend_up);
}

static void write_table_full(struct writer *w, const struct metrics_input *in)
{
	sample(w, NULL, NULL, 0, LOAD(in->shared->full));
}

static void write_connect_duration(struct writer *w, const struct metrics_input *in)
{
	static const uint64_t bounds[SR_CONNECT_BUCKETS] = SR_CONNECT_BUCKETS_USEC;
	const struct sr_metrics_shared *s = in->shared;
	uint64_t count = 0;
	char le[32];

	/*
	 * Both formats want _count equal to the +Inf bucket, but workers add to the buckets and to
	 * connect_count one after the other while this reads. So the count is the sum of the
	 * buckets as read, and connect_count is not used; _sum may be a connect ahead or behind.
	 */
	for (size_t i = 0; i <= SR_CONNECT_BUCKETS; i++) {
		count += LOAD(s->connect_buckets[i]);
		if (i < SR_CONNECT_BUCKETS)
			format_seconds(le, sizeof(le), bounds[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		sample(w, "_bucket", LABELS(L("le", le)), count);
	}
	sample(w, "_count", NULL, 0, count);
	format_seconds(le, sizeof(le), LOAD(s->connect_sum_usec));
	write_sample_head(w, "_sum", NULL, 0);
	fprintf(w->f, "%s\n", le);
}

static const struct family families[] = {
	{ "sockredir", FAMILY_INFO, NULL, NEEDS_PROXY,
	  "The version, the configured --mode, and how connections are dispatched: splice "
	  "(userspace: recv/send, then splice for bulk), kernel_download (the kernel path, upload "
	  "in userspace), adaptive (--mode auto: kernel_download while no more connections are "
	  "open than CPUs, else splice) or kernel_both (--kernel-upload).",
	  write_info },
	{ "sockredir_connections_accepted", FAMILY_COUNTER, NULL, NEEDS_PROXY,
	  "Client connections accepted.", write_accepted },
	{ "sockredir_connections_open", FAMILY_GAUGE, NULL, NEEDS_PROXY, "Connections open now.",
	  write_open },
	{ "sockredir_connections_kept", FAMILY_GAUGE, NULL, NEEDS_PROXY,
	  "Connections whose fds are in systemd's fd store now, to outlive a restart or a crash.",
	  write_kept },
	{ "sockredir_connections_restored", FAMILY_COUNTER, NULL, NEEDS_PROXY,
	  "Connections taken over from the previous process, kept across a restart or a crash.",
	  write_restored },
	{ "sockredir_connections_restore_closed", FAMILY_COUNTER, NULL, NEEDS_PROXY,
	  "Kept connections that could not be taken over from the previous process: closed with "
	  "a FIN.",
	  write_restore_closed },
	{ "sockredir_fdstore_fds", FAMILY_GAUGE, NULL, NEEDS_PROXY,
	  "fds sockredir holds in systemd's fd store now, for its connections and its BPF maps; "
	  "FileDescriptorStoreMax= bounds them.",
	  write_store_fds },
	{ "sockredir_connections_carried", FAMILY_COUNTER, NULL, NEEDS_PROXY,
	  "Closed connections, by the fastest mover they used: copy (recv and send), splice, or "
	  "kernel (the download in the kernel).",
	  write_carried },
	{ "sockredir_bytes", FAMILY_COUNTER, "bytes", NEEDS_PROXY,
	  "Bytes moved, by direction (up: client to backend) and mover: kernel (sockmap redirect), "
	  "splice (userspace), copy (recv and send, userspace), by_hand (on the kernel path, bytes "
	  "queued before it took over or held while it settled).",
	  write_bytes },
	{ "sockredir_promotions", FAMILY_COUNTER, NULL, NEEDS_PROXY,
	  "Flows moved mid-connection, by direction and the mover they moved to: splice (from "
	  "recv and send), kernel (a spliced download, at a request boundary).",
	  write_promotions },
	{ "sockredir_fallbacks", FAMILY_COUNTER, NULL, NEEDS_PROXY,
	  "Connections carried by splice instead of the kernel path, by reason.", write_fallbacks },
	{ "sockredir_connect_failures", FAMILY_COUNTER, NULL, NEEDS_PROXY,
	  "Clients closed because no backend of their route could be reached.",
	  write_connect_failures },
	{ "sockredir_peek_failures", FAMILY_COUNTER, NULL, NEEDS_PROXY,
	  "Connections closed without a valid Host or SNI (malformed, too long or too slow).",
	  write_peek_failures },
	{ "sockredir_idle_closed", FAMILY_COUNTER, NULL, NEEDS_PROXY,
	  "Connections closed by --idle-timeout.", write_idle_closed },
	{ "sockredir_reloads", FAMILY_COUNTER, NULL, NEEDS_PROXY,
	  "SIGHUP reloads, by result (failed: the old configuration stayed).", write_reloads },
	{ "sockredir_workers", FAMILY_GAUGE, NULL, NEEDS_PROXY,
	  "Processes serving connections (--workers).", write_workers },
	{ "sockredir_kernel_redirect_failures", FAMILY_COUNTER, NULL, NEEDS_KERNEL,
	  "skbs the kernel path could not redirect: the target socket had left sr_targets.",
	  write_redirect_failures },
	{ "sockredir_kernel_held_skbs", FAMILY_COUNTER, NULL, NEEDS_KERNEL,
	  "skbs kept on their socket for the proxy to read, instead of redirected.",
	  write_held_skbs },
	{ "sockredir_kernel_drain_checks", FAMILY_COUNTER, NULL, NEEDS_KERNEL,
	  "Checks of a socket's psock backlog before a shutdown or close.", write_drain_checks },
	{ "sockredir_backend_connections_open", FAMILY_GAUGE, NULL, NEEDS_SHARED,
	  "Connections open to the backend of the route now, from connect to close.",
	  write_backend_open },
	{ "sockredir_backend_connect_failures", FAMILY_COUNTER, NULL, NEEDS_SHARED,
	  "Failed connects to the backend of the route.", write_backend_connect_failures },
	{ "sockredir_backend_up", FAMILY_GAUGE, NULL, NEEDS_SHARED,
	  "0 while passive health checks hold the backend of the route down, else 1.",
	  write_backend_up },
	{ "sockredir_metrics_table_full", FAMILY_GAUGE, NULL, NEEDS_SHARED,
	  "1 when some route and backend pairs have no per-backend series: more than 256.",
	  write_table_full },
	{ "sockredir_connect_duration_seconds", FAMILY_HISTOGRAM, "seconds", NEEDS_SHARED,
	  "Time from choosing a route to a connected backend, with failover and retries.",
	  write_connect_duration },
};

static bool input_has(const struct metrics_input *in, enum family_needs needs)
{
	switch (needs) {
	case NEEDS_KERNEL:
		return in->kernel;
	case NEEDS_SHARED:
		return in->shared;
	default:
		return true;
	}
}

int metrics_write(FILE *f, const struct metrics_input *in, size_t n, enum metrics_format fmt)
{
	struct writer w = { .f = f, .fmt = fmt };

	/* Both formats want each family once, so it takes the samples of every input in turn. */
	for (size_t i = 0; i < ELEMENTSOF(families); i++) {
		bool header = false;

		w.fam = &families[i];
		for (size_t j = 0; j < n; j++) {
			if (!input_has(&in[j], w.fam->needs))
				continue;
			if (!header)
				write_family_header(&w);
			header = true;
			w.instance = in[j].instance;
			w.fam->write(&w, &in[j]);
		}
	}
	if (fmt == METRICS_OPENMETRICS)
		fputs("# EOF\n", f);

	/* stdio keeps the first error: one check at the end covers every write. */
	if (fflush(f) == EOF)
		return negative_errno();
	return ferror(f) ? -EIO : 0;
}

const char *metrics_content_type(enum metrics_format fmt)
{
	return fmt == METRICS_OPENMETRICS ?
		       "application/openmetrics-text; version=1.0.0; charset=utf-8" :
		       "text/plain; version=0.0.4; charset=utf-8";
}
