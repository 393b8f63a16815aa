// SPDX-License-Identifier: GPL-2.0
/*
 * What systemd's fd store costs PID 1, for the restart issue: run as a Type=notify service with a
 * large FileDescriptorStoreMax=, it makes N connected socket pairs and stores them, then removes
 * them. fdstore-cost.sh reads PID 1's CPU time around each step.
 *
 *   fdstore-cost N MODE      MODE: each  one message per pair, FDNAME=cI (2 fds each)
 *                                  batch one message per 126 pairs, FDNAME=bJ (252 fds each)
 *
 * Before each step it waits for the file /run/fdstore-cost/STEP, which the script makes once PID 1
 * has taken every message of the step before.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define BATCH_PAIRS 126

static void wait_for(const char *step)
{
	char path[128];

	snprintf(path, sizeof(path), "/run/fdstore-cost/%s", step);
	while (access(path, F_OK) < 0)
		usleep(10 * 1000);
}

int main(int argc, char *argv[])
{
	int n = argc > 2 ? atoi(argv[1]) : 0, (*fds)[2];
	bool batch = argc > 2 && strcmp(argv[2], "batch") == 0;
	char msg[128];

	if (n <= 0) {
		fprintf(stderr, "usage: fdstore-cost N each|batch\n");
		return 2;
	}
	fds = calloc(n, sizeof(*fds));
	for (int i = 0; i < n; i++)
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds[i]) < 0) {
			perror("socketpair");
			return 1;
		}
	sd_notify(0, "READY=1");
	wait_for("store");

	if (!batch) {
		for (int i = 0; i < n; i++) {
			snprintf(msg, sizeof(msg), "FDSTORE=1\nFDPOLL=0\nFDNAME=c%d", i);
			if (sd_pid_notify_with_fds(0, 0, msg, fds[i], 2) <= 0)
				fprintf(stderr, "store %d failed\n", i);
		}
	} else {
		for (int i = 0; i < n; i += BATCH_PAIRS) {
			int k = n - i < BATCH_PAIRS ? n - i : BATCH_PAIRS;

			snprintf(msg, sizeof(msg), "FDSTORE=1\nFDPOLL=0\nFDNAME=b%d", i / BATCH_PAIRS);
			if (sd_pid_notify_with_fds(0, 0, msg, &fds[i][0], 2 * k) <= 0)
				fprintf(stderr, "store batch %d failed\n", i);
		}
	}
	wait_for("remove");

	if (!batch) {
		for (int i = 0; i < n; i++) {
			snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=c%d", i);
			sd_notify(0, msg);
		}
	} else {
		for (int i = 0; i < n; i += BATCH_PAIRS) {
			snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=b%d", i / BATCH_PAIRS);
			sd_notify(0, msg);
		}
	}
	wait_for("exit");
	return 0;
}
