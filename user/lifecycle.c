// SPDX-License-Identifier: GPL-2.0
/*
 * The process lifecycle: the event loop, signals (SIGTERM/SIGINT drain, SIGHUP reload),
 * sd_notify (READY, STOPPING, RELOADING, STATUS, WATCHDOG) and the timers that are not any one
 * connection's: --exit-idle-time and the --idle-timeout sweep.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "bpf-loader.h"
#include "lifecycle.h"
#include "fdstore.h"
#include "keep.h"
#include "listen.h"
#include "log.h"
#include "metrics-http.h"
#include "metrics.h"
#include "options.h"
#include "routes.h"
#include "stats.h"

/* How often STATUS= may change. */
#define STATUS_INTERVAL (2 * USEC_PER_SEC)
/* The idle sweep runs this many times per --idle-timeout, within these bounds. */
#define IDLE_SWEEPS_PER_TIMEOUT 4
#define IDLE_SWEEP_MIN		(100 * USEC_PER_MSEC)
#define IDLE_SWEEP_MAX		(10 * USEC_PER_SEC)

static void proxy_exit(struct proxy *p)
{
	connections_abort_all(&p->setup.conns);
	(void)sd_event_exit(p->event, 0);
}

/* The kernel path's counters, summed over CPUs; zeros without it. */
static struct sr_kstats read_kstats(struct proxy *p)
{
	struct bpf_state *bpf = proxy_movers(p)->bpf;
	struct sr_kstats k = {};

	if (bpf && bpf_state_read_kstats(bpf, &k) < 0) {
		log_debug_errno(errno, "Failed to read " SR_MAP_KSTATS ", ignoring: %m");
		k = (struct sr_kstats){};
	}
	return k;
}

void lifecycle_log_summary(struct proxy *p)
{
	struct sr_kstats k = read_kstats(p);

	stats_log_summary(proxy_movers(p)->stats, &k);
}

void lifecycle_send_status(struct proxy *p)
{
	struct sr_kstats k = read_kstats(p);
	char status[sizeof(p->last_status)];

	stats_format_status(proxy_movers(p)->stats, &k, p->path_status, status, sizeof(status));
	if (streq(status, p->last_status))
		return;
	(void)sd_notifyf(false, "STATUS=%s", status);
	snprintf(p->last_status, sizeof(p->last_status), "%s", status);
}

static int on_status_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct proxy *p = userdata;

	lifecycle_send_status(p);
	return sd_event_source_set_time_relative(s, STATUS_INTERVAL);
}

static int on_drain_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct proxy *p = userdata;

	log_notice("Drain timeout reached: closing %zu connection(s).", proxy_count_connections(p));
	proxy_exit(p);
	return 0;
}

/* Whether a stop signal means "close everything now" rather than "drain". */
static bool stop_now(const struct proxy *p, const struct signalfd_siginfo *si)
{
	/* One process: the first signal drains, the second closes everything. */
	if (!p->worker)
		return p->stopping;
	/*
	 * A worker can get the same stop twice, from systemd and from the supervisor, in either
	 * order. Only the supervisor, which sees the signals sent to the service, escalates.
	 */
	return si->ssi_code == SI_QUEUE && si->ssi_pid == (uint32_t)getppid() &&
	       si->ssi_int == SR_STOP_NOW;
}

/*
 * Whether this stop is a restart, so that connections go to the next process through the fd
 * store instead of draining. The signal is the same for both: systemd's job for the unit is not.
 */
static bool stop_is_restart(struct proxy *p, const struct signalfd_siginfo *si)
{
	int r;

	if (!p->keep || si->ssi_signo != SIGTERM)
		return false;
	/*
	 * In a worker, the supervisor asks systemd and says so with SR_SIGNAL_HAND_OVER. If it is
	 * gone, it crashed: the next process takes over.
	 */
	if (p->worker)
		return getppid() != p->supervisor_pid;
	r = fdstore_stop_is_restart();
	if (r < 0)
		log_warning_errno(
			r, "Could not ask systemd whether this is a restart; draining as for "
			   "a stop: %m");
	return r > 0;
}

/* Exit now, leaving every connection that can be kept to the next process. */
static void hand_over(struct proxy *p)
{
	unsigned kept = 0, left = 0;
	int r;

	proxy_stop_accepting(p);
	r = keep_hand_over(p->keep, &kept, &left);
	if (r < 0)
		log_warning_errno(r, "Failed to keep every connection in the fd store: %m");
	if (left > 0)
		log_warning(
			"Restart: %u connection(s) handed over to the next process; %u could not "
			"be kept and close now.",
			kept, left);
	else
		log_info("Restart: %u connection(s) handed over to the next process.", kept);
	(void)sd_notify(false, "STOPPING=1\nSTATUS=Restarting: connections kept in the fd store");
	p->handing_over = true;
	(void)sd_event_exit(p->event, 0);
}

static int on_hand_over(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	struct proxy *p = userdata;

	if (p->keep && !p->handing_over && si->ssi_pid == (uint32_t)getppid())
		hand_over(p);
	return 0;
}

static int on_terminate(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	struct proxy *p = userdata;
	const char *sig = sigabbrev_np((int)si->ssi_signo);
	size_t n = proxy_count_connections(p);
	int r;

	if (p->handing_over)
		return 0;
	if (stop_now(p, si)) {
		log_notice("Signal %s again: closing all connections now.", sig);
		proxy_exit(p);
		return 0;
	}
	if (stop_is_restart(p, si)) {
		hand_over(p);
		return 0;
	}
	/* A worker's second copy of the same stop (see workers.h). */
	if (p->stopping)
		return 0;

	(void)sd_notify(false, "STOPPING=1\nSTATUS=Draining connections...");
	proxy_stop_accepting(p);
	(void)sd_event_source_set_enabled(p->exit_idle_timer, SD_EVENT_OFF);

	if (n == 0) {
		log_info("Received SIG%s, exiting.", sig);
		(void)sd_event_exit(p->event, 0);
		return 0;
	}

	log_info("Received SIG%s: no longer accepting; waiting up to %" PRIu64
		 " ms for %zu connection(s) to finish.",
		 sig, (uint64_t)(p->opts->drain_timeout / USEC_PER_MSEC), n);
	r = sd_event_add_time_relative(p->event, &p->drain_timer, CLOCK_MONOTONIC,
				       p->opts->drain_timeout, USEC_PER_MSEC, on_drain_timeout, p);
	if (r < 0) {
		log_warning_errno(r, "Failed to arm the drain timer, closing at once: %m");
		proxy_exit(p);
	}
	return 0;
}

/* The options a reload can't change, because the process is built on them. */
static void warn_fixed_options(const struct options *old, const struct options *new)
{
	bool listen_changed = old->n_listen != new->n_listen ||
			      ((old->metrics_listen || new->metrics_listen) &&
			       !streq(old->metrics_listen, new->metrics_listen));

	for (size_t i = 0; !listen_changed && i < old->n_listen; i++)
		listen_changed = !streq(old->listen[i], new->listen[i]);
	if (old->mode != new->mode || old->kernel_upload != new->kernel_upload ||
	    old->upload_sndbuf != new->upload_sndbuf || !streq(old->name, new->name) ||
	    !streq(old->pin_path, new->pin_path) || old->map_entries != new->map_entries ||
	    old->workers != new->workers || listen_changed)
		log_warning(
			"Reload: mode, kernel-upload, upload-sndbuf, name, pin-path, "
			"map-entries, workers, listen and metrics-listen take effect only at start; "
			"keeping the old values.");
}

static int arm_idle_sweep(struct proxy *p);
static void connections_changed(struct proxy *p);

/*
 * SIGHUP: parse the command line and the config file again. Routes, backends, limits and
 * timeouts change; open connections keep going as they are. If anything fails, the old
 * configuration stays, whole.
 */
static int on_reload(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	struct proxy *p = userdata;
	_cleanup_(options_freep) struct options *o = NULL;
	_cleanup_(routes_freep) struct routes *r = NULL;
	int k;

	if (p->stopping)
		return 0;
	(void)sd_notifyf(false, "RELOADING=1\nSTATUS=Reloading...\nMONOTONIC_USEC=%" PRIu64,
			 now_usec());

	k = options_parse(p->argc, p->argv, &o);
	if (k == 0)
		k = -EINVAL;
	if (k >= 0)
		k = routes_new(o, p->routes, p->metrics_table, &r);
	if (k >= 0)
		k = routes_check_listeners(r, p->listeners, p->n_listeners);
	if (k < 0) {
		log_error("Reload failed; keeping the configuration in force.");
		(void)sd_notify(false, "READY=1");
		p->last_status[0] = 0;
		lifecycle_send_status(p);
		/* Last: `sockredir reload` returns when it sees this. */
		stat_inc(proxy_movers(p)->stats->reloads_failed);
		return 0;
	}

	warn_fixed_options(p->opts, o);
	/* Keep what the process was built on; take everything else. */
	free(o->name);
	o->name = TAKE_PTR(p->opts->name);
	free(o->pin_path);
	o->pin_path = TAKE_PTR(p->opts->pin_path);
	o->mode = p->opts->mode;
	o->kernel_upload = p->opts->kernel_upload;
	o->upload_sndbuf = p->opts->upload_sndbuf;
	o->map_entries = p->opts->map_entries;
	o->workers = p->opts->workers;

	proxy_configure(p, TAKE_PTR(o), TAKE_PTR(r));
	if (p->opts->verbose)
		log_set_max_level(LOG_DEBUG);

	proxy_update_listeners(p);
	connections_changed(p);
	(void)arm_idle_sweep(p);
	log_info("Reloaded: %zu default backend(s), %zu listener route(s), %zu host route(s).",
		 p->routes->fallback->n_backends, p->routes->n_by_listener, p->routes->n_by_host);
	routes_check_backends(p->routes);
	(void)sd_notify(false, "READY=1");
	p->last_status[0] = 0;
	lifecycle_send_status(p);
	/* Last: `sockredir reload` returns when it sees this. */
	stat_inc(proxy_movers(p)->stats->reloads);
	return 0;
}

static int on_exit_idle(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct proxy *p = userdata;

	if (proxy_count_connections(p) > 0)
		return 0;
	log_info("No connection for %" PRIu64 " ms: exiting (--exit-idle-time).",
		 (uint64_t)(p->opts->exit_idle_time / USEC_PER_MSEC));
	p->stopping = true;
	(void)sd_notify(false, "STOPPING=1");
	(void)sd_event_exit(p->event, 0);
	return 0;
}

/* Open connections changed: arm or disarm the --exit-idle-time timer. */
static void connections_changed(struct proxy *p)
{
	int r;

	if (!p->exit_idle_timer || p->stopping)
		return;
	/* With workers, idleness is the supervisor's to judge, from every worker's count. */
	if (proxy_count_connections(p) > 0 || p->opts->exit_idle_time == 0 ||
	    p->opts->workers > 1) {
		(void)sd_event_source_set_enabled(p->exit_idle_timer, SD_EVENT_OFF);
		return;
	}
	/* Already counting down since the last connection closed: let it run. */
	if (sd_event_source_get_enabled(p->exit_idle_timer, NULL) > 0)
		return;
	r = sd_event_source_set_time_relative(p->exit_idle_timer, p->opts->exit_idle_time);
	if (r >= 0)
		r = sd_event_source_set_enabled(p->exit_idle_timer, SD_EVENT_ONESHOT);
	if (r < 0)
		log_warning_errno(r, "Failed to arm the exit-idle timer, ignoring: %m");
}

/* --idle-timeout: see connections_close_idle(). */
static int on_idle_sweep(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct proxy *p = userdata;

	if (p->opts->idle_timeout)
		connections_close_idle(&p->setup.conns, p->opts->idle_timeout);
	return arm_idle_sweep(p);
}

static int arm_idle_sweep(struct proxy *p)
{
	uint64_t t = p->opts->idle_timeout / IDLE_SWEEPS_PER_TIMEOUT;
	int r;

	if (p->opts->idle_timeout == 0)
		return sd_event_source_set_enabled(p->idle_sweep, SD_EVENT_OFF);
	t = MAX(MIN(t, IDLE_SWEEP_MAX), IDLE_SWEEP_MIN);
	r = sd_event_source_set_time_relative(p->idle_sweep, t);
	if (r < 0)
		return r;
	return sd_event_source_set_enabled(p->idle_sweep, SD_EVENT_ONESHOT);
}

static int lifecycle_setup(struct proxy *p)
{
	int r;

	r = sd_event_default(&p->event);
	if (r < 0)
		return log_error_errno(r, "Failed to allocate event loop: %m");

	r = sd_event_add_signal(p->event, NULL, SIGTERM, on_terminate, p);
	if (r >= 0)
		r = sd_event_add_signal(p->event, NULL, SIGINT, on_terminate, p);
	if (r >= 0)
		r = sd_event_add_signal(p->event, NULL, SIGHUP, on_reload, p);
	if (r >= 0 && p->worker)
		r = sd_event_add_signal(p->event, NULL, SR_SIGNAL_HAND_OVER, on_hand_over, p);
	if (r < 0)
		return log_error_errno(r, "Failed to watch signals: %m");

	/* WATCHDOG=1 at half of WATCHDOG_USEC, when the service manager asks for it. */
	r = sd_event_set_watchdog(p->event, true);
	if (r < 0)
		log_warning_errno(r, "Failed to enable the watchdog, ignoring: %m");

	r = sd_event_add_time_relative(p->event, &p->exit_idle_timer, CLOCK_MONOTONIC, 0,
				       USEC_PER_MSEC, on_exit_idle, p);
	if (r >= 0)
		r = sd_event_source_set_enabled(p->exit_idle_timer, SD_EVENT_OFF);
	if (r >= 0)
		r = sd_event_add_time_relative(p->event, &p->idle_sweep, CLOCK_MONOTONIC, 0,
					       USEC_PER_MSEC, on_idle_sweep, p);
	if (r >= 0)
		r = arm_idle_sweep(p);
	if (r >= 0)
		r = sd_event_add_time_relative(p->event, &p->status_timer, CLOCK_MONOTONIC,
					       STATUS_INTERVAL, USEC_PER_SEC, on_status_timer, p);
	if (r >= 0)
		r = sd_event_source_set_enabled(p->status_timer, SD_EVENT_ON);
	if (r < 0)
		return log_error_errno(r, "Failed to set up timers: %m");

	return 0;
}

/* The body of GET /metrics: every worker's counters, from the shared pages. */
static int render_metrics(FILE *f, enum metrics_format fmt, void *userdata)
{
	struct proxy *p = userdata;
	struct movers *m = proxy_movers(p);
	struct sr_kstats k = read_kstats(p);
	struct metrics_input in = {
		.proxy = m->stats,
		.kernel = m->bpf ? &k : NULL,
		.shared = p->metrics_table,
		.version = SR_VERSION,
		.now = now_usec(),
	};

	return metrics_write(f, &in, 1, fmt);
}

/* Every worker serves /metrics on the shared listener: the kernel hands each scrape to one. */
static int metrics_start(struct proxy *p)
{
	const struct listener *l = p->metrics_listener;
	char addr[SR_ADDRESS_STRLEN];
	int r;

	if (!l || l->fd < 0)
		return 0;
	r = metrics_server_new(p->event, l->fd, render_metrics, p, &p->metrics_server);
	if (r < 0)
		return log_error_errno(r, "Failed to serve metrics on %s: %m", l->name);
	address_to_string(&l->addr, addr, sizeof(addr));
	if (streq(addr, l->name))
		log_info("Serving metrics on %s.", addr);
	else
		log_info("Serving metrics on %s (%s).", addr, l->name);
	return 0;
}

int lifecycle_run(struct proxy *p)
{
	struct movers *m = proxy_movers(p);
	int r;

	r = lifecycle_setup(p);
	if (r < 0)
		return r;
	p->connections_changed = connections_changed;
	r = proxy_start(p);
	if (r >= 0)
		r = proxy_restore(p);
	if (r >= 0)
		r = metrics_start(p);
	if (r < 0)
		return r;
	connections_changed(p);

	/* Ready: the listeners are watched and, if it is in use, the kernel path is attached. */
	(void)sd_notify(false, "READY=1");
	lifecycle_send_status(p);
	log_info("Forwarding %zu listener(s) on the %s path%s: %zu default backend(s), %zu "
		 "listener route(s), %zu host route(s).",
		 p->n_listeners, m->bpf ? "kernel" : "splice",
		 m->kernel_upload ? " (both directions in the kernel)" : "",
		 p->routes->fallback->n_backends, p->routes->n_by_listener, p->routes->n_by_host);

	r = sd_event_loop(p->event);
	if (r < 0)
		return log_error_errno(r, "Event loop failed: %m");

	/* The counters are every worker's: the supervisor logs them once. */
	if (!p->worker)
		lifecycle_log_summary(p);
	return 0;
}

void lifecycle_done(struct proxy *p)
{
	p->metrics_server = metrics_server_free(p->metrics_server);
	proxy_done(p);
	p->drain_timer = sd_event_source_disable_unref(p->drain_timer);
	p->exit_idle_timer = sd_event_source_disable_unref(p->exit_idle_timer);
	p->idle_sweep = sd_event_source_disable_unref(p->idle_sweep);
	p->status_timer = sd_event_source_disable_unref(p->status_timer);
	p->event = sd_event_unref(p->event);
}
