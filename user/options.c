// SPDX-License-Identifier: GPL-2.0
/* Option parsing with getopt_long, in the shape of systemd's parse_argv(). */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "../bpf/sockredir.h"
#include "log.h"
#include "options.h"

#ifndef SR_VERSION
#define SR_VERSION "0.0"
#endif

enum sr_mode arg_mode = SR_MODE_AUTO;
bool arg_kernel_upload = false;
uint64_t arg_upload_sndbuf = 64ULL << 20;
char *arg_name = NULL;
char *arg_pin_path = NULL;
uint32_t arg_map_entries = SR_MAP_ENTRIES_DEFAULT;
uint64_t arg_drain_timeout_usec = 10 * USEC_PER_SEC;
struct sr_address arg_backend;
char *arg_backend_string = NULL;
char **arg_listen = NULL;
size_t arg_n_listen = 0;

static const char *const mode_table[] = {
	[SR_MODE_AUTO] = "auto",
	[SR_MODE_BPF] = "bpf",
	[SR_MODE_SPLICE] = "splice",
};

const char *mode_to_string(enum sr_mode m)
{
	return m < ELEMENTSOF(mode_table) ? mode_table[m] : "?";
}

static void help(void)
{
	printf("%s [OPTIONS...] BACKEND\n"
	       "\n"
	       "Accept TCP (or Unix) clients on inherited or --listen sockets and connect each one\n"
	       "to BACKEND. Backend->client bytes move in the kernel (an sk_skb sockmap program);\n"
	       "client->backend bytes are moved with splice(2), which keeps TCP flow control.\n"
	       "\n"
	       "BACKEND is one of:\n"
	       "  /path/to.sock  unix:/path  @abstract  host:port  [v6addr]:port\n"
	       "\n"
	       "Options:\n"
	       "  -l --listen=ADDR        Listen on ADDR (repeatable; same forms as BACKEND, or\n"
	       "                          a bare PORT for [::]:PORT). Used only when no socket\n"
	       "                          was inherited through socket activation\n"
	       "  -m --mode=MODE          auto, bpf or splice (default: auto). auto uses the\n"
	       "                          kernel path if BPF loads and splice otherwise; bpf\n"
	       "                          fails at start-up instead\n"
	       "     --kernel-upload      Move client->backend in the kernel too. WARNING: this\n"
	       "                          mode has no memory bound yet: a client uploading to a\n"
	       "                          slow backend can make the kernel queue as much memory\n"
	       "                          as it sends. Use only with trusted clients\n"
	       "     --upload-sndbuf=SIZE Unix send buffer for --kernel-upload, set with\n"
	       "                          SO_SNDBUFFORCE (default: 64M; the kernel doubles it)\n"
	       "  -n --name=NAME          Instance name, for pins and logs (default: default)\n"
	       "     --pin-path=DIR       Where to pin maps and programs\n"
	       "                          (default: /sys/fs/bpf/sockredir/NAME)\n"
	       "     --map-entries=N      Size of each BPF map (default: %u). Connections that\n"
	       "                          don't fit fall back to splice\n"
	       "     --drain-timeout=TIME On SIGTERM, how long open connections may finish\n"
	       "                          (default: 10s)\n"
	       "  -v --verbose            Log debug messages, including libbpf's\n"
	       "  -h --help               Show this help\n"
	       "     --version            Show the version\n"
	       "\n"
	       "Exit status: 0 on success and after SIGTERM, 1 on failure, 2 on bad usage.\n",
	       program_invocation_short_name, SR_MAP_ENTRIES_DEFAULT);
}

int parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	unsigned long long v;
	uint64_t mul = 1;
	char *end;

	if (!s || !*s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -ERANGE;
	if (*end) {
		if (streq(end, "K") || streq(end, "k"))
			mul = 1ULL << 10;
		else if (streq(end, "M"))
			mul = 1ULL << 20;
		else if (streq(end, "G"))
			mul = 1ULL << 30;
		else
			return -EINVAL;
	}
	if (v > UINT64_MAX / mul)
		return -ERANGE;
	v *= mul;
	if (v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

int parse_time_usec(const char *s, uint64_t *ret)
{
	static const struct {
		const char *suffix;
		uint64_t usec;
	} units[] = {
		{ "us", 1 },	      { "ms", USEC_PER_MSEC }, { "s", USEC_PER_SEC },
		{ "", USEC_PER_SEC }, { "min", 60 * USEC_PER_SEC },
	};
	unsigned long long whole, frac = 0, frac_div = 1;
	const char *p;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	whole = strtoull(s, &end, 10);
	if (errno != 0 || whole > 1000000000ULL)
		return -ERANGE;
	p = end;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		for (; *p >= '0' && *p <= '9'; p++) {
			if (frac_div < 1000000ULL) {
				frac = frac * 10 + (unsigned long long)(*p - '0');
				frac_div *= 10;
			}
		}
	}
	for (size_t i = 0; i < ELEMENTSOF(units); i++)
		if (streq(p, units[i].suffix)) {
			*ret = whole * units[i].usec + frac * units[i].usec / frac_div;
			return 0;
		}
	return -EINVAL;
}

/* An instance name becomes a path component of the pins: keep it to a safe alphabet. */
static bool valid_name(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > 64 || streq(n, ".") || streq(n, ".."))
		return false;
	return strspn(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.@") ==
	       len;
}

static int usage_error(const char *fmt, const char *a, const char *b)
{
	log_error(fmt, a, b);
	log_error("Try '%s --help' for more information.", program_invocation_short_name);
	return -SR_EUSAGE;
}

int parse_argv(int argc, char *argv[])
{
	enum {
		ARG_VERSION = 0x100,
		ARG_KERNEL_UPLOAD,
		ARG_UPLOAD_SNDBUF,
		ARG_PIN_PATH,
		ARG_MAP_ENTRIES,
		ARG_DRAIN_TIMEOUT,
	};
	static const struct option options[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, ARG_VERSION },
		{ "verbose", no_argument, NULL, 'v' },
		{ "listen", required_argument, NULL, 'l' },
		{ "mode", required_argument, NULL, 'm' },
		{ "kernel-upload", no_argument, NULL, ARG_KERNEL_UPLOAD },
		{ "upload-sndbuf", required_argument, NULL, ARG_UPLOAD_SNDBUF },
		{ "name", required_argument, NULL, 'n' },
		{ "pin-path", required_argument, NULL, ARG_PIN_PATH },
		{ "map-entries", required_argument, NULL, ARG_MAP_ENTRIES },
		{ "drain-timeout", required_argument, NULL, ARG_DRAIN_TIMEOUT },
		{}
	};
	const char *reason = NULL;
	uint64_t u;
	int c, r;

	/* getopt prints its own message for unknown options; keep it, and add the hint. */
	opterr = 1;
	while ((c = getopt_long(argc, argv, "hvl:m:n:", options, NULL)) >= 0) {
		switch (c) {
		case 'h':
			help();
			return 0;
		case ARG_VERSION:
			printf("sockredir %s\n", SR_VERSION);
			return 0;
		case 'v':
			log_set_max_level(LOG_DEBUG);
			break;
		case 'l': {
			struct sr_address probe;
			char **l;

			r = address_parse(optarg, ADDRESS_LISTEN, &probe, &reason);
			if (r < 0)
				return usage_error("Invalid --listen address '%s': %s.", optarg,
						   reason);
			l = realloc(arg_listen, (arg_n_listen + 1) * sizeof(char *));
			if (!l)
				return log_error_errno(ENOMEM, "Out of memory.");
			arg_listen = l;
			arg_listen[arg_n_listen] = strdup(optarg);
			if (!arg_listen[arg_n_listen])
				return log_error_errno(ENOMEM, "Out of memory.");
			arg_n_listen++;
			break;
		}
		case 'm':
			if (streq(optarg, "auto"))
				arg_mode = SR_MODE_AUTO;
			else if (streq(optarg, "bpf"))
				arg_mode = SR_MODE_BPF;
			else if (streq(optarg, "splice"))
				arg_mode = SR_MODE_SPLICE;
			else
				return usage_error("Invalid --mode '%s': %s.", optarg,
						   "expected auto, bpf or splice");
			break;
		case ARG_KERNEL_UPLOAD:
			arg_kernel_upload = true;
			break;
		case ARG_UPLOAD_SNDBUF:
			if (parse_size(optarg, 4096, 1ULL << 30, &arg_upload_sndbuf) < 0)
				return usage_error("Invalid --upload-sndbuf '%s': %s.", optarg,
						   "expected a size from 4K to 1G");
			break;
		case 'n':
			if (!valid_name(optarg))
				return usage_error("Invalid --name '%s': %s.", optarg,
						   "use 1-64 letters, digits, '_', '-', '.' or '@'");
			free(arg_name);
			arg_name = strdup(optarg);
			if (!arg_name)
				return log_error_errno(ENOMEM, "Out of memory.");
			break;
		case ARG_PIN_PATH:
			if (optarg[0] != '/')
				return usage_error("Invalid --pin-path '%s': %s.", optarg,
						   "must be an absolute path");
			free(arg_pin_path);
			arg_pin_path = strdup(optarg);
			if (!arg_pin_path)
				return log_error_errno(ENOMEM, "Out of memory.");
			break;
		case ARG_MAP_ENTRIES:
			if (parse_size(optarg, 1, 1U << 24, &u) < 0)
				return usage_error("Invalid --map-entries '%s': %s.", optarg,
						   "expected a number from 1 to 16777216");
			arg_map_entries = (uint32_t)u;
			break;
		case ARG_DRAIN_TIMEOUT:
			if (parse_time_usec(optarg, &arg_drain_timeout_usec) < 0)
				return usage_error("Invalid --drain-timeout '%s': %s.", optarg,
						   "expected a time such as 10, 10s or 500ms");
			break;
		case '?':
			log_error("Try '%s --help' for more information.",
				  program_invocation_short_name);
			return -SR_EUSAGE;
		default:
			return log_error_errno(EINVAL, "Unhandled option %d.", c);
		}
	}

	if (optind >= argc)
		return usage_error("Missing BACKEND argument%s%s.", "", "");
	if (argc - optind > 1)
		return usage_error("Too many arguments: '%s' after BACKEND '%s'.", argv[optind + 1],
				   argv[optind]);

	r = address_parse(argv[optind], ADDRESS_BACKEND, &arg_backend, &reason);
	if (r < 0)
		return usage_error("Invalid BACKEND '%s': %s.", argv[optind], reason);
	arg_backend_string = strdup(argv[optind]);
	if (!arg_backend_string)
		return log_error_errno(ENOMEM, "Out of memory.");

	if (arg_kernel_upload && arg_mode == SR_MODE_SPLICE)
		return usage_error("--kernel-upload needs --mode bpf or auto%s%s.", "", "");

	if (!arg_name) {
		arg_name = strdup("default");
		if (!arg_name)
			return log_error_errno(ENOMEM, "Out of memory.");
	}
	if (!arg_pin_path) {
		if (asprintf(&arg_pin_path, "/sys/fs/bpf/sockredir/%s", arg_name) < 0)
			return log_error_errno(ENOMEM, "Out of memory.");
	}
	return 1;
}

void options_free(void)
{
	for (size_t i = 0; i < arg_n_listen; i++)
		free(arg_listen[i]);
	free(arg_listen);
	free(arg_name);
	free(arg_pin_path);
	free(arg_backend_string);
}
