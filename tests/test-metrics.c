// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for the metrics renderer (user/metrics.c): fixed inputs, with label bytes that need
 * every kind of escape, in Prometheus text and OpenMetrics. Checks exact lines of a few
 * families, the structure both formats require (TYPE before a family's samples, each family
 * once and its samples together, "# EOF" last), cumulative buckets with _count equal to +Inf,
 * that label values always decode back to the configured bytes, and the Accept negotiation.
 *
 * `test-metrics --dump text|openmetrics` prints the rendering of the fixed inputs instead, for
 * `promtool check metrics` and other outside checkers (tests/t-unit.sh).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bpf/sockredir.h"
#include "../user/metrics-table.h"
#include "../user/metrics-accept.h"
#include "../user/metrics.h"
#include "../user/util.h"

#include "check.h"

#define NOW UINT64_C(5000000000)

/* "@abstract-name", and one with every kind of byte a label escape must handle. */
#define ODD_ROUTE "host:q\"uote\\back"
#define ODD_BACKEND                                                                            \
	"/run/new\nline%pct\xff\xfe\xc3\xa9\x01\xc2\x85\xc0\xaf\xed\xa0\x80\xf0\x9f\x98\x80\t" \
	".sock\xe2\x82"
#define ODD_BACKEND_ESCAPED                                                              \
	"/run/new\\nline%25pct%FF%FE\xc3\xa9%01%C2%85%C0%AF%ED%A0%80\xf0\x9f\x98\x80%09" \
	".sock%E2%82"
/* Their labels, escaped. */
#define ODD_LABELS "route=\"host:q\\\"uote\\\\back\",backend=\"" ODD_BACKEND_ESCAPED "\""

static struct sr_proxy_stats proxy_kernel = {
	.accepted = 1218, /* kernel + fallbacks */
	.open = 3,
	.kernel = 1203,
	.fallback = { [SR_FALLBACK_CLIENT_STATE] = 1, [SR_FALLBACK_CLIENT_UNIX] = 14 },
	.connect_failed = 2,
	.spliced_bytes = { [SR_DIR_DOWN] = 0, [SR_DIR_UP] = 25165984 },
	.flushed_bytes = 17,
	.flushed_bytes_up = 19,
	.drain_checks = 1203,
	.peek_failed = 4,
	.idle_closed = 5,
	.reloads = 6,
	.reloads_failed = 1,
	.workers = 2,
	.mode = 1,
	.kept = 3,
	.restored = 11,
	.restore_closed = 12,
	.store_fds = 13,
	.copied_bytes = { [SR_DIR_DOWN] = 21, [SR_DIR_UP] = 22 },
	.promoted_splice = { [SR_DIR_DOWN] = 23, [SR_DIR_UP] = 24 },
	.carried = { [SR_MOVER_COPY] = 26, [SR_MOVER_SPLICE] = 27, [SR_MOVER_KERNEL] = 28 },
	.promoted_kernel = 29,
};

static struct sr_kstats kstats = {
	.bytes = { [SR_DIR_DOWN] = 8388688, [SR_DIR_UP] = 0 },
	.redirect_failed = 7,
	.held = 8,
};

static struct sr_proxy_stats proxy_splice = {
	.accepted = 10,
	.fallback = { [SR_FALLBACK_MODE] = 10 },
	.spliced_bytes = { [SR_DIR_DOWN] = 100, [SR_DIR_UP] = 200 },
	.copied_bytes = { [SR_DIR_DOWN] = 30, [SR_DIR_UP] = 31 },
	.promoted_splice = { [SR_DIR_UP] = 32 },
	.carried = { [SR_MOVER_COPY] = 33, [SR_MOVER_SPLICE] = 34 },
	.workers = 1,
	.mode = 2,
};

static struct sr_metrics_shared shared;

static void fill_shared(void)
{
	/* Per bucket: 0..99 µs: 1, ..., 1 s..2.5 s: 2, +Inf: 3. */
	static const uint64_t per_bucket[SR_CONNECT_BUCKETS + 1] = { 1, 0, 4, 0, 0, 0, 0, 0,
								     0, 0, 0, 0, 0, 2, 0, 3 };
	struct sr_backend_metrics *b = shared.backends;

	memset(&shared, 0, sizeof(shared));
	snprintf(b[0].route, sizeof(b[0].route), "default");
	snprintf(b[0].backend, sizeof(b[0].backend), "@abstract-name");
	b[0].open = 3;
	b[0].used = 1;
	snprintf(b[1].route, sizeof(b[1].route), "%s", ODD_ROUTE);
	snprintf(b[1].backend, sizeof(b[1].backend), "%s", ODD_BACKEND);
	b[1].connect_failures = 9;
	b[1].down_until = NOW + 1; /* down */
	b[1].used = 1;
	/* A slot being claimed: counted in n_backends, not yet used. Skipped. */
	snprintf(b[2].route, sizeof(b[2].route), "listener:half");
	/* No NUL in the whole field: the label ends with the field. */
	memset(b[3].backend, 'b', sizeof(b[3].backend));
	snprintf(b[3].route, sizeof(b[3].route), "listener:web");
	b[3].open = 1;
	b[3].used = 1;
	shared.n_backends = 4;
	shared.full = 1;
	memcpy(shared.connect_buckets, per_bucket, sizeof(per_bucket));
	/* Not the buckets' sum (a worker between two adds): the output must not use it. */
	shared.connect_count = 99;
	shared.connect_sum_usec = 12345678;
}

/* The kernel path instance, with the shared table; alone, or with a splice-only one. */
static size_t make_inputs(struct metrics_input in[2], bool two)
{
	fill_shared();
	in[0] = (struct metrics_input){
		.proxy = &proxy_kernel,
		.kernel = &kstats,
		.shared = &shared,
		.version = "0.1.0",
		.now = NOW,
	};
	if (!two)
		return 1;
	in[0].instance = "web";
	in[1] = (struct metrics_input){
		.instance = "api@2",
		.proxy = &proxy_splice,
		.version = "0.1.0",
		.now = NOW,
	};
	return 2;
}

static char *render(const struct metrics_input *in, size_t n, enum metrics_format fmt)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f;
	int r;

	f = open_memstream(&buf, &size);
	if (!f)
		return NULL;
	r = metrics_write(f, in, n, fmt);
	fclose(f);
	if (!CHECK(r == 0, "metrics_write: %s", strerror(-r)))
		return mfree(buf);
	return buf;
}

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

#define CHECK_LINE(text, line) CHECK(has_line(text, line), "missing line: %s", line)
#define CHECK_NO(text, s)      CHECK(!strstr(text, s), "unexpected: %s", s)

static bool utf8_valid(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n;) {
		uint32_t c = p[i];
		size_t len = c < 0x80	    ? 1 :
			     (c >> 5) == 6  ? 2 :
			     (c >> 4) == 14 ? 3 :
			     (c >> 3) == 30 ? 4 :
					      0;

		if (len == 0 || i + len > n)
			return false;
		if (len > 1)
			c &= 0x3f >> (len - 1);
		for (size_t k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			c = c << 6 | (p[i + k] & 0x3f);
		}
		if ((len == 2 && c < 0x80) || (len == 3 && c < 0x800) ||
		    (len == 4 && c < 0x10000) || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

/* Is name the family fam's, or one of its samples (by type and format)? */
static bool sample_of(const char *name, size_t n, const char *fam, const char *type,
		      enum metrics_format fmt)
{
	static const char *const histogram[] = { "_bucket", "_count", "_sum", NULL };
	static const char *const om_counter[] = { "_total", NULL };
	static const char *const om_info[] = { "_info", NULL };
	static const char *const none[] = { NULL };
	const char *const *suffixes = none;
	size_t f = strlen(fam);

	if (strcmp(type, "histogram") == 0)
		suffixes = histogram;
	else if (fmt == METRICS_OPENMETRICS && strcmp(type, "counter") == 0)
		suffixes = om_counter;
	else if (fmt == METRICS_OPENMETRICS && strcmp(type, "info") == 0)
		suffixes = om_info;
	if (n < f || strncmp(name, fam, f) != 0)
		return false;
	if (n == f &&
	    (strcmp(type, "gauge") == 0 || (fmt == METRICS_TEXT && strcmp(type, "histogram") != 0)))
		return true;
	for (; *suffixes; suffixes++)
		if (n - f == strlen(*suffixes) && strncmp(name + f, *suffixes, n - f) == 0)
			return true;
	return false;
}

/*
 * What both formats require of the whole: valid UTF-8, every line ending in a newline; a TYPE
 * (and HELP) once per family and before its samples, which follow it together; the text
 * format's counters named with _total; OpenMetrics ending with one "# EOF".
 */
static void check_structure(const char *text, enum metrics_format fmt, const char *what)
{
	char families[64][128];
	size_t n_families = 0, len = strlen(text);
	char fam[128] = "", type[32] = "";
	const char *eof = strstr(text, "# EOF\n");

	CHECK(utf8_valid((const uint8_t *)text, len), "%s: not valid UTF-8", what);
	CHECK(len > 0 && text[len - 1] == '\n', "%s: no newline at the end", what);
	if (fmt == METRICS_OPENMETRICS)
		CHECK(eof && eof + 6 == text + len && (eof == text || eof[-1] == '\n'),
		      "%s: '# EOF' is not the last line, alone", what);
	else
		CHECK(!eof, "%s: '# EOF' in the text format", what);

	for (const char *p = text; *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		char name[128], t[32];

		if (sscanf(p, "# TYPE %127s %31s", name, t) == 2) {
			for (size_t i = 0; i < n_families; i++)
				CHECK(strcmp(families[i], name) != 0, "%s: TYPE %s twice", what,
				      name);
			if (n_families < 64)
				snprintf(families[n_families++], sizeof(families[0]), "%s", name);
			snprintf(fam, sizeof(fam), "%s", name);
			snprintf(type, sizeof(type), "%s", t);
			if (fmt == METRICS_TEXT && strcmp(t, "counter") == 0)
				CHECK(n >= 14 && strncmp(p + n - 14, "_total counter", 14) == 0,
				      "%s: counter family without _total: %.*s", what, (int)n, p);
		} else if (sscanf(p, "# HELP %127s", name) == 1 ||
			   sscanf(p, "# UNIT %127s", name) == 1) {
			/* OpenMetrics puts TYPE first; the text format HELP, just before it. */
			if (fmt == METRICS_OPENMETRICS)
				CHECK(strcmp(name, fam) == 0, "%s: %.*s not after its TYPE", what,
				      (int)n, p);
		} else if (p[0] != '#') {
			size_t m = strcspn(p, "{ ");

			CHECK(fam[0] && sample_of(p, m, fam, type, fmt),
			      "%s: sample %.*s outside its family (last TYPE: %s)", what, (int)m, p,
			      fam);
		}
		p += n + (nl ? 1 : 0);
	}
}

/* The value of the sample on the line that starts with prefix, or -1. */
static long long value_of(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);

	for (const char *p = text; (p = strstr(p, prefix)); p++)
		if (p == text || p[-1] == '\n')
			return strtoll(p + n, NULL, 10);
	return -1;
}

/* The histogram of fill_shared(), with labels (or "") before le. */
static void check_histogram(const char *text, const char *labels, const char *what)
{
	static const char *const les[] = { "0.0001", "0.00025", "0.0005", "0.001",
					   "0.0025", "0.005",	"0.01",	  "0.025",
					   "0.05",   "0.1",	"0.25",	  "0.5",
					   "1.0",    "2.5",	"5.0",	  "+Inf" };
	static const long long want[] = { 1, 1, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 7, 7, 10 };
	const char *comma = *labels ? "," : "";
	long long last = -1, v;
	char prefix[256];

	for (size_t i = 0; i < ELEMENTSOF(les); i++) {
		snprintf(prefix, sizeof(prefix),
			 "sockredir_connect_duration_seconds_bucket{%s%sle=\"%s\"} ", labels, comma,
			 les[i]);
		v = value_of(text, prefix);
		CHECK(v == want[i], "%s: %s: %lld, want %lld", what, prefix, v, want[i]);
		CHECK(v >= last, "%s: bucket le=%s is below the one before", what, les[i]);
		last = v;
	}
	if (*labels)
		snprintf(prefix, sizeof(prefix), "sockredir_connect_duration_seconds_count{%s} ",
			 labels);
	else
		snprintf(prefix, sizeof(prefix), "sockredir_connect_duration_seconds_count ");
	v = value_of(text, prefix);
	CHECK(v == last, "%s: _count %lld, want the +Inf bucket, %lld", what, v, last);
	if (*labels)
		snprintf(prefix, sizeof(prefix),
			 "sockredir_connect_duration_seconds_sum{%s} 12.345678", labels);
	else
		snprintf(prefix, sizeof(prefix),
			 "sockredir_connect_duration_seconds_sum 12.345678");
	CHECK_LINE(text, prefix);
}

static void test_text(void)
{
	struct metrics_input in[2];
	size_t n = make_inputs(in, false);
	_cleanup_free_ char *t = render(in, n, METRICS_TEXT);
	char bs[SR_METRICS_BACKEND_MAX + 1], line[512];

	if (!t)
		return;
	check_structure(t, METRICS_TEXT, "text");
	CHECK_LINE(t, "# HELP sockredir_connections_accepted_total Client connections accepted.");
	CHECK_LINE(t, "# TYPE sockredir_connections_accepted_total counter");
	CHECK_LINE(t, "sockredir_connections_accepted_total 1218");
	CHECK_LINE(t, "# TYPE sockredir_info gauge");
	CHECK_LINE(t,
		   "sockredir_info{version=\"0.1.0\",mode=\"bpf\",dispatch=\"kernel_download\"} 1");
	CHECK_LINE(t, "# TYPE sockredir_bytes_total counter");
	CHECK_LINE(t, "sockredir_bytes_total{direction=\"down\",mover=\"kernel\"} 8388688");
	CHECK_LINE(t, "sockredir_bytes_total{direction=\"down\",mover=\"by_hand\"} 17");
	CHECK_LINE(t, "sockredir_bytes_total{direction=\"up\",mover=\"splice\"} 25165984");
	CHECK_LINE(t, "sockredir_bytes_total{direction=\"up\",mover=\"by_hand\"} 19");
	CHECK_LINE(t, "sockredir_bytes_total{direction=\"down\",mover=\"copy\"} 21");
	CHECK_LINE(t, "sockredir_bytes_total{direction=\"up\",mover=\"copy\"} 22");
	CHECK_LINE(t, "# TYPE sockredir_promotions_total counter");
	CHECK_LINE(t, "sockredir_promotions_total{direction=\"down\",mover=\"splice\"} 23");
	CHECK_LINE(t, "sockredir_promotions_total{direction=\"up\",mover=\"splice\"} 24");
	CHECK_LINE(t, "sockredir_promotions_total{direction=\"down\",mover=\"kernel\"} 29");
	CHECK_NO(t, "sockredir_promotions_total{direction=\"up\",mover=\"kernel\"}");
	CHECK_LINE(t, "# TYPE sockredir_connections_carried_total counter");
	CHECK_LINE(t, "sockredir_connections_carried_total{mover=\"copy\"} 26");
	CHECK_LINE(t, "sockredir_connections_carried_total{mover=\"splice\"} 27");
	CHECK_LINE(t, "sockredir_connections_carried_total{mover=\"kernel\"} 28");
	CHECK_LINE(t, "sockredir_fallbacks_total{reason=\"client_half_closed\"} 1");
	CHECK_LINE(t, "sockredir_fallbacks_total{reason=\"map_full\"} 0");
	CHECK_LINE(t, "sockredir_fallbacks_total{reason=\"client_unix\"} 14");
	CHECK_NO(t, "reason=\"none\"");
	CHECK_LINE(t, "sockredir_reloads_total{result=\"failed\"} 1");
	CHECK_LINE(t, "sockredir_workers 2");
	CHECK_LINE(t, "# TYPE sockredir_connections_kept gauge");
	CHECK_LINE(t, "sockredir_connections_kept 3");
	CHECK_LINE(t, "# TYPE sockredir_connections_restored_total counter");
	CHECK_LINE(t, "sockredir_connections_restored_total 11");
	CHECK_LINE(t, "# TYPE sockredir_connections_restore_closed_total counter");
	CHECK_LINE(t, "sockredir_connections_restore_closed_total 12");
	CHECK_LINE(t, "# TYPE sockredir_fdstore_fds gauge");
	CHECK_LINE(t, "sockredir_fdstore_fds 13");
	CHECK_LINE(t, "sockredir_kernel_redirect_failures_total 7");
	CHECK_LINE(t, "sockredir_kernel_held_skbs_total 8");
	CHECK_LINE(t, "sockredir_kernel_drain_checks_total 1203");
	CHECK_LINE(
		t,
		"sockredir_backend_connections_open{route=\"default\",backend=\"@abstract-name\"} 3");
	CHECK_LINE(t, "sockredir_backend_up{route=\"default\",backend=\"@abstract-name\"} 1");
	CHECK_LINE(t, "sockredir_backend_up{" ODD_LABELS "} 0");
	CHECK_LINE(t, "sockredir_backend_connect_failures_total{" ODD_LABELS "} 9");
	CHECK_NO(t, "listener:half");
	memset(bs, 'b', SR_METRICS_BACKEND_MAX);
	bs[SR_METRICS_BACKEND_MAX] = 0;
	snprintf(line, sizeof(line),
		 "sockredir_backend_connections_open{route=\"listener:web\",backend=\"%s\"} 1", bs);
	CHECK(has_line(t, line), "a backend field without NUL must end with the field");
	CHECK_LINE(t, "sockredir_metrics_table_full 1");
	CHECK_LINE(t, "# TYPE sockredir_connect_duration_seconds histogram");
	CHECK_NO(t, "# UNIT");
	CHECK_NO(t, "name=\"");
	check_histogram(t, "", "text");
}

static void test_openmetrics(void)
{
	struct metrics_input in[2];
	size_t n = make_inputs(in, false);
	_cleanup_free_ char *t = render(in, n, METRICS_OPENMETRICS);

	if (!t)
		return;
	check_structure(t, METRICS_OPENMETRICS, "openmetrics");
	CHECK_LINE(t, "# TYPE sockredir info");
	CHECK_LINE(t,
		   "sockredir_info{version=\"0.1.0\",mode=\"bpf\",dispatch=\"kernel_download\"} 1");
	CHECK_LINE(t, "# TYPE sockredir_connections_accepted counter");
	CHECK_LINE(t, "# HELP sockredir_connections_accepted Client connections accepted.");
	CHECK_LINE(t, "sockredir_connections_accepted_total 1218");
	CHECK_LINE(t, "# TYPE sockredir_bytes counter");
	CHECK_LINE(t, "# UNIT sockredir_bytes bytes");
	CHECK_LINE(t, "sockredir_bytes_total{direction=\"down\",mover=\"kernel\"} 8388688");
	CHECK_LINE(t, "sockredir_bytes_total{direction=\"up\",mover=\"copy\"} 22");
	CHECK_LINE(t, "# TYPE sockredir_promotions counter");
	CHECK_LINE(t, "sockredir_promotions_total{direction=\"up\",mover=\"splice\"} 24");
	CHECK_LINE(t, "# TYPE sockredir_connections_carried counter");
	CHECK_LINE(t, "sockredir_connections_carried_total{mover=\"kernel\"} 28");
	CHECK_LINE(t, "# TYPE sockredir_connections_open gauge");
	CHECK_LINE(t, "sockredir_connections_open 3");
	CHECK_LINE(t, "# TYPE sockredir_connections_kept gauge");
	CHECK_LINE(t, "sockredir_connections_kept 3");
	CHECK_LINE(t, "# TYPE sockredir_connections_restored counter");
	CHECK_LINE(t, "sockredir_connections_restored_total 11");
	CHECK_LINE(t, "# TYPE sockredir_connections_restore_closed counter");
	CHECK_LINE(t, "sockredir_connections_restore_closed_total 12");
	CHECK_LINE(t, "# TYPE sockredir_fdstore_fds gauge");
	CHECK_LINE(t, "sockredir_fdstore_fds 13");
	CHECK_LINE(t, "# TYPE sockredir_connect_duration_seconds histogram");
	CHECK_LINE(t, "# UNIT sockredir_connect_duration_seconds seconds");
	CHECK_LINE(t, "sockredir_backend_up{" ODD_LABELS "} 0");
	CHECK_LINE(t, "sockredir_fallbacks_total{reason=\"client_unix\"} 14");
	CHECK_NO(t, "_total counter");
	check_histogram(t, "", "openmetrics");
}

/* Without the kernel path and the table: their families are left out, not written empty. */
static void test_optional_families(void)
{
	struct metrics_input in = { .proxy = &proxy_splice, .version = "0.1.0" };

	for (int fmt = METRICS_TEXT; fmt <= METRICS_OPENMETRICS; fmt++) {
		_cleanup_free_ char *t = render(&in, 1, fmt);

		if (!t)
			return;
		check_structure(t, fmt, "splice only");
		CHECK_LINE(
			t,
			"sockredir_info{version=\"0.1.0\",mode=\"splice\",dispatch=\"splice\"} 1");
		CHECK_LINE(t, "sockredir_bytes_total{direction=\"up\",mover=\"splice\"} 200");
		CHECK_LINE(t, "sockredir_bytes_total{direction=\"down\",mover=\"copy\"} 30");
		CHECK_LINE(t, "sockredir_promotions_total{direction=\"up\",mover=\"splice\"} 32");
		CHECK_LINE(t, "sockredir_promotions_total{direction=\"down\",mover=\"splice\"} 0");
		CHECK_LINE(t, "sockredir_connections_carried_total{mover=\"copy\"} 33");
		CHECK_LINE(t, "sockredir_connections_carried_total{mover=\"splice\"} 34");
		CHECK_LINE(t, "sockredir_fallbacks_total{reason=\"mode\"} 10");
		CHECK_NO(t, "mover=\"kernel\"");
		CHECK_NO(t, "mover=\"by_hand\"");
		CHECK_NO(t, "sockredir_kernel_");
		CHECK_NO(t, "sockredir_backend_");
		CHECK_NO(t, "sockredir_metrics_table_full");
		CHECK_NO(t, "sockredir_connect_duration_seconds");
	}

	/* Upload in the kernel too; no version known. */
	proxy_kernel.upload_kernel = 1;
	in = (struct metrics_input){ .proxy = &proxy_kernel, .kernel = &kstats };
	_cleanup_free_ char *t = render(&in, 1, METRICS_OPENMETRICS);
	proxy_kernel.upload_kernel = 0;
	if (t)
		CHECK_LINE(t, "sockredir_info{mode=\"bpf\",dispatch=\"kernel_both\"} 1");
}

/* Two instances: each family once, its samples from both, the name label first. */
static void test_instances(void)
{
	struct metrics_input in[2];
	size_t n = make_inputs(in, true);

	for (int fmt = METRICS_TEXT; fmt <= METRICS_OPENMETRICS; fmt++) {
		_cleanup_free_ char *t = render(in, n, fmt);

		if (!t)
			return;
		check_structure(t, fmt, fmt == METRICS_TEXT ? "two, text" : "two, openmetrics");
		CHECK_LINE(t, "sockredir_connections_accepted_total{name=\"web\"} 1218");
		CHECK_LINE(t, "sockredir_connections_accepted_total{name=\"api@2\"} 10");
		CHECK_LINE(
			t,
			"sockredir_info{name=\"api@2\",version=\"0.1.0\",mode=\"splice\",dispatch=\"splice\"} 1");
		CHECK_LINE(t, "sockredir_connections_kept{name=\"web\"} 3");
		CHECK_LINE(t, "sockredir_connections_kept{name=\"api@2\"} 0");
		CHECK_LINE(t, "sockredir_connections_restored_total{name=\"web\"} 11");
		CHECK_LINE(t, "sockredir_fdstore_fds{name=\"api@2\"} 0");
		CHECK_LINE(
			t,
			"sockredir_bytes_total{name=\"api@2\",direction=\"up\",mover=\"copy\"} 31");
		CHECK_LINE(
			t,
			"sockredir_promotions_total{name=\"web\",direction=\"down\",mover=\"splice\"} 23");
		CHECK_LINE(t,
			   "sockredir_connections_carried_total{name=\"web\",mover=\"kernel\"} 28");
		CHECK_LINE(t,
			   "sockredir_connections_carried_total{name=\"api@2\",mover=\"copy\"} 33");
		CHECK_NO(t, "sockredir_connections_carried_total{name=\"api@2\",mover=\"kernel\"}");
		CHECK_LINE(t, "sockredir_kernel_held_skbs_total{name=\"web\"} 8");
		CHECK_NO(t, "sockredir_kernel_held_skbs_total{name=\"api@2\"}");
		CHECK_LINE(
			t,
			"sockredir_backend_up{name=\"web\",route=\"default\",backend=\"@abstract-name\"} 1");
		check_histogram(t, "name=\"web\"",
				fmt == METRICS_TEXT ? "two, text" : "two, openmetrics");
	}
}

/* The value of the first label named name="..." in text, escapes undone: backslash, then %XX. */
static size_t decode_label(const char *text, const char *name, char *out, size_t size)
{
	char key[64];
	const char *p;
	size_t n = 0;

	snprintf(key, sizeof(key), "%s=\"", name);
	p = strstr(text, key);
	if (!p)
		return SIZE_MAX;
	for (p += strlen(key); *p && *p != '"' && n < size; p++) {
		if (*p == '\\') {
			p++;
			out[n++] = *p == 'n' ? '\n' : *p;
		} else if (*p == '%') {
			unsigned x;

			if (sscanf(p + 1, "%2X", &x) != 1)
				return SIZE_MAX;
			out[n++] = (char)x;
			p += 2;
		} else
			out[n++] = *p;
	}
	return *p == '"' ? n : SIZE_MAX;
}

/* Any bytes at all in a backend: the output stays valid UTF-8 and decodes back to them. */
static void test_label_roundtrip(void)
{
	struct metrics_input in = { .proxy = &proxy_splice, .shared = &shared, .now = NOW };
	unsigned seed = 1;

	for (int round = 0; round < 2000; round++) {
		struct sr_backend_metrics *b = &shared.backends[0];
		size_t len = 1 + (size_t)rand_r(&seed) % (sizeof(b->backend) - 1), got;
		char out[4 * sizeof(b->backend)];
		_cleanup_free_ char *t = NULL;

		memset(&shared, 0, sizeof(shared));
		for (size_t i = 0; i < len; i++) {
			/* Half the rounds from a small, tricky alphabet, so sequences form. */
			static const char tricky[] =
				"\\\"\n%\xc2\x80\x9f\xa0\xe0\xed\xef\xf0\xf4\xbfZ";

			b->backend[i] = round % 2 ? (char)(1 + rand_r(&seed) % 255) :
						    tricky[rand_r(&seed) % (sizeof(tricky) - 1)];
		}
		b->backend[len] = 0;
		snprintf(b->route, sizeof(b->route), "r");
		b->used = 1;
		shared.n_backends = 1;
		t = render(&in, 1, round % 4 < 2 ? METRICS_TEXT : METRICS_OPENMETRICS);
		if (!t)
			return;
		if (!CHECK(utf8_valid((const uint8_t *)t, strlen(t)), "round %d: not UTF-8", round))
			return;
		got = decode_label(t, "backend", out, sizeof(out));
		if (!CHECK(got == len && memcmp(out, b->backend, len) == 0,
			   "round %d: backend label does not decode back (%zu bytes, want %zu)",
			   round, got, len))
			return;
	}
}

static void test_accept(void)
{
	static const struct {
		const char *accept;
		enum metrics_format want;
	} cases[] = {
		{ NULL, METRICS_TEXT },
		{ "", METRICS_TEXT },
		{ "*/*", METRICS_TEXT },
		{ "text/plain", METRICS_TEXT },
		{ "text/plain;version=0.0.4;q=1,*/*;q=0.1", METRICS_TEXT },
		/* What Prometheus 2 sends. */
		{ "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
		  "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
		  METRICS_OPENMETRICS },
		{ "application/openmetrics-text", METRICS_OPENMETRICS },
		{ "Application/OpenMetrics-Text ; Version = 1.0.0", METRICS_OPENMETRICS },
		{ "application/openmetrics-text; version=\"1.0.0\"; charset=utf-8",
		  METRICS_OPENMETRICS },
		{ "application/openmetrics-text;version=0.0.1", METRICS_OPENMETRICS },
		{ "application/openmetrics-text;version=1.1.0", METRICS_OPENMETRICS },
		{ "application/openmetrics-text;version=2.0.0", METRICS_TEXT },
		{ "application/openmetrics-text;version=0.0.4", METRICS_TEXT },
		{ "application/openmetrics-text;q=0", METRICS_TEXT },
		{ "application/openmetrics-text; version=1.0.0; q=0.000", METRICS_TEXT },
		{ "application/openmetrics-text;q=0.001", METRICS_OPENMETRICS },
		{ "application/openmetrics-text;q=abc", METRICS_TEXT },
		{ "application/openmetrics-text;q=1.5", METRICS_TEXT },
		/* The client prefers text. */
		{ "text/plain, application/openmetrics-text;q=0.5", METRICS_TEXT },
		{ "text/plain;q=0.5, application/openmetrics-text", METRICS_OPENMETRICS },
		/* A comma inside a quoted value splits nothing. */
		{ "application/json;x=\"a,application/openmetrics-text\"", METRICS_TEXT },
		{ "application/json, application/openmetrics-text", METRICS_OPENMETRICS },
		{ "application/openmetrics-textx", METRICS_TEXT },
	};

	for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
		enum metrics_format f = metrics_format_from_accept(cases[i].accept);

		CHECK(f == cases[i].want, "Accept '%s': %s, want %s",
		      cases[i].accept ? cases[i].accept : "(none)",
		      f == METRICS_OPENMETRICS ? "openmetrics" : "text",
		      cases[i].want == METRICS_OPENMETRICS ? "openmetrics" : "text");
	}
	CHECK(strcmp(metrics_content_type(METRICS_TEXT),
		     "text/plain; version=0.0.4; charset=utf-8") == 0,
	      "text content type");
	CHECK(strcmp(metrics_content_type(METRICS_OPENMETRICS),
		     "application/openmetrics-text; version=1.0.0; charset=utf-8") == 0,
	      "openmetrics content type");
}

/* A write error comes back as a negative errno. */
static void test_write_error(void)
{
	struct metrics_input in[2];
	size_t n = make_inputs(in, true);
	FILE *f = fopen("/dev/full", "we");
	int r;

	if (!f) {
		fprintf(stderr, "test-metrics: no /dev/full, write error not tested\n");
		return;
	}
	r = metrics_write(f, in, n, METRICS_OPENMETRICS);
	CHECK(r == -ENOSPC, "write to /dev/full: %d, want -ENOSPC", r);
	fclose(f);
}

int main(int argc, char *argv[])
{
	if (argc == 3 && strcmp(argv[1], "--dump") == 0) {
		struct metrics_input in[2];
		size_t n = make_inputs(in, true);

		/* With the name label or without: both shapes, for the caller to check. */
		in[0].instance = NULL;
		if (strcmp(argv[2], "text-single") == 0)
			return metrics_write(stdout, in, 1, METRICS_TEXT) < 0;
		if (strcmp(argv[2], "openmetrics-single") == 0)
			return metrics_write(stdout, in, 1, METRICS_OPENMETRICS) < 0;
		in[0].instance = "web";
		if (strcmp(argv[2], "text") == 0)
			return metrics_write(stdout, in, n, METRICS_TEXT) < 0;
		if (strcmp(argv[2], "openmetrics") == 0)
			return metrics_write(stdout, in, n, METRICS_OPENMETRICS) < 0;
		fprintf(stderr,
			"usage: %s [--dump text|openmetrics|text-single|openmetrics-single]\n",
			argv[0]);
		return 2;
	}

	test_text();
	test_openmetrics();
	test_optional_families();
	test_instances();
	test_label_roundtrip();
	test_accept();
	test_write_error();
	return CHECK_REPORT("test-metrics");
}
