// SPDX-License-Identifier: GPL-2.0
/*
 * The other way to keep many connections in systemd's fd store: put their fds into a "bag", a
 * SOCK_SEQPACKET socket pair whose queue holds them in flight (SCM_RIGHTS, 252 a message), and
 * store only the bag's two ends. PID 1 then compares and keeps 2 fds, whatever the number of
 * connections. Run as a Type=notify service with Restart=on-failure and FileDescriptorStoreMax=:
 *
 *   fdstore-bag N    first start: make N connected socket pairs, bag them, store the bag (FDNAME=
 *                    bag), READY=1, wait to be killed. After a restart (the bag comes back in
 *                    LISTEN_FDS): take every fd out of the bag, check that each pair still talks
 *                    (a byte each way), write "restored N ok K" to /run/fdstore-bag/result.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#define PER_MSG 252

static int bag_put(int bag, const int *fds, int n)
{
	char cbuf[CMSG_SPACE(sizeof(int) * PER_MSG)];

	for (int i = 0; i < n; i += PER_MSG) {
		int k = n - i < PER_MSG ? n - i : PER_MSG;
		char byte = 'x';
		struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
		struct msghdr mh = { .msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = cbuf,
				     .msg_controllen = CMSG_SPACE(sizeof(int) * k) };
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);

		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * k);
		memcpy(CMSG_DATA(c), fds + i, sizeof(int) * k);
		if (sendmsg(bag, &mh, MSG_DONTWAIT) < 0)
			return -errno;
	}
	return 0;
}

/* Take every fd out of the bag, in order. */
static int bag_take(int bag, int *fds, int max)
{
	char cbuf[CMSG_SPACE(sizeof(int) * PER_MSG)];
	int n = 0;

	for (;;) {
		char byte;
		struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
		struct msghdr mh = { .msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = cbuf,
				     .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *c;

		if (recvmsg(bag, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) < 0)
			return errno == EAGAIN ? n : -errno;
		for (c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
			int k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			if (c->cmsg_type != SCM_RIGHTS || n + k > max)
				return -E2BIG;
			memcpy(fds + n, CMSG_DATA(c), sizeof(int) * k);
			n += k;
		}
	}
}

int main(int argc, char *argv[])
{
	int n = argc > 1 ? atoi(argv[1]) : 0, bag[2], *fds;
	char **names = NULL;
	int k = sd_listen_fds_with_names(0, &names);
	FILE *f;

	if (n <= 0)
		return 2;
	fds = calloc(2 * (size_t)n + PER_MSG, sizeof(int));

	if (k >= 2) {
		/* Restarted: LISTEN_FDS 3 and 4 are the bag's two ends, both named "bag". */
		struct timespec t0, t1;
		int got, ok = 0;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		/* The queue is on the receiving end; take from both, whichever order they came in. */
		got = bag_take(SD_LISTEN_FDS_START + 1, fds, 2 * n + PER_MSG);
		if (got <= 0)
			got = bag_take(SD_LISTEN_FDS_START, fds, 2 * n + PER_MSG);
		for (int i = 0; i + 1 < got; i += 2) {
			char a = 'a', b = 0;

			if (write(fds[i], &a, 1) == 1 && read(fds[i + 1], &b, 1) == 1 && b == 'a')
				ok++;
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		f = fopen("/run/fdstore-bag/result", "w");
		fprintf(f, "restored %d fds, %d pairs talk, names %s, %ld us\n", got, ok,
			names && names[0] ? names[0] : "?",
			(t1.tv_sec - t0.tv_sec) * 1000000L + (t1.tv_nsec - t0.tv_nsec) / 1000);
		fclose(f);
		sd_notify(0, "READY=1");
		pause();
		return 0;
	}

	for (int i = 0; i < n; i++)
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds + 2 * i) < 0) {
			perror("socketpair");
			return 1;
		}
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, bag) < 0) {
		perror("socketpair");
		return 1;
	}
	int r = bag_put(bag[0], fds, 2 * n);
	if (r < 0) {
		fprintf(stderr, "bag_put: %s\n", strerror(-r));
		return 1;
	}
	/* The pairs live on in the bag's queue: our own fds can go. */
	for (int i = 0; i < 2 * n; i++)
		close(fds[i]);
	if (sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDPOLL=0\nFDNAME=bag", bag, 2) <= 0)
		return 1;
	sd_notify(0, "READY=1");
	pause();
	return 0;
}
