// SPDX-License-Identifier: GPL-2.0
/* Listeners, the accept loop, and the process lifecycle: READY=1, SIGTERM, draining. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>

#include <systemd/sd-daemon.h>

#include "bpf-loader.h"
#include "log.h"
#include "proxy.h"
#include "stats.h"

/* Accepts per listener wakeup, so that a flood can't starve open connections. */
#define ACCEPT_BATCH 64
/* Out of fds: try accepting again after this, or as soon as a connection closes. */
#define ACCEPT_PAUSE (1 * USEC_PER_SEC)
/* Pauses within this window after a logged one are logged at debug level. */
#define ACCEPT_PAUSE_LOG_INTERVAL (60 * USEC_PER_SEC)
/* Connect failures within this window after a logged one are only counted. */
#define CONNECT_FAIL_LOG_INTERVAL (5 * USEC_PER_SEC)

static void listeners_enable(struct proxy *p, bool on)
{
	for (size_t i = 0; i < p->n_listeners; i++)
		(void)sd_event_source_set_enabled(p->listeners[i].event_source,
						  on ? SD_EVENT_ON : SD_EVENT_OFF);
}

void proxy_resume_accept(struct proxy *p)
{
	/* Fds freed now go first to connections we already accepted. */
	if (!p->accept_paused || p->stopping)
		return;
	if (p->n_waiting_fd > 0) {
		log_debug("Not accepting yet: %u connection(s) wait for fds.", p->n_waiting_fd);
		return;
	}
	p->accept_paused = false;
	(void)sd_event_source_set_enabled(p->accept_resume, SD_EVENT_OFF);
	listeners_enable(p, true);
	log_debug("Accepting again.");
}

static int on_accept_resume(sd_event_source *s, uint64_t usec, void *userdata)
{
	proxy_resume_accept(userdata);
	return 0;
}

void proxy_pause_accept(struct proxy *p, int error)
{
	int r;

	uint64_t now = now_usec();

	/*
	 * accept() fails with EMFILE while the connection stays queued, so epoll would report
	 * the listener again at once: stop watching until an fd is freed, or a second passes.
	 */
	/* Spare pipes are fds too: give them back first. */
	pipe_pool_clear(&p->pipes);
	if (p->accept_paused)
		return;
	if (!p->accept_pause_logged_at || now - p->accept_pause_logged_at > ACCEPT_PAUSE_LOG_INTERVAL) {
		log_warning_errno(error, "Out of file descriptors (%m): pausing accepting until a "
					 "connection closes.");
		p->accept_pause_logged_at = now;
	} else
		log_debug_errno(error, "Out of file descriptors (%m): pausing accepting.");
	p->accept_paused = true;
	listeners_enable(p, false);

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
	bool is_unix = l->addr.sa.sa_family == AF_UNIX;

	for (unsigned i = 0; i < ACCEPT_BATCH && !p->accept_paused; i++) {
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
				log_error_errno(errno, "Failed to accept on %s, no longer listening: %m",
						l->name);
				(void)sd_event_source_set_enabled(s, SD_EVENT_OFF);
				return 0;
			}
		}
		if (connection_new(p, cfd, is_unix) < 0)
			log_warning_errno(ENOMEM, "Failed to set up a connection: %m");
	}
	return 0;
}

void proxy_log_connect_failure(struct proxy *p, int error)
{
	char addr[SR_ADDRESS_STRLEN];
	uint64_t now = now_usec();

	p->stats->connect_failed++;
	if (p->connect_fail_logged_at && now - p->connect_fail_logged_at < CONNECT_FAIL_LOG_INTERVAL) {
		p->connect_fail_suppressed++;
		return;
	}
	if (p->connect_fail_suppressed > 0)
		log_warning_errno(error, "Failed to connect to backend %s: %m (and %u more failures "
					 "since the last message). Closing the client.",
				  address_to_string(p->backend, addr, sizeof(addr)),
				  p->connect_fail_suppressed);
	else
		log_warning_errno(error, "Failed to connect to backend %s: %m. Closing the client.",
				  address_to_string(p->backend, addr, sizeof(addr)));
	p->connect_fail_logged_at = now;
	p->connect_fail_suppressed = 0;
}

static void proxy_exit(struct proxy *p)
{
	/* Each abort frees one connection; take the head until none is left. */
	while (p->connections)
		connection_abort(p->connections);
	(void)sd_event_exit(p->event, 0);
}

void proxy_connection_closed(struct proxy *p)
{
	if (p->stopping) {
		if (!p->connections)
			(void)sd_event_exit(p->event, 0);
		return;
	}
	proxy_resume_accept(p);
}

static int on_drain_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct proxy *p = userdata;
	size_t n = 0;

	for (struct connection *c = p->connections; c; c = c->next)
		n++;
	log_notice("Drain timeout reached: closing %zu connection(s).", n);
	proxy_exit(p);
	return 0;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
	struct proxy *p = userdata;
	size_t n = 0;
	int r;

	if (p->stopping) {
		log_notice("Signal %s again: closing all connections now.",
			   sigabbrev_np((int)si->ssi_signo));
		proxy_exit(p);
		return 0;
	}

	p->stopping = true;
	(void)sd_notify(false, "STOPPING=1\nSTATUS=Draining connections...");
	listeners_enable(p, false);
	(void)sd_event_source_set_enabled(p->accept_resume, SD_EVENT_OFF);

	for (struct connection *c = p->connections; c; c = c->next)
		n++;
	if (n == 0) {
		log_info("Received SIG%s, exiting.", sigabbrev_np((int)si->ssi_signo));
		(void)sd_event_exit(p->event, 0);
		return 0;
	}

	log_info("Received SIG%s: no longer accepting; waiting up to %" PRIu64
		 " ms for %zu connection(s) to finish.",
		 sigabbrev_np((int)si->ssi_signo), (uint64_t)(p->drain_timeout / USEC_PER_MSEC), n);
	r = sd_event_add_time_relative(p->event, &p->drain_timer, CLOCK_MONOTONIC, p->drain_timeout,
				       USEC_PER_MSEC, on_drain_timeout, p);
	if (r < 0) {
		log_warning_errno(r, "Failed to arm the drain timer, closing at once: %m");
		proxy_exit(p);
	}
	return 0;
}

/* A grace period has passed: run the connections that were waiting for one. */
static void on_grace(void *userdata)
{
	struct proxy *p = userdata;
	struct connection *c, *next;

	for (c = p->connections; c; c = next) {
		next = c->next;
		if ((c->up.waits | c->down.waits) & WAIT_GRACE)
			connection_run(c);
	}
}

int proxy_run(struct proxy *p)
{
	char addr[SR_ADDRESS_STRLEN];
	int r;

	r = sd_event_default(&p->event);
	if (r < 0)
		return log_error_errno(r, "Failed to allocate event loop: %m");

	r = sd_event_add_signal(p->event, NULL, SIGTERM, on_signal, p);
	if (r >= 0)
		r = sd_event_add_signal(p->event, NULL, SIGINT, on_signal, p);
	if (r < 0)
		return log_error_errno(r, "Failed to watch signals: %m");

	/*
	 * Created now and kept: its timerfd, shared by every CLOCK_MONOTONIC timer, must not
	 * have to be opened when fds run out.
	 */
	r = sd_event_add_time_relative(p->event, &p->accept_resume, CLOCK_MONOTONIC, ACCEPT_PAUSE, 0,
				       on_accept_resume, p);
	if (r >= 0)
		r = sd_event_source_set_enabled(p->accept_resume, SD_EVENT_OFF);
	if (r < 0)
		return log_error_errno(r, "Failed to set up the accept timer: %m");

	r = pipe_pool_init(&p->pipes);
	if (r < 0)
		return log_error_errno(r, "Failed to open the reserve pipe: %m");

	r = grace_new(p->event, on_grace, p, &p->grace);
	if (r < 0)
		return log_error_errno(r, "Failed to set up grace periods: %m");

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

	/* Ready: the listeners are watched and, if it is in use, the kernel path is attached. */
	(void)sd_notifyf(false, "READY=1\nSTATUS=%s, backend %s", p->bpf ? "Kernel path" : "Splice",
			 address_to_string(p->backend, addr, sizeof(addr)));
	log_info("Forwarding %zu listener(s) to %s on the %s path%s.", p->n_listeners, addr,
		 p->bpf ? "kernel" : "splice",
		 p->bpf && p->kernel_upload ? " (both directions in the kernel)" : "");

	r = sd_event_loop(p->event);
	if (r < 0)
		return log_error_errno(r, "Event loop failed: %m");

	stats_log_summary(p);
	return 0;
}

void proxy_done(struct proxy *p)
{
	while (p->connections)
		connection_abort(p->connections);
	for (size_t i = 0; i < p->n_listeners; i++)
		p->listeners[i].event_source =
			sd_event_source_disable_unref(p->listeners[i].event_source);
	p->accept_resume = sd_event_source_disable_unref(p->accept_resume);
	p->drain_timer = sd_event_source_disable_unref(p->drain_timer);
	p->grace = grace_free(p->grace);
	pipe_pool_done(&p->pipes);
	p->event = sd_event_unref(p->event);
}
