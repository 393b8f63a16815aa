/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Options: from the command line and from --config FILE, parsed by the same code, so that a
 * config file takes exactly the long options' names and values. SIGHUP parses both again.
 */
#ifndef SR_OPTIONS_H
#define SR_OPTIONS_H

#include <stdint.h>

#include "util.h"
/* options_parse() fails with -SR_EUSAGE, which its callers turn into EXIT_USAGE. */
#include "usage.h"

enum sr_mode {
	SR_MODE_AUTO,	/* kernel path if BPF loads, else splice for everything */
	SR_MODE_BPF,	/* kernel path or fail at start-up */
	SR_MODE_SPLICE, /* userspace path only */
};

enum sr_balance {
	SR_BALANCE_ROUND_ROBIN,
	SR_BALANCE_LEAST_CONN,
};

/* A bound against typos: more workers than CPUs only adds wakeups. */
#define SR_WORKERS_MAX 64
/* Where instance NAME pins its maps by default: SR_PIN_ROOT/NAME. */
#define SR_PIN_ROOT "/sys/fs/bpf/sockredir"

/* One --route NAME=BACKEND or --route-host HOST=BACKEND. */
struct route_spec {
	char *key;
	char *backend;
};

struct options {
	/* Fixed at start-up: a reload that changes them says so and keeps the old value. */
	enum sr_mode mode;
	bool kernel_upload;
	bool allow_unbounded_upload;
	uint64_t upload_sndbuf;
	char *name;
	char *pin_path;
	uint32_t map_entries;
	unsigned workers; /* processes serving connections; 1: this one, no supervisor */
	char **listen;
	size_t n_listen;
	char *metrics_listen; /* --metrics-listen, when no socket named "metrics" is inherited */
	char *config_file;
	bool verbose;

	/* Applied again on SIGHUP. */
	char **backends; /* the default route: BACKEND arguments and "backend =" lines */
	size_t n_backends;
	struct route_spec *routes; /* by listener name */
	size_t n_routes;
	struct route_spec *host_routes; /* by HTTP Host or TLS SNI */
	size_t n_host_routes;
	enum sr_balance balance;
	uint64_t connect_timeout;
	unsigned max_fails;
	uint64_t fail_timeout;
	uint64_t peek_timeout;
	bool peek_fail_close;
	unsigned proxy_protocol;  /* 0, 1 or 2 */
	unsigned max_connections; /* 0: no limit */
	uint64_t idle_timeout;	  /* 0: none */
	bool keepalive;
	uint64_t keepalive_time; /* 0: the kernel's default */
	uint64_t exit_idle_time; /* 0: never */
	uint64_t drain_timeout;
};

/*
 * Parse the command line, and --config FILE if given: the file first, then the command line,
 * whose values win (lists such as --route add up). Returns 1 with *ret set to go on, 0 to exit
 * successfully (--help, --version), -SR_EUSAGE after logging what is wrong.
 */
int options_parse(int argc, char *argv[], struct options **ret);
struct options *options_free(struct options *o);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct options *, options_free);

const char *mode_to_string(enum sr_mode m);

#endif /* SR_OPTIONS_H */
