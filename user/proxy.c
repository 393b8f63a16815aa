// SPDX-License-Identifier: GPL-2.0
/* Listeners and the accept loop: when to accept, and what to do when accepting fails. */
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "fdstore.h"
#include "keep.h"
#include "listen.h"
#include "log.h"
#include "options.h"
#include "proxy.h"
#include "routes.h"

/* Accepts per listener wakeup, so that a flood can't starve open connections. */
#define ACCEPT_BATCH 64
/* Out of fds: try accepting again after this, or as soon as a connection closes. */
#define ACCEPT_PAUSE (1 * USEC_PER_SEC)
/* Pauses within this window after a logged one are logged at debug level. */
#define ACCEPT_PAUSE_LOG_INTERVAL (60 * USEC_PER_SEC)

size_t proxy_count_connections(const struct proxy *p)
{
	return p->setup.conns.n_open;
}

/*
 * Accept only when it makes sense. At --max-connections the listeners go off and clients wait
 * in the kernel's backlog, instead of being accepted and closed; below it they come back on.
 */
void proxy_update_listeners(struct proxy *p)
{
	/*
	 * Workers split the limit and count their own connections: with the shared count, a
	 * worker turned off by the others' connections would wait for one of its own to close.
	 */
	unsigned max = DIV_ROUND_UP(p->opts->max_connections, p->opts->workers);
	unsigned n_open = p->setup.conns.n_open;
	bool on = !p->stopping && !p->accept_paused && !(max && n_open >= max);

	if (on == p->listeners_on)
		return;
	for (size_t i = 0; i < p->n_listeners; i++)
		(void)sd_event_source_set_enabled(p->listeners[i].event_source,
						  on ? SD_EVENT_ON : SD_EVENT_OFF);
	p->listeners_on = on;
	log_debug("%s accepting (%u open).", on ? "Resuming" : "Pausing", n_open);
}

/* Resume accepting after an fd shortage, unless accepted connections still wait for fds. */
static void proxy_resume_accept(struct proxy *p)
{
	/* Fds freed now go first to connections we already accepted. */
	if (!p->accept_paused || p->stopping)
		return;
	if (p->setup.n_waiting_fd > 0) {
		log_debug("Not accepting yet: %u connection(s) wait for fds.",
			  p->setup.n_waiting_fd);
		return;
	}
	p->accept_paused = false;
	(void)sd_event_source_set_enabled(p->accept_resume, SD_EVENT_OFF);
	proxy_update_listeners(p);
}

static int on_accept_resume(sd_event_source *s, uint64_t usec, void *userdata)
{
	proxy_resume_accept(userdata);
	return 0;
}

/*
 * Out of fds (error is -EMFILE or -ENFILE): stop accepting until a connection closes, so that the
 * connections we have can still get the fds they need. Logs once per pause.
 */
static void proxy_pause_accept(struct proxy *p, int error)
{
	int r;

	/* Spare pipes are fds too: give them back first. */
	pipe_pool_clear(&proxy_movers(p)->pipes);
	if (p->accept_paused)
		return;

	/*
	 * accept() fails with EMFILE while the connection stays queued, so epoll would report
	 * the listener again at once: stop watching until an fd is freed, or a second passes.
	 */
	if (log_ratelimit(&p->accept_pause_logged_at, ACCEPT_PAUSE_LOG_INTERVAL))
		log_warning_errno(error, "Out of file descriptors (%m): pausing accepting until a "
					 "connection closes.");
	else
		log_debug_errno(error, "Out of file descriptors (%m): pausing accepting.");
	p->accept_paused = true;
	proxy_update_listeners(p);

	/* The source exists from start-up: creating one now could need the fd we lack. */
	r = sd_event_source_set_time_relative(p->accept_resume, ACCEPT_PAUSE);
	if (r >= 0)
		r = sd_event_source_set_enabled(p->accept_resume, SD_EVENT_ONESHOT);
	if (r < 0)
		log_warning_errno(r, "Failed to arm the accept timer, ignoring: %m");
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct listener *l = userdata;
	struct proxy *p = l->proxy;

	for (unsigned i = 0; i < ACCEPT_BATCH && p->listeners_on; i++) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (cfd < 0) {
			switch (errno) {
			case EAGAIN:
				return 0;
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				proxy_pause_accept(p, errno);
				return 0;
			case EINTR:
			case ECONNABORTED:
			case EPROTO:
			case EPERM:
				/* The client went away before we took it, or a firewall said no. */
				continue;
			default:
				log_error_errno(errno,
						"Failed to accept on %s, no longer listening: %m",
						l->name);
				(void)sd_event_source_set_enabled(s, SD_EVENT_OFF);
				return 0;
			}
		}
		if (setup_accepted(&p->setup, cfd, l) < 0)
			log_warning_errno(ENOMEM, "Failed to set up a connection: %m");
		proxy_update_listeners(p);
	}
	p->connections_changed(p);
	return 0;
}

static void on_connection_closed(struct connections *cs)
{
	struct proxy *p = container_of(cs, struct proxy, setup.conns);

	if (p->stopping) {
		if (!cs->list)
			(void)sd_event_exit(p->event, 0);
		return;
	}
	proxy_resume_accept(p);
	proxy_update_listeners(p);
	p->connections_changed(p);
}

static void on_out_of_fds(struct connections *cs, int error)
{
	proxy_pause_accept(container_of(cs, struct proxy, setup.conns), error);
}

static void on_fds_back(struct setup *s)
{
	proxy_resume_accept(container_of(s, struct proxy, setup));
}

int proxy_start(struct proxy *p)
{
	char addr[SR_ADDRESS_STRLEN];
	int r;

	p->setup.conns.closed = on_connection_closed;
	p->setup.conns.out_of_fds = on_out_of_fds;
	p->setup.fds_back = on_fds_back;
	r = setup_init(&p->setup, p->event);
	if (r < 0)
		return r;

	/*
	 * Created now and kept: its timerfd, shared by every CLOCK_MONOTONIC timer, must not have
	 * to be opened when fds run out.
	 */
	r = sd_event_add_time_relative(p->event, &p->accept_resume, CLOCK_MONOTONIC, ACCEPT_PAUSE,
				       0, on_accept_resume, p);
	if (r >= 0)
		r = sd_event_source_set_enabled(p->accept_resume, SD_EVENT_OFF);
	if (r < 0)
		return log_error_errno(r, "Failed to set up the accept timer: %m");

	for (size_t i = 0; i < p->n_listeners; i++) {
		struct listener *l = &p->listeners[i];
		sd_event_source *src;

		l->proxy = p;
		r = sd_event_add_io(p->event, &src, l->fd, EPOLLIN, on_accept, l);
		if (r < 0)
			return log_error_errno(r, "Failed to watch listener %s: %m", l->name);
		l->event_source = src;
		log_debug("Listening on %s (%s).", address_to_string(&l->addr, addr, sizeof(addr)),
			  l->name);
	}
	p->listeners_on = true;
	proxy_update_listeners(p);
	return 0;
}

static bool startswith_bpf(const char *name)
{
	return strncmp(name, KEEP_BPF_PREFIX, strlen(KEEP_BPF_PREFIX)) == 0;
}

/* A kept client socket still in setup: set it up again, as if just accepted on its listener. */
static void on_fresh(void *userdata, int fd, const char *listener)
{
	struct proxy *p = userdata;

	for (size_t i = 0; i < p->n_listeners; i++)
		if (streq(p->listeners[i].name, listener)) {
			if (setup_accepted(&p->setup, fd, &p->listeners[i]) < 0)
				log_debug("Out of memory setting up a kept connection again.");
			return;
		}
	/* Its listener is gone from the configuration: nothing to route it by. */
	log_debug("Kept connection from listener %s: no such listener any more, closing.",
		  listener);
	(void)shutdown(fd, SHUT_RDWR);
	safe_close(fd);
}

int proxy_restore(struct proxy *p)
{
	unsigned share = p->worker ? p->worker - 1 : 0, n_shares = p->worker ? p->opts->workers : 1;
	int r;

	if (!p->store)
		return 0;
	r = keep_new(p->store, &p->setup.conns, &p->keep);
	if (r < 0) {
		/*
		 * Serve all the same, and say so. What earlier processes kept can't be taken over
		 * without a record: out of the store with it, so that its sockets close.
		 */
		log_warning("Connections will not survive a restart or a crash: the fd store "
			    "refused the state record.");
		for (size_t i = 0; i < p->n_stored; i++)
			if (!startswith_bpf(p->stored[i].name))
				(void)fdstore_remove(p->store, p->stored[i].name);
		named_fds_free(p->stored, p->n_stored);
		p->stored = NULL;
		p->n_stored = 0;
		return 0;
	}
	r = keep_restore(p->keep, p->stored, p->n_stored, share, n_shares, p->maps_adopted,
			 on_fresh, p);
	named_fds_free(p->stored, p->n_stored);
	p->stored = NULL;
	p->n_stored = 0;
	if (r < 0)
		return log_error_errno(r, "Failed to take back the kept connections: %m");
	return 0;
}

void proxy_stop_accepting(struct proxy *p)
{
	p->stopping = true;
	proxy_update_listeners(p);
	(void)sd_event_source_set_enabled(p->accept_resume, SD_EVENT_OFF);
}

void proxy_configure(struct proxy *p, struct options *o, struct routes *r)
{
	if (o != p->opts)
		options_free(p->opts);
	if (r != p->routes)
		routes_free(p->routes);
	p->opts = o;
	p->routes = r;
	setup_configure(&p->setup, o, r);
}

void proxy_done(struct proxy *p)
{
	connections_done(&p->setup.conns);
	p->keep = keep_free(p->keep);
	named_fds_free(p->stored, p->n_stored);
	p->stored = NULL;
	p->n_stored = 0;
	for (size_t i = 0; i < p->n_listeners; i++)
		p->listeners[i].event_source =
			sd_event_source_disable_unref(p->listeners[i].event_source);
	p->accept_resume = sd_event_source_disable_unref(p->accept_resume);
	proxy_configure(p, NULL, NULL);
}
