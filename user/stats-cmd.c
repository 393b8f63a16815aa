// SPDX-License-Identifier: GPL-2.0
/*
 * `sockredir stats`: read the counters of running instances from their pinned maps, read-only.
 * It needs read access to the pins, and the bpf() syscall: CAP_BPF where
 * kernel.unprivileged_bpf_disabled is set, as it is on Debian. No other privilege.
 */
#include <dirent.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "../bpf/sockredir.h"
#include "log.h"
#include "metrics.h"
#include "options.h"
#include "parse.h"
#include "stats-cmd.h"
#include "stats.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

/* The BPF ABI uses __u64 (unsigned long long); PRIu64 wants uint64_t. */
#define U(x) ((uint64_t)(x))

struct instance_stats {
	char name[NAME_MAX + 1];
	bool on_kernel_path;   /* pinned; else splice only */
	char path_status[192]; /* "Kernel path", or "Splice only, ..." and why, as in STATUS= */
	struct sr_proxy_stats proxy;
	struct sr_kstats kernel;
	uint64_t peers; /* entries in sr_peers: sockets on the kernel path now */
};

enum stats_format {
	STATS_TEXT,
	STATS_JSON,
	STATS_OPENMETRICS,
	_STATS_FORMAT_MAX,
};

static const char *const format_names[_STATS_FORMAT_MAX] = {
	[STATS_TEXT] = "text",
	[STATS_JSON] = "json",
	[STATS_OPENMETRICS] = "openmetrics",
};

static int open_pin(const char *dir, const char *name)
{
	LIBBPF_OPTS(bpf_obj_get_opts, opts, .file_flags = BPF_F_RDONLY);
	char path[PATH_MAX];
	int fd;

	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = bpf_obj_get_opts(path, &opts);
	return fd < 0 ? negative_errno() : fd;
}

static int read_instance(const char *dir, const char *name, struct instance_stats *ret)
{
	_cleanup_close_ int fd_proxy = -EBADF, fd_kstats = -EBADF, fd_peers = -EBADF;
	struct instance_stats st = {};
	struct sr_kstats *percpu;
	__u64 key = 0, next;
	__u32 zero = 0;
	int ncpu, r;

	snprintf(st.name, sizeof(st.name), "%s", name);
	fd_proxy = open_pin(dir, SR_MAP_PROXY_STATS);
	if (fd_proxy < 0)
		return fd_proxy;
	fd_kstats = open_pin(dir, SR_MAP_KSTATS);
	if (fd_kstats < 0)
		return fd_kstats;
	fd_peers = open_pin(dir, SR_MAP_PEERS);
	if (fd_peers < 0)
		return fd_peers;

	if (bpf_map_lookup_elem(fd_proxy, &zero, &st.proxy) < 0)
		return negative_errno();

	ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		return ncpu < 0 ? ncpu : -EINVAL;
	percpu = calloc((size_t)ncpu, sizeof(*percpu));
	if (!percpu)
		return -ENOMEM;
	r = bpf_map_lookup_elem(fd_kstats, &zero, percpu) < 0 ? negative_errno() : 0;
	for (int i = 0; r >= 0 && i < ncpu; i++) {
		for (int d = 0; d < _SR_DIR_MAX; d++) {
			st.kernel.bytes[d] += percpu[i].bytes[d];
			st.kernel.skbs[d] += percpu[i].skbs[d];
		}
		st.kernel.redirect_failed += percpu[i].redirect_failed;
		st.kernel.peer_missing += percpu[i].peer_missing;
		st.kernel.empty_dropped += percpu[i].empty_dropped;
		st.kernel.held += percpu[i].held;
	}
	free(percpu);
	if (r < 0)
		return r;

	/* Counting keys costs one syscall each; it stops at a sane bound. */
	for (void *k = NULL; st.peers < 1000000; k = &key, key = next) {
		if (bpf_map_get_next_key(fd_peers, k, &next) < 0)
			break;
		st.peers++;
	}

	st.on_kernel_path = true;
	snprintf(st.path_status, sizeof(st.path_status), "%s",
		 stats_kernel_path_label(st.proxy.upload_kernel));
	*ret = st;
	return 0;
}

/* An instance without the kernel path: its counters file in SR_RUN_ROOT/NAME (see stats.h). */
static int read_runtime_instance(const char *name, struct instance_stats *ret)
{
	struct instance_stats st = {};
	struct sr_runtime_stats rs;
	char dir[PATH_MAX];
	int r;

	if (snprintf(dir, sizeof(dir), SR_RUN_ROOT "/%s", name) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	r = stats_runtime_read(dir, &rs);
	if (r < 0)
		return r;
	snprintf(st.name, sizeof(st.name), "%s", name);
	st.proxy = rs.proxy;
	snprintf(st.path_status, sizeof(st.path_status), "%s", rs.path_status);
	*ret = st;
	return 0;
}

/* Instance NAME, pinned or not. */
static int read_named(const char *name, struct instance_stats *ret)
{
	char dir[PATH_MAX];
	int r, k;

	if (snprintf(dir, sizeof(dir), SR_PIN_ROOT "/%s", name) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	/*
	 * Not only -ENOENT: where bpf() itself is refused (the reason this instance may have no
	 * pins at all), opening a pin fails with EPERM.
	 */
	r = read_instance(dir, name, ret);
	if (r >= 0)
		return r;
	k = read_runtime_instance(name, ret);
	return k == -ENOENT || k == -ESTALE ? r : k;
}

int stats_read_counters(const char *name, const char *pin_path, struct sr_proxy_stats *ret)
{
	struct instance_stats st;
	int r;

	if (pin_path) {
		const char *base = strrchr(pin_path, '/');

		r = read_instance(pin_path, base ? base + 1 : pin_path, &st);
	} else
		r = read_named(name, &st);
	if (r < 0)
		return r;
	*ret = st.proxy;
	return 0;
}

static uint64_t fallback_total(const struct sr_proxy_stats *s)
{
	uint64_t n = 0;

	for (int i = 0; i < _SR_FALLBACK_MAX; i++)
		n += s->fallback[i];
	return n;
}

static void print_text(const struct instance_stats *st)
{
	const struct sr_proxy_stats *p = &st->proxy;
	const struct sr_kstats *k = &st->kernel;

	printf("%s\n", st->name);
	printf("  running on    %s\n", st->path_status);
	printf("  connections   %" PRIu64 " open, %" PRIu64 " accepted, %" PRIu64
	       " backend connect failures\n",
	       U(p->open), U(p->accepted), U(p->connect_failed));
	printf("  path          %" PRIu64 " kernel (%" PRIu64 " with kernel upload), %" PRIu64
	       " splice\n",
	       U(p->kernel), U(p->kernel_upload), fallback_total(p));
	/* The path per direction, as measured: see README.md, "Which path each direction takes". */
	if (st->on_kernel_path && !p->upload_kernel && p->mode == SR_MODE_AUTO)
		printf("  dispatch      down in the kernel while no more connections are open than "
		       "CPUs, else in userspace; up in userspace; %u worker(s)\n",
		       p->workers);
	else if (st->on_kernel_path)
		printf("  dispatch      down in the kernel, up %s; %u worker(s)\n",
		       p->upload_kernel ? "in the kernel (--kernel-upload, no memory bound)" :
					  "in userspace (TCP flow control bounds it)",
		       p->workers);
	else
		printf("  dispatch      both ways in userspace; %u worker(s)\n", p->workers);
	printf("  fallbacks    ");
	for (int i = 1; i < _SR_FALLBACK_MAX; i++)
		printf(" %s %" PRIu64 "%s", stats_fallback_name(i), U(p->fallback[i]),
		       i + 1 < _SR_FALLBACK_MAX ? "," : "\n");
	/* Counted at close: the connections open now are not in it yet. */
	printf("  carried      ");
	for (int i = 0; i < _SR_MOVER_MAX; i++)
		printf(" %s %" PRIu64 "%s", stats_mover_name(i), U(p->carried[i]),
		       i + 1 < _SR_MOVER_MAX ? "," : " (closed, by fastest mover)\n");
	printf("  promoted      %" PRIu64 " down, %" PRIu64 " up to splice; %" PRIu64
	       " down to the kernel\n",
	       U(p->promoted_splice[SR_DIR_DOWN]), U(p->promoted_splice[SR_DIR_UP]),
	       U(p->promoted_kernel));
	printf("  down (b->c)   %" PRIu64 " bytes in the kernel, %" PRIu64 " spliced, %" PRIu64
	       " copied, %" PRIu64 " by hand\n",
	       U(k->bytes[SR_DIR_DOWN]), U(p->spliced_bytes[SR_DIR_DOWN]),
	       U(p->copied_bytes[SR_DIR_DOWN]), U(p->flushed_bytes));
	printf("  up (c->b)     %" PRIu64 " bytes in the kernel, %" PRIu64 " spliced, %" PRIu64
	       " copied, %" PRIu64 " by hand\n",
	       U(k->bytes[SR_DIR_UP]), U(p->spliced_bytes[SR_DIR_UP]),
	       U(p->copied_bytes[SR_DIR_UP]), U(p->flushed_bytes_up));
	printf("  kernel path   %" PRIu64 " sockets in sr_peers, %" PRIu64
	       " redirect failures, %" PRIu64 " held skbs, %" PRIu64 " empty skbs dropped, %" PRIu64
	       " drain checks\n",
	       st->peers, U(k->redirect_failed), U(k->held), U(k->empty_dropped),
	       U(p->drain_checks));
	printf("  setup         %" PRIu64 " peek failures, %" PRIu64 " closed idle, %" PRIu64
	       " reloads (%" PRIu64 " failed)\n",
	       U(p->peek_failed), U(p->idle_closed), U(p->reloads), U(p->reloads_failed));
	printf("  fd store      %" PRIu64 " connections kept, %" PRIu64 " restored, %" PRIu64
	       " closed on restore; %" PRIu64 " fds stored\n",
	       U(p->kept), U(p->restored), U(p->restore_closed), U(p->store_fds));
}

static void print_json(const struct instance_stats *st, bool first)
{
	const struct sr_proxy_stats *p = &st->proxy;
	const struct sr_kstats *k = &st->kernel;

	/* Instance names are restricted to [A-Za-z0-9_.@-] (see --name): no escaping needed. */
	printf("%s{\"name\":\"%s\",\"open\":%" PRIu64 ",\"accepted\":%" PRIu64
	       ",\"connect_failed\":%" PRIu64 ",\"kernel\":%" PRIu64 ",\"kernel_upload\":%" PRIu64
	       ",\"splice\":%" PRIu64 ",",
	       first ? "" : ",", st->name, U(p->open), U(p->accepted), U(p->connect_failed),
	       U(p->kernel), U(p->kernel_upload), fallback_total(p));
	/* path_status holds no '"' or '\\': it is made of our own messages and errno names. */
	printf("\"path_status\":\"%s\",", st->path_status);
	printf("\"dispatch\":{\"down\":\"%s\",\"up\":\"%s\",\"workers\":%u},\"fallbacks\":{",
	       !st->on_kernel_path			    ? "splice" :
	       !p->upload_kernel && p->mode == SR_MODE_AUTO ? "adaptive" :
							      "kernel",
	       st->on_kernel_path && p->upload_kernel ? "kernel" : "splice", p->workers);
	for (int i = 1; i < _SR_FALLBACK_MAX; i++)
		printf("%s\"%s\":%" PRIu64, i > 1 ? "," : "", stats_fallback_name(i),
		       U(p->fallback[i]));
	printf("},\"bytes\":{\"down\":{\"kernel\":%" PRIu64 ",\"spliced\":%" PRIu64
	       ",\"copied\":%" PRIu64 ",\"by_hand\":%" PRIu64 "},\"up\":{\"kernel\":%" PRIu64
	       ",\"spliced\":%" PRIu64 ",\"copied\":%" PRIu64 ",\"by_hand\":%" PRIu64 "}}",
	       U(k->bytes[SR_DIR_DOWN]), U(p->spliced_bytes[SR_DIR_DOWN]),
	       U(p->copied_bytes[SR_DIR_DOWN]), U(p->flushed_bytes), U(k->bytes[SR_DIR_UP]),
	       U(p->spliced_bytes[SR_DIR_UP]), U(p->copied_bytes[SR_DIR_UP]),
	       U(p->flushed_bytes_up));
	/* Flat objects: tests/soak.sh takes the first "down":{...} and "up":{...} for the bytes. */
	printf(",\"promoted_splice\":{\"down\":%" PRIu64 ",\"up\":%" PRIu64
	       "},\"promoted_kernel\":{\"down\":%" PRIu64 "},\"carried\":{",
	       U(p->promoted_splice[SR_DIR_DOWN]), U(p->promoted_splice[SR_DIR_UP]),
	       U(p->promoted_kernel));
	for (int i = 0; i < _SR_MOVER_MAX; i++)
		printf("%s\"%s\":%" PRIu64, i > 0 ? "," : "", stats_mover_name(i),
		       U(p->carried[i]));
	printf("}");
	printf(",\"kernel_sockets\":%" PRIu64 ",\"redirect_failed\":%" PRIu64
	       ",\"peer_missing\":%" PRIu64 ",\"held_skbs\":%" PRIu64 ",\"empty_dropped\":%" PRIu64
	       ",\"drain_checks\":%" PRIu64 ",\"peek_failed\":%" PRIu64 ",\"idle_closed\":%" PRIu64
	       ",\"reloads\":%" PRIu64 ",\"reloads_failed\":%" PRIu64,
	       st->peers, U(k->redirect_failed), U(k->peer_missing), U(k->held),
	       U(k->empty_dropped), U(p->drain_checks), U(p->peek_failed), U(p->idle_closed),
	       U(p->reloads), U(p->reloads_failed));
	printf(",\"kept\":%" PRIu64 ",\"restored\":%" PRIu64 ",\"restore_closed\":%" PRIu64
	       ",\"store_fds\":%" PRIu64 "}",
	       U(p->kept), U(p->restored), U(p->restore_closed), U(p->store_fds));
}

/*
 * One exposition for every instance: both formats want each family once, and OpenMetrics one
 * "# EOF". name="NAME" tells the instances apart, even when there is only one, so that a series
 * keeps its labels when a second instance starts. Left out: the per-backend families, whose table
 * lives in the instance's own memory (its GET /metrics has them), and the version, which the
 * instance's counters don't hold and ours may differ from.
 */
static int print_openmetrics(const struct instance_stats *v, size_t n)
{
	_cleanup_free_ struct metrics_input *in = NULL;
	int r;

	in = calloc(MAX(n, (size_t)1), sizeof(*in));
	if (!in)
		return log_error_errno(-ENOMEM, "Failed to render the metrics: %m");
	for (size_t i = 0; i < n; i++)
		in[i] = (struct metrics_input){
			.instance = v[i].name,
			.proxy = &v[i].proxy,
			.kernel = v[i].on_kernel_path ? &v[i].kernel : NULL,
			.now = now_usec(),
		};
	r = metrics_write(stdout, in, n, METRICS_OPENMETRICS);
	if (r < 0)
		return log_error_errno(r, "Failed to write the metrics: %m");
	return 0;
}

static int print_instances(const struct instance_stats *v, size_t n, enum stats_format format)
{
	switch (format) {
	case STATS_JSON:
		printf("[");
		for (size_t i = 0; i < n; i++)
			print_json(&v[i], i == 0);
		printf("]\n");
		return 0;
	case STATS_OPENMETRICS:
		return print_openmetrics(v, n);
	default:
		for (size_t i = 0; i < n; i++)
			print_text(&v[i]);
		return 0;
	}
}

static void stats_help(void)
{
	printf("%s stats [OPTIONS...] [NAME...]\n"
	       "\n"
	       "Show the counters of running sockredir instances, read from their pinned maps\n"
	       "(" SR_PIN_ROOT
	       "/NAME), or for an instance without the kernel path from\n" SR_RUN_ROOT
	       "/NAME. Without NAME: every instance found there.\n"
	       "\n"
	       "     --format=FORMAT    text (the default), json (one array, for scripts), or\n"
	       "                        openmetrics (one exposition, a name=\"NAME\" label each)\n"
	       "     --json             The same as --format=json\n"
	       "     --watch=SECONDS    Print again every SECONDS until interrupted\n"
	       "     --pin-path=DIR     Read the instance pinned in DIR (as sockredir --pin-path)\n"
	       "  -h --help             Show this help\n"
	       "\n"
	       "Needs read access to the pins, and CAP_BPF where unprivileged BPF is disabled.\n",
	       program_invocation_short_name);
}

/* The instances one pass reads: all of them are read before any is printed. */
struct instance_list {
	struct instance_stats *v;
	size_t n;
};

static void instance_list_done(struct instance_list *l)
{
	l->v = mfree(l->v);
	l->n = 0;
}

static int instance_list_add(struct instance_list *l, const struct instance_stats *st)
{
	struct instance_stats *v;

	v = reallocarray(l->v, l->n + 1, sizeof(*v));
	if (!v)
		return log_error_errno(-ENOMEM, "Failed to read the instances: %m");
	v[l->n++] = *st;
	l->v = v;
	return 0;
}

/*
 * One pass: every requested instance. Returns how many were shown, or <0. All are read first,
 * so that a failure prints nothing half-done (a JSON array cut short), and OpenMetrics can write
 * each family once.
 */
static int stats_once(char **names, size_t n_names, const char *pin_path, enum stats_format format)
{
	_cleanup_(closedirp) DIR *d = NULL, *run_dir = NULL;
	_cleanup_(instance_list_done) struct instance_list l = {};
	struct instance_stats st;
	int r;

	if (pin_path) {
		const char *base = strrchr(pin_path, '/');

		r = read_instance(pin_path, base ? base + 1 : pin_path, &st);
		if (r < 0)
			return log_error_errno(r, "Failed to read the pins in %s: %m", pin_path);
		r = instance_list_add(&l, &st);
		if (r < 0)
			return r;
	} else if (n_names > 0) {
		for (size_t i = 0; i < n_names; i++) {
			r = read_named(names[i], &st);
			if (r < 0)
				return log_error_errno(r,
						       "No readable instance '%s' in " SR_PIN_ROOT
						       " or " SR_RUN_ROOT ": %m",
						       names[i]);
			r = instance_list_add(&l, &st);
			if (r < 0)
				return r;
		}
	} else {
		struct dirent *de;

		d = opendir(SR_PIN_ROOT);
		if (!d && errno != ENOENT)
			return log_error_errno(errno, "Failed to open " SR_PIN_ROOT ": %m");
		while (d && (de = readdir(d))) {
			char dir[PATH_MAX];

			if (de->d_name[0] == '.')
				continue;
			snprintf(dir, sizeof(dir), SR_PIN_ROOT "/%s", de->d_name);
			r = read_instance(dir, de->d_name, &st);
			if (r < 0) {
				log_warning_errno(r, "Skipping %s: %m", dir);
				continue;
			}
			r = instance_list_add(&l, &st);
			if (r < 0)
				return r;
		}
		/* Instances without the kernel path; those a crash left behind are skipped. */
		run_dir = opendir(SR_RUN_ROOT);
		while (run_dir && (de = readdir(run_dir))) {
			if (de->d_name[0] == '.')
				continue;
			r = read_runtime_instance(de->d_name, &st);
			if (r == -ENOENT || r == -ESTALE)
				continue;
			if (r < 0) {
				log_warning_errno(r, "Skipping " SR_RUN_ROOT "/%s: %m", de->d_name);
				continue;
			}
			r = instance_list_add(&l, &st);
			if (r < 0)
				return r;
		}
	}
	/* Even with none: an empty array, or an exposition of "# EOF" alone, is still a document. */
	r = print_instances(l.v, l.n, format);
	fflush(stdout);
	if (r < 0)
		return r;
	if (l.n == 0)
		log_error(
			"No sockredir instance found under " SR_PIN_ROOT " or " SR_RUN_ROOT
			". Is one running? An instance pins its maps there (or, without the kernel "
			"path, keeps its counters there) while it runs, and removes them on exit.");
	return (int)l.n;
}

static int parse_format(const char *s, enum stats_format *ret)
{
	for (size_t i = 0; i < _STATS_FORMAT_MAX; i++)
		if (streq(s, format_names[i])) {
			*ret = i;
			return 0;
		}
	return -EINVAL;
}

int stats_main(int argc, char *argv[])
{
	enum { ARG_JSON = 0x100, ARG_FORMAT, ARG_WATCH, ARG_PIN_PATH };
	static const struct option options[] = { { "help", no_argument, NULL, 'h' },
						 { "json", no_argument, NULL, ARG_JSON },
						 { "format", required_argument, NULL, ARG_FORMAT },
						 { "watch", required_argument, NULL, ARG_WATCH },
						 { "pin-path", required_argument, NULL,
						   ARG_PIN_PATH },
						 {} };
	enum stats_format format = STATS_TEXT;
	const char *pin_path = NULL;
	uint64_t watch = 0;
	int c, r;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		switch (c) {
		case 'h':
			stats_help();
			return 0;
		case ARG_JSON:
			format = STATS_JSON;
			break;
		case ARG_FORMAT:
			if (parse_format(optarg, &format) < 0) {
				log_error(
					"Invalid --format '%s': expected text, json or openmetrics.",
					optarg);
				return -SR_EUSAGE;
			}
			break;
		case ARG_WATCH:
			if (parse_time_usec(optarg, &watch) < 0 || watch < USEC_PER_SEC / 10) {
				log_error(
					"Invalid --watch '%s': expected a time of at least 0.1 s.",
					optarg);
				return -SR_EUSAGE;
			}
			break;
		case ARG_PIN_PATH:
			pin_path = optarg;
			break;
		default:
			log_error("Try '%s stats --help' for more information.",
				  program_invocation_short_name);
			return -SR_EUSAGE;
		}
	}

	/* Quiet libbpf: a missing pin is reported by us, once. */
	log_bridge_libbpf(false);
	for (;;) {
		/* Redraw the text in place; the other formats are for programs, one after another. */
		if (watch && format == STATS_TEXT)
			printf("\033[H\033[2J");
		r = stats_once(argv + optind, (size_t)(argc - optind), pin_path, format);
		if (r <= 0)
			return r < 0 ? r : -ENOENT;
		if (!watch)
			return 0;
		struct timespec ts = { .tv_sec = (time_t)(watch / USEC_PER_SEC),
				       .tv_nsec = (long)(watch % USEC_PER_SEC) * 1000 };
		nanosleep(&ts, NULL);
	}
}
