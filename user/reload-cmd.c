// SPDX-License-Identifier: GPL-2.0
/*
 * `sockredir reload NAME`: what the unit's ExecReload= runs.
 *
 * systemd 252 has no Type=notify-reload, and its reload job ends when the ExecReload= command
 * exits. `kill -HUP $MAINPID` exits at once and always with success, so `systemctl reload` would
 * return before the new configuration is in force, and succeed even when it was refused. This
 * sends SIGHUP to the instance's main process, named in its counters (pinned, or in its counters
 * file without the kernel path), and waits there for the outcome: every serving process counts
 * its reload in `reloads` or `reloads_failed`.
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>

#include "../bpf/sockredir.h"
#include "log.h"
#include "options.h"
#include "parse.h"
#include "reload-cmd.h"
#include "stats-cmd.h"

#define RELOAD_POLL	       (20 * USEC_PER_MSEC)
#define RELOAD_TIMEOUT_DEFAULT (30 * USEC_PER_SEC)

static void reload_help(void)
{
	printf("%s reload [OPTIONS] NAME\n\n"
	       "Reload running instance NAME (SIGHUP) and wait until it has: exit 0 once the new\n"
	       "configuration is in force, 1 if it was refused (the old one stays; the instance's log\n"
	       "says why) or no answer came in time. Meant for ExecReload=.\n\n"
	       "  -h --help             Show this help\n"
	       "     --timeout=TIME     Wait at most this long (default: 30s)\n"
	       "     --pin-path=DIR     The instance's pin directory (default: %s/NAME)\n",
	       program_invocation_short_name, SR_PIN_ROOT);
}

static int reload_instance(const char *name, const char *pin_path, uint64_t timeout)
{
	struct timespec poll = { .tv_nsec = RELOAD_POLL * NSEC_PER_USEC };
	struct sr_proxy_stats before, now;
	uint64_t waited = 0, answers, need;
	int r;

	r = stats_read_counters(name, pin_path, &before);
	if (r < 0)
		return log_error_errno(r, "No running instance '%s': %m", name);
	if (before.main_pid <= 1)
		return log_error_errno(-ESRCH, "Instance '%s' does not name its process.", name);

	if (kill((pid_t)before.main_pid, SIGHUP) < 0)
		return log_error_errno(errno,
				       "Failed to signal instance '%s' (pid %" PRIu32 "): %m", name,
				       before.main_pid);

	/* Every worker reloads on its own, and counts once. */
	need = before.workers ? before.workers : 1;
	for (;;) {
		r = stats_read_counters(name, pin_path, &now);
		if (r < 0)
			return log_error_errno(r, "Failed to read the counters of '%s': %m", name);
		answers = (now.reloads - before.reloads) +
			  (now.reloads_failed - before.reloads_failed);
		if (now.reloads_failed > before.reloads_failed)
			return log_error_errno(-EINVAL,
					       "Instance '%s' refused the new configuration and "
					       "keeps the old one; its log says why.",
					       name);
		if (answers >= need)
			return 0;
		if (waited >= timeout)
			return log_error_errno(-ETIMEDOUT,
					       "Instance '%s' did not report its reload within "
					       "%" PRIu64 " ms.",
					       name, timeout / USEC_PER_MSEC);
		nanosleep(&poll, NULL);
		waited += RELOAD_POLL;
	}
}

int reload_main(int argc, char *argv[])
{
	enum { ARG_TIMEOUT = 0x100, ARG_PIN_PATH };
	static const struct option options[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "timeout", required_argument, NULL, ARG_TIMEOUT },
		{ "pin-path", required_argument, NULL, ARG_PIN_PATH },
		{},
	};
	uint64_t timeout = RELOAD_TIMEOUT_DEFAULT;
	const char *pin_path = NULL;
	int c;

	optind = 0;
	while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
		switch (c) {
		case 'h':
			reload_help();
			return 0;
		case ARG_TIMEOUT:
			if (parse_time_usec(optarg, &timeout) < 0 || timeout == 0) {
				log_error("Invalid --timeout '%s': expected a time above 0.",
					  optarg);
				return -SR_EUSAGE;
			}
			break;
		case ARG_PIN_PATH:
			pin_path = optarg;
			break;
		default:
			log_error("Try '%s reload --help' for more information.",
				  program_invocation_short_name);
			return -SR_EUSAGE;
		}
	}
	if (argc - optind != 1) {
		log_error(
			"Expected one instance NAME. Try '%s reload --help' for more information.",
			program_invocation_short_name);
		return -SR_EUSAGE;
	}
	/* Quiet libbpf: a missing pin is reported by us, once. */
	log_bridge_libbpf(false);
	return reload_instance(argv[optind], pin_path, timeout);
}
