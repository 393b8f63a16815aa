/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The proxy: one process's listeners, configuration and connections, and the accept loop
 * (proxy.c). Its event loop, signals and timers are lifecycle.c's, the layer above.
 */
#ifndef SR_PROXY_H
#define SR_PROXY_H

#include <systemd/sd-event.h>

#include "setup.h"

struct fdstore;
struct keep;
struct listener;
struct metrics_server;
struct named_fd;
struct options;
struct routes;
struct sr_metrics_shared;

struct proxy {
	sd_event *event;
	struct listener *listeners;
	size_t n_listeners;

	/* The options in force, and the routes built from them: proxy_configure() sets both. */
	struct options *opts;
	struct routes *routes;
	/* The command line, kept to parse it again on SIGHUP. */
	int argc;
	char **argv;

	unsigned worker; /* 1..N in a worker process (--workers), 0 otherwise */
	/* Every connection, from accept to close; setup.conns.movers is fixed at start-up. */
	struct setup setup;

	bool stopping;	    /* draining: no more accepting */
	bool accept_paused; /* out of fds: listeners off until a connection closes */
	bool listeners_on;
	sd_event_source *accept_resume;
	uint64_t accept_pause_logged_at;

	/* lifecycle.c's: told when the open connections changed (accepted or closed). */
	void (*connections_changed)(struct proxy *p);
	/* GET /metrics: on this listener if it has an fd, from these shared counters. */
	const struct listener *metrics_listener;
	struct sr_metrics_shared *metrics_table;
	struct metrics_server *metrics_server;
	sd_event_source *drain_timer;
	sd_event_source *exit_idle_timer;
	sd_event_source *idle_sweep;
	sd_event_source *status_timer;
	char last_status[512];
	/*
	 * Which path this instance runs on, first in STATUS=: "Kernel path", or "Splice only" and
	 * why, so that `systemctl status` shows a downgrade.
	 */
	char path_status[192];

	/*
	 * systemd's fd store (NULL: none), what earlier processes left in it (taken by
	 * proxy_restore()), and this process's keeping of its connections there (keep.c).
	 */
	struct fdstore *store;
	struct named_fd *stored;
	size_t n_stored;
	bool maps_adopted; /* the previous process's maps are ours: its kernel path resumes */
	struct keep *keep;
	/* Exiting for a restart, with the connections left to the next process: keep the pins. */
	bool handing_over;
	pid_t supervisor_pid; /* in a worker */
};

/* What every connection's movers share: the BPF state, the counters, the pipes. */
static inline struct movers *proxy_movers(struct proxy *p)
{
	return &p->setup.conns.movers;
}

/* Set up the connections and watch the listeners, on p->event. */
int proxy_start(struct proxy *p);
/*
 * With the fd store: keep connections there from now on, and take back what earlier processes
 * kept (this process's share of it, with --workers). Logs what it did.
 */
int proxy_restore(struct proxy *p);
/* Close every connection and stop watching the listeners. */
void proxy_done(struct proxy *p);
/* Take these options and routes (the old ones are freed), for connections accepted from now. */
void proxy_configure(struct proxy *p, struct options *o, struct routes *r);
/* Stop accepting for good: the drain before exit. */
void proxy_stop_accepting(struct proxy *p);
/* Turn the listeners on or off, from the fd shortage, --max-connections and stopping. */
void proxy_update_listeners(struct proxy *p);
size_t proxy_count_connections(const struct proxy *p);

#endif /* SR_PROXY_H */
