// SPDX-License-Identifier: GPL-2.0
/*
 * --workers N: a supervisor and N worker processes.
 *
 * Start-up (listeners, BPF loaded, attached and pinned, capabilities dropped) happens once; then
 * the process forks N workers. Each runs the ordinary single-threaded proxy on the inherited
 * listeners: the kernel hands each accept() to one of them, and the sockhashes and the
 * sr_proxy_stats page are shared. Each worker has its own fd table and RLIMIT_NOFILE, and its
 * own CPU to run on, which is what lifts the connection ceiling of one process (2 fds per
 * connection) and puts every CPU to work on setup, splice and drain checks.
 *
 * The supervisor serves no connection. It is the one process systemd talks to (NotifyAccess=main
 * sees only it): READY, STATUS, WATCHDOG, RELOADING, STOPPING. It forwards SIGTERM, SIGINT and
 * SIGHUP, starts a worker again if one dies, and runs --exit-idle-time on the shared count of
 * open connections. It has no event loop and opens no fd after start-up: it sleeps in
 * sigtimedwait() on the blocked signals, so that a worker it forks later inherits nothing new.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <systemd/sd-daemon.h>

#include "fdstore.h"
#include "lifecycle.h"
#include "listen.h"
#include "log.h"
#include "options.h"
#include "stats.h"
#include "workers.h"

/* STATUS= at most this often, and the exit-idle check this often. */
#define SUPERVISOR_TICK (1 * USEC_PER_SEC)
/*
 * A worker that exits with an error this soon after it was forked failed to set up, and would
 * only fail again: the service stops instead. One killed by a signal is started again, unless
 * that happens more than RESTART_BURST times in RESTART_INTERVAL (a crash loop).
 */
#define WORKER_SETUP_FAILURE (2 * USEC_PER_SEC)
#define RESTART_BURST	     10
#define RESTART_INTERVAL     (10 * USEC_PER_SEC)

struct worker {
	pid_t pid; /* 0: not running */
	uint64_t started;
};

struct supervisor {
	struct proxy *p;
	struct worker *workers;
	unsigned n;
	bool stopping;
	bool failed;
	uint64_t watchdog_usec, watchdog_next;
	uint64_t idle_since; /* 0: connections are open */
	uint64_t restart_window_start;
	unsigned restarts_in_window;
};

/* In the child: become worker i. Returns 0 in the child, the pid in the parent, or -errno. */
static pid_t worker_fork(struct supervisor *s, unsigned i)
{
	struct proxy *p = s->p;
	pid_t ppid = getpid(), pid;
	char prefix[16];
	sigset_t chld;

	pid = fork();
	if (pid < 0)
		return log_error_errno(errno, "Failed to fork worker %u: %m", i + 1);
	if (pid > 0) {
		s->workers[i] = (struct worker){ .pid = pid, .started = now_usec() };
		return pid;
	}

	/* A worker must not outlive its supervisor: systemd tracks the supervisor. */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != ppid)
		_exit(EXIT_FAILURE);
	/* Only the supervisor speaks to systemd; without these, sd_notify() is a no-op. */
	(void)unsetenv("NOTIFY_SOCKET");
	(void)unsetenv("WATCHDOG_USEC");
	(void)unsetenv("WATCHDOG_PID");
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_UNBLOCK, &chld, NULL);

	free(s->workers);
	p->worker = i + 1;
	p->supervisor_pid = ppid;
	snprintf(prefix, sizeof(prefix), "worker %u: ", i + 1);
	log_set_prefix(prefix);
	return 0;
}

static void workers_signal(struct supervisor *s, int sig, int value)
{
	for (unsigned i = 0; i < s->n; i++)
		if (s->workers[i].pid > 0)
			(void)sigqueue(s->workers[i].pid, sig,
				       (union sigval){ .sival_int = value });
}

static unsigned workers_running(const struct supervisor *s)
{
	unsigned n = 0;

	for (unsigned i = 0; i < s->n; i++)
		n += s->workers[i].pid > 0;
	return n;
}

static void supervisor_stop(struct supervisor *s, int sig, const char *why)
{
	if (s->stopping)
		return;
	s->stopping = true;
	log_info("%s: stopping %u worker(s).", why, workers_running(s));
	(void)sd_notify(false, "STOPPING=1\nSTATUS=Draining connections...");
	workers_signal(s, sig, SR_STOP_DRAIN);
}

/* A restart: each worker keeps its connections in the fd store and exits. */
static void supervisor_hand_over(struct supervisor *s)
{
	if (s->stopping)
		return;
	s->stopping = true;
	s->p->handing_over = true;
	log_info("Restart: %u worker(s) hand their connections over to the next process.",
		 workers_running(s));
	(void)sd_notify(false, "STOPPING=1\nSTATUS=Restarting: connections kept in the fd store");
	workers_signal(s, SR_SIGNAL_HAND_OVER, 0);
}

/*
 * Reap every worker that exited. While serving, one that died is started again at once, unless
 * it died during its own set-up. Returns 0, 1 in a newly forked worker, or -errno.
 */
static int supervisor_reap(struct supervisor *s)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		unsigned i;
		bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;

		for (i = 0; i < s->n && s->workers[i].pid != pid; i++)
			;
		if (i == s->n)
			continue;
		s->workers[i].pid = 0;
		if (s->stopping) {
			if (!clean) {
				log_error("Worker %u (pid %d) %s %d while stopping.", i + 1, pid,
					  WIFEXITED(status) ? "exited with status" :
							      "was killed by signal",
					  WIFEXITED(status) ? WEXITSTATUS(status) :
							      WTERMSIG(status));
				s->failed = true;
			}
			continue;
		}
		if (s->p->store) {
			/*
			 * Its connections are in the fd store, which only a new instance can take
			 * them back from: the whole instance restarts (Restart=on-failure), the
			 * other workers handing theirs over too.
			 */
			log_error("Worker %u (pid %d) %s %d: restarting the instance, so that the "
				  "next one takes over every kept connection, its own included.",
				  i + 1, pid,
				  WIFEXITED(status) ? "exited with status" : "was killed by signal",
				  WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
			s->failed = true;
			supervisor_hand_over(s);
			continue;
		}
		log_warning("Worker %u (pid %d) %s %d; its connections are lost.", i + 1, pid,
			    WIFEXITED(status) ? "exited with status" : "was killed by signal",
			    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		if (WIFEXITED(status) &&
		    now_usec() - s->workers[i].started < WORKER_SETUP_FAILURE) {
			s->failed = true;
			supervisor_stop(s, SIGTERM, "A worker failed to start");
			continue;
		}
		if (now_usec() - s->restart_window_start > RESTART_INTERVAL) {
			s->restart_window_start = now_usec();
			s->restarts_in_window = 0;
		}
		if (++s->restarts_in_window > RESTART_BURST) {
			s->failed = true;
			supervisor_stop(s, SIGTERM, "Workers keep dying");
			continue;
		}
		pid = worker_fork(s, i);
		if (pid == 0)
			return 1;
		if (pid < 0) {
			s->failed = true;
			supervisor_stop(s, SIGTERM, "Cannot replace a worker");
		} else {
			log_info("Worker %u started again as pid %d.", i + 1, pid);
		}
	}
	return 0;
}

static void supervisor_tick(struct supervisor *s)
{
	const struct options *o = s->p->opts;
	uint64_t now = now_usec();

	if (s->watchdog_usec && now >= s->watchdog_next) {
		(void)sd_notify(false, "WATCHDOG=1");
		s->watchdog_next = now + s->watchdog_usec / 2;
	}
	if (s->stopping)
		return;

	lifecycle_send_status(s->p);

	/* The shared count includes connections still being set up in a worker. */
	if (__atomic_load_n(&proxy_movers(s->p)->stats->open, __ATOMIC_RELAXED) > 0) {
		s->idle_since = 0;
		return;
	}
	if (s->idle_since == 0)
		s->idle_since = now;
	else if (o->exit_idle_time && now - s->idle_since >= o->exit_idle_time)
		supervisor_stop(
			s, SIGTERM,
			"No connection for the --exit-idle-time: exiting (--exit-idle-time)");
}

/*
 * SIGHUP: each worker reloads itself and logs what it found; the supervisor parses the options
 * only for what it uses itself (--exit-idle-time, --verbose).
 */
static void supervisor_reload(struct supervisor *s)
{
	struct options *o = NULL;
	struct proxy *p = s->p;

	(void)sd_notifyf(false, "RELOADING=1\nSTATUS=Reloading...\nMONOTONIC_USEC=%" PRIu64,
			 now_usec());
	workers_signal(s, SIGHUP, 0);
	if (options_parse(p->argc, p->argv, &o) > 0) {
		p->opts->exit_idle_time = o->exit_idle_time;
		if (o->verbose)
			log_set_max_level(LOG_DEBUG);
	}
	options_free(o);
	(void)sd_notify(false, "READY=1");
	p->last_status[0] = 0;
}

int workers_run(struct proxy *p)
{
	struct supervisor s = { .p = p, .n = p->opts->workers };
	struct timespec tick = { .tv_sec = SUPERVISOR_TICK / USEC_PER_SEC };
	siginfo_t si;
	sigset_t mask;
	int r = 0;

	s.workers = calloc(s.n, sizeof(*s.workers));
	if (!s.workers)
		return log_error_errno(ENOMEM, "Out of memory.");

	/* Signals wait, blocked, for sigtimedwait(); main() blocked the others before start-up. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);

	for (unsigned i = 0; i < s.n; i++) {
		pid_t pid = worker_fork(&s, i);

		if (pid == 0)
			return 0;
		if (pid < 0) {
			r = pid;
			s.failed = true;
			supervisor_stop(&s, SIGTERM, "Start-up failed");
			break;
		}
	}
	/* Each worker took its share of what earlier processes kept; this process needs none. */
	named_fds_free(p->stored, p->n_stored);
	p->stored = NULL;
	p->n_stored = 0;
	if (!s.stopping) {
		if (sd_watchdog_enabled(false, &s.watchdog_usec) <= 0)
			s.watchdog_usec = 0;
		/* The listeners were open before the fork: a client now waits in the backlog. */
		(void)sd_notify(false, "READY=1");
		log_info("Serving with %u workers.", s.n);
	}

	while (workers_running(&s) > 0) {
		int sig = sigtimedwait(&mask, &si, &tick);

		if (sig == SIGCHLD) {
			if (supervisor_reap(&s) > 0)
				return 0;
		} else if (sig == SIGTERM && !s.stopping && p->store &&
			   fdstore_stop_is_restart() > 0) {
			supervisor_hand_over(&s);
		} else if (sig == SIGTERM || sig == SIGINT) {
			if (s.stopping)
				workers_signal(&s, sig, SR_STOP_NOW);
			else
				supervisor_stop(&s, sig,
						sig == SIGTERM ? "Received SIGTERM" :
								 "Received SIGINT");
		} else if (sig == SIGHUP && !s.stopping) {
			supervisor_reload(&s);
		}
		supervisor_tick(&s);
	}

	free(s.workers);
	lifecycle_log_summary(p);
	if (s.failed && r == 0)
		r = -ECHILD;
	return r;
}
