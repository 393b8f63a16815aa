// SPDX-License-Identifier: GPL-2.0
/*
 * user/fdstore.c under systemd 252, as a Type=notify service in sockredir's sandbox
 * (fdstore-glue.sh). Prints every result to stderr (the journal):
 *
 *   start     the inherited fds' names; fdstore_open(); stores sr.poll (a socket pair's end,
 *             polled), sr.nopoll (FDPOLL=0), sr.many (300 pipe ends: two datagrams); tries two
 *             names that must be refused; READY=1
 *   SIGUSR1   close the peers of sr.poll and sr.nopoll: systemd sees EPOLLHUP on both
 *   SIGUSR2   fdstore_remove(sr.many)
 *   SIGRTMIN  a forked child without NOTIFY_SOCKET stores sr.child
 *   SIGTERM   fdstore_stop_is_restart(), and how long it took
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <systemd/sd-daemon.h>

#include "../../user/fdstore.h"

int main(void)
{
	_cleanup_(fdstore_freep) struct fdstore *s = NULL;
	int a[2], b[2], many[300], r, k;
	const char *why = NULL;
	char **names = NULL;
	sigset_t ss;

	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGUSR1);
	sigaddset(&ss, SIGUSR2);
	sigaddset(&ss, SIGRTMIN);
	sigprocmask(SIG_BLOCK, &ss, NULL);

	k = sd_listen_fds_with_names(false, &names);
	fprintf(stderr, "glue: inherited %d:", k);
	for (int i = 0; i < k; i++)
		fprintf(stderr, " %s", names[i]);
	fprintf(stderr, "\n");

	r = fdstore_open(&s, &why);
	fprintf(stderr, "glue: fdstore_open %d max %u why %s\n", r, s ? fdstore_max(s) : 0,
		why ? why : "-");
	if (r > 0) {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a) < 0 ||
		    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, b) < 0)
			return 1;
		for (int i = 0; i < 300; i += 2)
			if (pipe(many + i) < 0)
				return 1;
		fprintf(stderr, "glue: add sr.poll %d\n",
			fdstore_add(s, &a[0], 1, "sr.poll", true));
		fprintf(stderr, "glue: add sr.nopoll %d\n",
			fdstore_add(s, &b[0], 1, "sr.nopoll", false));
		fprintf(stderr, "glue: add sr.many %d\n",
			fdstore_add(s, many, 300, "sr.many", false));
		fprintf(stderr, "glue: add nopfx %d, sr.a:b %d, sr.\\n %d\n",
			fdstore_add(s, &b[0], 1, "nopfx", false),
			fdstore_add(s, &b[0], 1, "sr.a:b", false),
			fdstore_add(s, &b[0], 1, "sr.\n", false));
		close(a[0]);
		close(b[0]);
		for (int i = 0; i < 300; i++)
			close(many[i]);
	}
	sd_notify(0, "READY=1");

	for (;;) {
		siginfo_t si;
		int sig = sigwaitinfo(&ss, &si);

		if (sig == SIGUSR1) {
			close(a[1]);
			close(b[1]);
			fprintf(stderr, "glue: peers closed\n");
		} else if (sig == SIGUSR2) {
			fprintf(stderr, "glue: remove sr.many %d\n", fdstore_remove(s, "sr.many"));
		} else if (sig == SIGRTMIN) {
			pid_t pid = fork();

			if (pid == 0) {
				int c[2];

				unsetenv("NOTIFY_SOCKET");
				if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, c) < 0)
					_exit(1);
				fprintf(stderr, "glue: child %d add sr.child %d\n", (int)getpid(),
					fdstore_add(s, &c[0], 1, "sr.child", false));
				_exit(0);
			}
			waitpid(pid, NULL, 0);
		} else if (sig == SIGTERM) {
			uint64_t t0 = now_usec();

			r = fdstore_stop_is_restart();
			fprintf(stderr, "glue: stop_is_restart %d (%s) in %llu ms\n", r,
				r < 0 ? strerror(-r) : "-",
				(unsigned long long)((now_usec() - t0) / USEC_PER_MSEC));
			return 0;
		}
	}
}
