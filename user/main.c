// SPDX-License-Identifier: GPL-2.0
/* sockredir: a socket-activated TCP -> Unix redirector whose data path is a sockmap program. */
#include <inttypes.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "bpf-loader.h"
#include "fdstore.h"
#include "keep.h"
#include "lifecycle.h"
#include "listen.h"
#include "log.h"
#include "metrics-table.h"
#include "options.h"
#include "parse.h"
#include "proxy.h"
#include "privileges.h"
#include "reload-cmd.h"
#include "routes.h"
#include "stats.h"
#include "stats-cmd.h"
#include "workers.h"

/* What to change, by the step that failed: the pin directory, or loading itself. */
static const char *load_hint(int r, const char *what)
{
	bool pins = strstr(what, "pin") != NULL;

	switch (-r) {
	case EROFS:
		return pins ? " (the pin directory must be writable: under systemd, "
			      "ReadWritePaths=/sys/fs/bpf/sockredir)" :
			      "";
	case EPERM:
	case EACCES:
		if (pins)
			return " (sockredir's user may not write there: under systemd, the "
			       "tmpfiles.d entry for /sys/fs/bpf/sockredir must exist, and a user "
			       "other than root needs SupplementaryGroups=sockredir)";
		return " (loading needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, and a seccomp "
		       "filter that allows bpf(): under systemd, CapabilityBoundingSet= or "
		       "AmbientCapabilities=, and SystemCallFilter=)";
	case ENOENT:
	case ESRCH:
		return pins ? "" : " (does the kernel have BTF at /sys/kernel/btf/vmlinux?)";
	default:
		return "";
	}
}

/*
 * Load the kernel path. --mode bpf makes any failure fatal; --mode auto logs one warning with
 * the reason and carries every connection on splice. ret_path_status says which, for STATUS=.
 */
/*
 * The maps of the process that kept connections in the fd store, to adopt: its kernel-path
 * connections stay in them, with the program they were inserted under (a socket can't move to
 * another verdict map: EBUSY). Only if every record there was written under this BPF ABI.
 */
static size_t maps_to_adopt(const struct named_fd *stored, size_t n_stored, int *fds,
			    const char **names, char (*prog_names)[32], size_t max,
			    bool *ret_programs)
{
	struct keep_found found;
	size_t n = 0, n_progs = 0;

	*ret_programs = false;
	keep_inspect(stored, n_stored, &found);
	if (found.n_records == 0)
		return 0;
	if (found.n_abi_mismatch > 0) {
		log_warning(
			"The previous process ran another BPF ABI (bpf/sockredir.h changed): its "
			"maps can't be adopted, and its kernel-path connections will be closed "
			"with a FIN.");
		return 0;
	}
	for (size_t i = 0; i < n_stored && n < max; i++) {
		const char *rest = stored[i].name + strlen(KEEP_BPF_PREFIX), *dot;

		if (strncmp(stored[i].name, KEEP_BPF_PREFIX, strlen(KEEP_BPF_PREFIX)) != 0)
			continue;
		/* Programs are stored as NAME.HASH: only this very build's are taken as they are. */
		dot = strchr(rest, '.');
		if (dot) {
			char hash[24];

			snprintf(hash, sizeof(hash), "%016" PRIx64, bpf_object_hash());
			if (!streq(dot + 1, hash) || (size_t)(dot - rest) >= sizeof(prog_names[0]))
				continue;
			snprintf(prog_names[n_progs], sizeof(prog_names[0]), "%.*s",
				 (int)(dot - rest), rest);
			rest = prog_names[n_progs++];
		}
		fds[n] = stored[i].fd;
		names[n++] = rest;
	}
	*ret_programs = n_progs == 2;
	return n;
}

static int setup_kernel_path(const struct options *o, const struct named_fd *stored,
			     size_t n_stored, struct bpf_state **ret, bool *ret_adopted,
			     char *ret_path_status, size_t size)
{
	struct bpf_load_options lo = { .pin_path = o->pin_path, .map_entries = o->map_entries };
	const char *what = "load the BPF object", *reuse_names[16];
	char prog_names[2][32];
	int reuse_fds[16];
	int r;

	*ret_adopted = false;
	*ret = NULL;
	if (o->mode == SR_MODE_SPLICE) {
		snprintf(ret_path_status, size, "Splice (--mode splice)");
		return 0;
	}

	if (access("/sys/kernel/btf/vmlinux", R_OK) < 0) {
		r = negative_errno();
		what = "find kernel BTF at /sys/kernel/btf/vmlinux";
	} else {
		log_bridge_libbpf(o->mode == SR_MODE_BPF);
		lo.n_reuse = maps_to_adopt(stored, n_stored, reuse_fds, reuse_names, prog_names,
					   ELEMENTSOF(reuse_fds), &lo.adopt_programs);
		lo.reuse_fds = reuse_fds;
		lo.reuse_names = reuse_names;
		r = bpf_state_load(&lo, ret, &what);
		if (r >= 0 && lo.n_reuse > 0)
			*ret_adopted = true;
		else if (r < 0 && lo.n_reuse > 0) {
			log_warning_errno(r,
					  "Failed to %s: kernel-path connections of the previous "
					  "process will be closed with a FIN: %m",
					  what);
			lo.n_reuse = 0;
			lo.adopt_programs = false;
			what = "load the BPF object";
			r = bpf_state_load(&lo, ret, &what);
		}
	}
	if (r >= 0) {
		log_debug("Kernel path loaded, pinned under %s%s.", o->pin_path,
			  *ret_adopted ? ", with the previous process's maps" : "");
		snprintf(ret_path_status, size, "%s", stats_kernel_path_label(o->kernel_upload));
		return 0;
	}
	if (o->mode == SR_MODE_BPF)
		return log_error_errno(r,
				       "--mode bpf: cannot use the kernel path: failed to %s: %m%s",
				       what, load_hint(r, what));
	log_warning_errno(r,
			  "Kernel path unavailable, every connection uses splice: failed to %s: "
			  "%m%s",
			  what, load_hint(r, what));
	snprintf(ret_path_status, size, "Splice only, kernel path unavailable (failed to %s: %s)",
		 what, strerrorname_np(-r) ?: "error");
	return 0;
}

/*
 * Services start with a soft limit of 1,024 open files: systemd keeps the soft limit low for the
 * sake of programs that still use select(), and leaves the hard limit (LimitNOFILE=) for programs
 * that know better to take. Each connection costs 2 fds, so take the hard limit, as systemd's own
 * tools do. sockredir uses epoll only.
 */
/*
 * systemd's fd store: say once if connections can't be kept there, and store the maps (and
 * sr_redirect) that kept connections need after a restart. Without the kernel path, or with maps
 * just adopted (the same fds, which systemd drops as duplicates), nothing new is stored.
 */
static int setup_fd_store(struct proxy *p, struct bpf_state *bpf)
{
	const char *why = NULL, *const * names;
	struct sr_proxy_stats *st = proxy_movers(p)->stats;
	const int *fds;
	size_t n;
	int r;

	r = fdstore_open(&p->store, &why);
	if (r < 0)
		return log_error_errno(r, "Out of memory.");
	if (r == 0) {
		log_info("Connections will not survive a restart or a crash: no fd store (%s).",
			 why);
		return 0;
	}
	if (p->opts->workers > 1 && !fdstore_notify_access_all(p->store)) {
		log_warning("Connections will not survive a restart or a crash: with --workers, "
			    "each worker stores its own, which systemd accepts only with "
			    "NotifyAccess=all.");
		p->store = fdstore_free(p->store);
		return 0;
	}
	log_debug("systemd's fd store holds up to %u fds for us.", fdstore_max(p->store));
	if (!bpf || bpf_state_fds(bpf, &fds, &names, &n) < 0)
		return 0;
	char store_names[16][64];

	if (n > ELEMENTSOF(store_names))
		return log_error_errno(E2BIG, "Too many BPF objects to store.");
	/* Programs as NAME.HASH: the next process takes them as they are only if built the same. */
	for (size_t i = 0; i < n; i++)
		if (streq(names[i], SR_PROG_VERDICT) || streq(names[i], SR_PROG_PROBE))
			snprintf(store_names[i], sizeof(store_names[i]),
				 KEEP_BPF_PREFIX "%s.%016" PRIx64, names[i], bpf_object_hash());
		else
			snprintf(store_names[i], sizeof(store_names[i]), KEEP_BPF_PREFIX "%s",
				 names[i]);

	/*
	 * What an earlier process stored goes, but adopted maps: the same fd again under the same
	 * name, which systemd drops as a duplicate, so that they are never out of the store.
	 * Programs go and come back: if this process dies in between, the next one only loads
	 * them again.
	 */
	for (size_t i = 0; i < p->n_stored; i++) {
		const char *rest = p->stored[i].name + strlen(KEEP_BPF_PREFIX);

		if (strncmp(p->stored[i].name, KEEP_BPF_PREFIX, strlen(KEEP_BPF_PREFIX)) != 0 ||
		    (p->maps_adopted && !strchr(rest, '.')))
			continue;
		(void)fdstore_remove(p->store, p->stored[i].name);
	}
	for (size_t i = 0; i < n; i++) {
		r = fdstore_add(p->store, &fds[i], 1, store_names[i], false);
		if (r < 0)
			return log_error_errno(r, "Failed to store %s in the fd store: %m",
					       store_names[i]);
		stat_inc(st->store_fds);
	}
	return 0;
}

static void rlimit_nofile_raise(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		log_debug_errno(errno, "Failed to raise the open files limit, ignoring: %m");
	else
		log_debug("Open files limit raised to %llu.", (unsigned long long)rl.rlim_cur);
}

static int run(int argc, char *argv[])
{
	_cleanup_(bpf_state_freep) struct bpf_state *bpf = NULL;
	struct proxy p = { .argc = argc, .argv = argv, .setup.conns.epoll_fd = -EBADF };
	struct movers *m = proxy_movers(&p);
	struct stats_runtime runtime = { .fd = -EBADF };
	struct listener metrics = { .fd = -EBADF };
	struct named_fd *stored = NULL;
	size_t n_stored = 0;
	struct options *o;
	struct routes *routes;
	const char *e;
	sigset_t mask;
	int r;

	r = options_parse(argc, argv, &o);
	if (r <= 0)
		return r;
	proxy_configure(&p, o, NULL);
	if (p.opts->verbose)
		log_set_max_level(LOG_DEBUG);
	rlimit_nofile_raise();
	m->upload_sndbuf = p.opts->upload_sndbuf;
	m->settle_rounds_max = SETTLE_ROUNDS_MAX;

	e = getenv("SOCKREDIR_DEBUG_INSERT_DELAY_USEC");
	if (e && parse_size(e, 0, USEC_PER_SEC, &m->debug_insert_delay) < 0)
		log_warning("Ignoring invalid SOCKREDIR_DEBUG_INSERT_DELAY_USEC=%s.", e);
	e = getenv("SOCKREDIR_DEBUG_ATTACH_DELAY_USEC");
	if (e && parse_size(e, 0, USEC_PER_SEC, &m->debug_attach_delay) < 0)
		log_warning("Ignoring invalid SOCKREDIR_DEBUG_ATTACH_DELAY_USEC=%s.", e);
	e = getenv("SOCKREDIR_DEBUG_SETTLE_ROUNDS");
	if (e && parse_size(e, 0, SETTLE_ROUNDS_MAX, &m->settle_rounds_max) < 0)
		log_warning("Ignoring invalid SOCKREDIR_DEBUG_SETTLE_ROUNDS=%s.", e);

	/* A write to a socket whose peer is gone must fail with EPIPE, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	/* sd-event takes these through a signalfd; block them before any thread starts. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SR_SIGNAL_HAND_OVER);
	sigprocmask(SIG_BLOCK, &mask, NULL);

	/* Before the workers fork: they all count into it. */
	r = metrics_table_new(&p.metrics_table);
	if (r < 0) {
		log_error_errno(r, "Failed to map the per-backend counters: %m");
		goto out;
	}
	r = routes_new(p.opts, NULL, p.metrics_table, &routes);
	if (r < 0)
		goto out;
	proxy_configure(&p, p.opts, routes);
	r = listeners_open(p.opts->listen, p.opts->n_listen, p.opts->metrics_listen, &p.listeners,
			   &p.n_listeners, &metrics, &stored, &n_stored);
	if (r < 0)
		goto out;
	p.metrics_listener = &metrics;
	r = routes_check_listeners(p.routes, p.listeners, p.n_listeners);
	if (r < 0)
		goto out;

	r = setup_kernel_path(p.opts, stored, n_stored, &bpf, &p.maps_adopted, p.path_status,
			      sizeof(p.path_status));
	if (r < 0)
		goto out;
	/* Every earlier process's stored fds go to proxy_restore(), in each worker. */
	p.stored = TAKE_PTR(stored);
	p.n_stored = n_stored;
	m->bpf = bpf;
	m->kernel_upload = bpf && p.opts->kernel_upload;
	m->adaptive = p.opts->mode == SR_MODE_AUTO;
	m->cpus = (unsigned)MAX(sysconf(_SC_NPROCESSORS_ONLN), 1L);
	/*
	 * Without BPF the counters still live in shared memory, so that workers add into one set
	 * and the supervisor reads the totals, as they do through sr_proxy_stats.
	 */
	if (bpf)
		m->stats = bpf_state_proxy_stats(bpf);
	else {
		r = stats_runtime_new(p.opts->name, p.path_status, &runtime);
		if (r < 0) {
			log_error_errno(r, "Failed to map the connection counters: %m");
			goto out;
		}
		m->stats = &runtime.mem->proxy;
	}
	/* Adopted maps carry the previous process's counters: this process counts from zero. */
	if (p.maps_adopted)
		memset(m->stats, 0, sizeof(*m->stats));
	r = setup_fd_store(&p, bpf);
	if (r < 0)
		goto out;
	m->stats->workers = p.opts->workers;
	m->stats->main_pid = (uint32_t)getpid();
	m->stats->mode = p.opts->mode;
	m->stats->upload_kernel = m->kernel_upload;
	if (p.opts->kernel_upload && !bpf)
		log_warning("--kernel-upload ignored: the kernel path is not in use.");
	else if (m->kernel_upload)
		log_warning("--kernel-upload: client->backend moves in the kernel, with no memory "
			    "bound against a slow backend. See README.md, \"Known limits\".");

	/*
	 * Loaded, attached and pinned: from here on, sockhash updates and drain probes need only
	 * CAP_BPF, and SO_SNDBUFFORCE CAP_NET_ADMIN. Drop the rest (see user/privileges.c).
	 */
	if (bpf) {
		uint64_t keep = 1ULL << CAP_BPF | (m->kernel_upload ? 1ULL << CAP_NET_ADMIN : 0);

		r = capabilities_keep_only(keep);
		if (r < 0)
			log_warning_errno(r, "Failed to drop capabilities, ignoring: %m");
		else
			log_debug("Capabilities dropped to CAP_BPF%s.",
				  m->kernel_upload ? " and CAP_NET_ADMIN" : "");
	}

	/* With the privileges connect() will have. */
	routes_check_backends(p.routes);

	/* The supervisor returns when its workers are gone; a worker returns 0 and serves. */
	if (p.opts->workers > 1) {
		r = workers_run(&p);
		if (r < 0 || !p.worker)
			goto out;
	}
	r = lifecycle_run(&p);
out:
	lifecycle_done(&p);
	/* For a restart, the pins stay with the connections (the next process replaces them). */
	if (!p.worker && !p.handing_over)
		bpf_state_unpin(bpf);
	p.store = fdstore_free(p.store);
	named_fds_free(stored, n_stored);
	stats_runtime_done(&runtime, !p.worker);
	listeners_free(p.listeners, p.n_listeners);
	listener_done(&metrics);
	metrics_table_free(p.metrics_table);
	return r;
}

int main(int argc, char *argv[])
{
	int r;

	log_open();
	if (argc > 1 && streq(argv[1], "stats"))
		r = stats_main(argc - 1, argv + 1);
	else if (argc > 1 && streq(argv[1], "reload"))
		r = reload_main(argc - 1, argv + 1);
	else
		r = run(argc, argv);

	return r >= 0 ? EXIT_SUCCESS : r == -SR_EUSAGE ? EXIT_USAGE : EXIT_FAILURE;
}
