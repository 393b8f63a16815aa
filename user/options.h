/* SPDX-License-Identifier: GPL-2.0 */
/* Command-line options. The arg_* variables are the program's only globals. */
#ifndef SR_OPTIONS_H
#define SR_OPTIONS_H

#include <stdint.h>

#include "address.h"

enum sr_mode {
	SR_MODE_AUTO,	/* kernel path if BPF loads, else splice for everything */
	SR_MODE_BPF,	/* kernel path or fail at start-up */
	SR_MODE_SPLICE, /* userspace path only */
};

/* Exit code for bad usage, distinct from a runtime failure (1). */
#define EXIT_USAGE 2
/* Internal error code that run() returns for bad usage; never an errno value. */
#define SR_EUSAGE 4096

extern enum sr_mode arg_mode;
extern bool arg_kernel_upload;
extern uint64_t arg_upload_sndbuf;
extern char *arg_name;
extern char *arg_pin_path;
extern uint32_t arg_map_entries;
extern uint64_t arg_drain_timeout_usec;
extern struct sr_address arg_backend;
extern char *arg_backend_string;
extern char **arg_listen;
extern size_t arg_n_listen;

/* Returns 1 to go on, 0 to exit successfully (--help, --version), -SR_EUSAGE on bad usage. */
int parse_argv(int argc, char *argv[]);
void options_free(void);

const char *mode_to_string(enum sr_mode m);

/* Strict number parsers, shared with the tests: no sign, no trailing junk, range-checked. */
int parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *ret);
int parse_time_usec(const char *s, uint64_t *ret);

#endif /* SR_OPTIONS_H */
