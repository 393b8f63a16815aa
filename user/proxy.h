/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The proxy: listeners and the accept loop (proxy.c), and the process lifecycle: signals,
 * reload, timers and sd_notify (lifecycle.c).
 */
#ifndef SR_PROXY_H
#define SR_PROXY_H

#include <systemd/sd-event.h>

#include "address.h"
#include "connection.h"
#include "grace.h"
#include "listen.h"
#include "options.h"
#include "peek.h"
#include "routes.h"
#include "splice-path.h"

struct bpf_state;

struct proxy {
	sd_event *event;
	struct listener *listeners;
	size_t n_listeners;

	/* The options in force, and the routes built from them; both replaced by a reload. */
	struct options *opts;
	struct routes *routes;
	/* The command line, kept to parse it again on SIGHUP. */
	int argc;
	char **argv;

	/* Fixed at start-up. */
	unsigned worker;       /* 1..N in a worker process (--workers), 0 otherwise */
	struct bpf_state *bpf; /* NULL when every connection uses splice */
	bool kernel_upload;
	uint64_t upload_sndbuf;
	struct grace *grace;

	struct sr_proxy_stats *stats; /* the mmap of sr_proxy_stats, or of a shared page */
	struct pipe_pool pipes;
	uint8_t peek_buf[PEEK_MAX]; /* one connection peeks at a time: the loop is single-threaded */

	struct connection *connections;
	unsigned n_open; /* the length of connections; stats->open counts every worker's */
	uint64_t next_id;

	/*
	 * Connection sockets are in an epoll set of our own, drained in batches from one sd-event
	 * source: sd-event dispatches one source per loop iteration and polls epoll again for each,
	 * which costs O(ready sockets) per event and collapsed at 1,000 busy connections.
	 */
	int epoll_fd;
	sd_event_source *epoll_source;
	bool dispatching; /* inside a batch: freed connections go to dead */
	struct connection *dead;

	bool accept_paused;    /* out of fds: listeners off until a connection closes */
	unsigned n_waiting_fd; /* accepted connections waiting for an fd to connect: served
				 * before any new client is accepted */
	bool listeners_on;
	sd_event_source *accept_resume;
	uint64_t accept_pause_logged_at;

	/* Connect failures are logged once per burst, then counted. */
	uint64_t connect_fail_logged_at;
	unsigned connect_fail_suppressed;

	/* Test hook: pause between connect and insert, so that a backend speaking first is
	 * certain to have bytes queued (SOCKREDIR_DEBUG_INSERT_DELAY_USEC). */
	uint64_t debug_insert_delay;

	bool stopping;
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
};

/* Serve until SIGTERM/SIGINT and the drain are over. Returns 0 or negative errno (logged). */
int proxy_run(struct proxy *p);
/* Free what proxy_run() set up; connections still open are closed. */
void proxy_done(struct proxy *p);

/* proxy.c */
int proxy_listen(struct proxy *p);
/* Turn the listeners on or off, from the fd shortage, --max-connections and stopping. */
void proxy_update_listeners(struct proxy *p);
/* Called by a connection when it is freed: maybe resume accepting, maybe finish a drain. */
void proxy_connection_closed(struct proxy *p);
/* Resume accepting after an fd shortage, unless accepted connections still wait for fds. */
void proxy_resume_accept(struct proxy *p);
/*
 * Out of fds (error is EMFILE or ENFILE): stop accepting until a connection closes, so that the
 * connections we have can still get the fds they need. Logs once per pause.
 */
void proxy_pause_accept(struct proxy *p, int error);
/* Log that no backend of route rt could be reached, once per burst. */
void proxy_log_connect_failure(struct proxy *p, int error, const struct route *rt);
size_t proxy_count_connections(const struct proxy *p);

/* lifecycle.c */
int lifecycle_setup(struct proxy *p);
/* Open connections changed: arm or disarm the --exit-idle-time timer. */
void lifecycle_connections_changed(struct proxy *p);
/* STATUS= from the shared counters, if it changed since the last one (clear last_status to force). */
void lifecycle_send_status(struct proxy *p);

#endif /* SR_PROXY_H */
