// SPDX-License-Identifier: GPL-2.0
/*
 * Options, in the shape of systemd's parse_argv(). The command line goes through getopt_long();
 * a config file line "key = value" is looked up in the same table and applied by the same
 * function, so both accept exactly the same names and values.
 */
#include <ctype.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "../bpf/sockredir.h"
#include "log.h"
#include "options.h"

#ifndef SR_VERSION
#define SR_VERSION "0.0"
#endif

/* A config file longer than this is surely a mistake. */
#define CONFIG_MAX_LINES 10000

enum {
	ARG_VERSION = 0x100,
	ARG_CONFIG,
	ARG_KERNEL_UPLOAD,
	ARG_ALLOW_UNBOUNDED_UPLOAD,
	ARG_UPLOAD_SNDBUF,
	ARG_PIN_PATH,
	ARG_MAP_ENTRIES,
	ARG_DRAIN_TIMEOUT,
	ARG_BACKEND,
	ARG_ROUTE,
	ARG_ROUTE_HOST,
	ARG_BALANCE,
	ARG_CONNECT_TIMEOUT,
	ARG_MAX_FAILS,
	ARG_FAIL_TIMEOUT,
	ARG_PEEK_TIMEOUT,
	ARG_PEEK_FAIL,
	ARG_PROXY_PROTOCOL,
	ARG_MAX_CONNECTIONS,
	ARG_IDLE_TIMEOUT,
	ARG_KEEPALIVE,
	ARG_EXIT_IDLE_TIME,
	ARG_WORKERS,
};

static const struct option option_table[] = {
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, ARG_VERSION },
	{ "verbose", no_argument, NULL, 'v' },
	{ "config", required_argument, NULL, ARG_CONFIG },
	{ "listen", required_argument, NULL, 'l' },
	{ "mode", required_argument, NULL, 'm' },
	{ "kernel-upload", no_argument, NULL, ARG_KERNEL_UPLOAD },
	{ "allow-unbounded-upload", no_argument, NULL, ARG_ALLOW_UNBOUNDED_UPLOAD },
	{ "upload-sndbuf", required_argument, NULL, ARG_UPLOAD_SNDBUF },
	{ "name", required_argument, NULL, 'n' },
	{ "pin-path", required_argument, NULL, ARG_PIN_PATH },
	{ "map-entries", required_argument, NULL, ARG_MAP_ENTRIES },
	{ "drain-timeout", required_argument, NULL, ARG_DRAIN_TIMEOUT },
	{ "backend", required_argument, NULL, ARG_BACKEND },
	{ "route", required_argument, NULL, ARG_ROUTE },
	{ "route-host", required_argument, NULL, ARG_ROUTE_HOST },
	{ "balance", required_argument, NULL, ARG_BALANCE },
	{ "connect-timeout", required_argument, NULL, ARG_CONNECT_TIMEOUT },
	{ "max-fails", required_argument, NULL, ARG_MAX_FAILS },
	{ "fail-timeout", required_argument, NULL, ARG_FAIL_TIMEOUT },
	{ "peek-timeout", required_argument, NULL, ARG_PEEK_TIMEOUT },
	{ "peek-fail", required_argument, NULL, ARG_PEEK_FAIL },
	{ "proxy-protocol", required_argument, NULL, ARG_PROXY_PROTOCOL },
	{ "max-connections", required_argument, NULL, ARG_MAX_CONNECTIONS },
	{ "idle-timeout", required_argument, NULL, ARG_IDLE_TIMEOUT },
	{ "keepalive", optional_argument, NULL, ARG_KEEPALIVE },
	{ "exit-idle-time", required_argument, NULL, ARG_EXIT_IDLE_TIME },
	{ "workers", required_argument, NULL, ARG_WORKERS },
	{}
};

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
	printf("%s [OPTIONS...] [BACKEND...]\n"
	       "\n"
	       "Accept TCP (or Unix) clients on inherited or --listen sockets and connect each one\n"
	       "to a backend. Backend->client bytes move in the kernel (an sk_skb sockmap program);\n"
	       "client->backend bytes are moved with splice(2), which keeps TCP flow control.\n"
	       "\n"
	       "BACKEND is one of:\n"
	       "  /path/to.sock  unix:/path  @abstract  host:port  [v6addr]:port\n"
	       "Several BACKENDs form the default route; connections are balanced over them.\n"
	       "\n"
	       "Listening and data path:\n"
	       "  -l --listen=ADDR        Listen on ADDR (repeatable; same forms as BACKEND, or\n"
	       "                          a bare PORT for [::]:PORT). Used only when no socket\n"
	       "                          was inherited through socket activation\n"
	       "  -m --mode=MODE          auto, bpf or splice (default: auto). auto uses the\n"
	       "                          kernel path if BPF loads and splice otherwise; bpf\n"
	       "                          fails at start-up instead\n"
	       "     --kernel-upload      Move client->backend in the kernel too. This mode has\n"
	       "                          no memory bound on this kernel: a client uploading to\n"
	       "                          a slow backend can make the kernel queue as much\n"
	       "                          memory as it sends (1 GiB measured). It is refused\n"
	       "                          unless --allow-unbounded-upload is given too\n"
	       "     --allow-unbounded-upload\n"
	       "                          Accept that risk: for trusted clients only\n"
	       "     --upload-sndbuf=SIZE Unix send buffer for --kernel-upload, set with\n"
	       "                          SO_SNDBUFFORCE (default: 64M; the kernel doubles it)\n"
	       "  -n --name=NAME          Instance name, for pins and logs (default: default)\n"
	       "     --pin-path=DIR       Where to pin maps and programs\n"
	       "                          (default: /sys/fs/bpf/sockredir/NAME)\n"
	       "     --map-entries=N      Size of each BPF map (default: %u). Connections that\n"
	       "                          don't fit fall back to splice\n"
	       "     --workers=N|auto     Serve from N processes sharing the listeners and the\n"
	       "                          maps; auto is one per CPU (default: 1). Each has its\n"
	       "                          own fd limit and CPU; see README.md, \"Workers\"\n"
	       "\n"
	       "Routing (reloaded on SIGHUP):\n"
	       "     --backend=BACKEND    Add a backend to the default route (like BACKEND)\n"
	       "     --route=NAME=BACKEND Clients of the inherited socket named NAME\n"
	       "                          (FileDescriptorName=) go to BACKEND (repeatable)\n"
	       "     --route-host=HOST=BACKEND\n"
	       "                          Clients whose HTTP Host: or TLS SNI is HOST go to\n"
	       "                          BACKEND; HOST may be *.domain (repeatable)\n"
	       "     --peek-timeout=TIME  How long to wait for the Host or SNI (default: 5s)\n"
	       "     --peek-fail=WHAT     default or close: what a malformed, truncated or\n"
	       "                          oversized request gets (default: default route)\n"
	       "     --balance=HOW        round-robin or least-conn (default: round-robin)\n"
	       "     --connect-timeout=TIME\n"
	       "                          Keep trying a route's backends, with backoff, for up\n"
	       "                          to TIME before closing the client (default: 5s)\n"
	       "     --max-fails=N        After N failed connects in a row, skip a backend...\n"
	       "     --fail-timeout=TIME  ...for TIME (defaults: 3, 10s)\n"
	       "     --proxy-protocol=V   Send a PROXY protocol v1 or v2 header to the backend\n"
	       "\n"
	       "Limits (reloaded on SIGHUP):\n"
	       "     --max-connections=N  Stop accepting at N open connections (default: no limit)\n"
	       "     --idle-timeout=TIME  Close connections that moved no byte for TIME\n"
	       "     --keepalive[=TIME]   TCP keepalive on client sockets, first probe after TIME\n"
	       "     --exit-idle-time=TIME\n"
	       "                          Exit when no connection was open for TIME\n"
	       "     --drain-timeout=TIME On SIGTERM, how long open connections may finish\n"
	       "                          (default: 10s)\n"
	       "\n"
	       "     --config=FILE        Read options from FILE, one \"long-option = value\" per\n"
	       "                          line; SIGHUP reads it again\n"
	       "  -v --verbose            Log debug messages, including libbpf's\n"
	       "  -h --help               Show this help\n"
	       "     --version            Show the version\n"
	       "\n"
	       "TIME is a number of seconds, or takes a unit: 500ms, 10s, 2min.\n"
	       "Exit status: 0 on success and after SIGTERM, 1 on failure, 2 on bad usage.\n"
	       "\n"
	       "Commands for running instances (see their --help):\n"
	       "  stats [NAME...]         Show their counters\n"
	       "  reload NAME             Reload one (SIGHUP) and wait for the outcome\n",
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
		{ "us", 1 },	      { "ms", USEC_PER_MSEC },	    { "s", USEC_PER_SEC },
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

static int parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*ret = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*ret = false;
			return 0;
		}
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

/* A systemd FileDescriptorName=: printable ASCII without ':', at most 255 bytes. */
static bool valid_fdname(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > 255)
		return false;
	for (const char *p = n; *p; p++)
		if (*p <= ' ' || *p >= 127 || *p == ':')
			return false;
	return true;
}

/* A host pattern: a host name, or "*." and a host name; stored lowercase, no trailing dot. */
static int normalize_host_pattern(const char *s, char **ret)
{
	const char *name = strncmp(s, "*.", 2) == 0 ? s + 2 : s;
	size_t n = strlen(s), label = 0;
	char *out;

	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0 || n > 253 || (size_t)(name - s) >= n)
		return -EINVAL;
	for (const char *p = name; p < s + n; p++) {
		if (*p == '.') {
			if (label == 0)
				return -EINVAL;
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
			return -EINVAL;
		if (++label > 63)
			return -EINVAL;
	}
	if (label == 0)
		return -EINVAL;
	out = strndup(s, n);
	if (!out)
		return -ENOMEM;
	for (char *p = out; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	*ret = out;
	return 0;
}

static int strv_push(char ***l, size_t *n, const char *s)
{
	char **nl, *copy;

	copy = strdup(s);
	if (!copy)
		return -ENOMEM;
	nl = realloc(*l, (*n + 1) * sizeof(char *));
	if (!nl) {
		free(copy);
		return -ENOMEM;
	}
	nl[(*n)++] = copy;
	*l = nl;
	return 0;
}

static int replace_string(char **p, const char *s)
{
	char *copy = strdup(s);

	if (!copy)
		return -ENOMEM;
	free(*p);
	*p = copy;
	return 0;
}

/* Where an option came from, for error messages. */
struct source {
	const char *file; /* NULL: the command line */
	unsigned line;
};

static int _printf_(4, 5) invalid(const struct source *src, const char *name, const char *value,
				  const char *reason_fmt, ...)
{
	char reason[256];
	va_list ap;

	va_start(ap, reason_fmt);
	vsnprintf(reason, sizeof(reason), reason_fmt, ap);
	va_end(ap);

	if (src->file)
		log_error("%s:%u: Invalid %s '%s': %s.", src->file, src->line, name, value, reason);
	else
		log_error("Invalid --%s '%s': %s.", name, value, reason);
	return -SR_EUSAGE;
}

static int add_backend(struct options *o, const struct source *src, const char *name,
		       const char *spec)
{
	struct sr_address a;
	const char *reason = NULL;

	if (address_parse(spec, ADDRESS_BACKEND, &a, &reason) < 0) {
		if (!src->file && streq(name, "BACKEND")) {
			log_error("Invalid BACKEND '%s': %s.", spec, reason);
			return -SR_EUSAGE;
		}
		return invalid(src, name, spec, "%s", reason);
	}
	return strv_push(&o->backends, &o->n_backends, spec);
}

static int add_route(struct route_spec **l, size_t *n, const struct source *src, const char *name,
		     const char *value, bool host)
{
	_cleanup_free_ char *key = NULL;
	struct route_spec *nl;
	const char *eq = strchr(value, '='), *reason = NULL;
	struct sr_address a;
	char *backend;
	int r;

	if (!eq || eq == value)
		return invalid(src, name, value, "expected %s=BACKEND", host ? "HOST" : "NAME");
	key = strndup(value, (size_t)(eq - value));
	if (!key)
		return -ENOMEM;
	if (host) {
		char *pattern = NULL;

		r = normalize_host_pattern(key, &pattern);
		if (r == -ENOMEM)
			return r;
		if (r < 0)
			return invalid(src, name, value, "'%s' is not a host name or *.domain",
				       key);
		free(key);
		key = pattern;
	} else if (!valid_fdname(key))
		return invalid(src, name, value, "'%s' is not a valid socket name", key);

	if (address_parse(eq + 1, ADDRESS_BACKEND, &a, &reason) < 0)
		return invalid(src, name, value, "backend: %s", reason);

	backend = strdup(eq + 1);
	if (!backend)
		return -ENOMEM;
	nl = realloc(*l, (*n + 1) * sizeof(**l));
	if (!nl) {
		free(backend);
		return -ENOMEM;
	}
	nl[*n] = (struct route_spec){ .key = TAKE_PTR(key), .backend = backend };
	(*n)++;
	*l = nl;
	return 0;
}

static int parse_time_option(const struct source *src, const char *name, const char *value,
			     uint64_t *ret)
{
	if (parse_time_usec(value, ret) < 0)
		return invalid(src, name, value, "expected a time such as 10, 10s or 500ms");
	return 0;
}

static int parse_count_option(const struct source *src, const char *name, const char *value,
			      uint64_t min, uint64_t max, unsigned *ret)
{
	uint64_t v;

	if (parse_size(value, min, max, &v) < 0)
		return invalid(src, name, value, "expected a number from %llu to %llu",
			       (unsigned long long)min, (unsigned long long)max);
	*ret = (unsigned)v;
	return 0;
}

/*
 * Apply one option. value is NULL for a flag given on the command line; from a file, flags come
 * as booleans ("kernel-upload = yes").
 */
static int apply_option(struct options *o, int id, const char *name, const char *value,
			const struct source *src)
{
	uint64_t u;
	unsigned n = 0;
	int r;

	switch (id) {
	case 'v':
		if (!value) {
			o->verbose = true;
			return 0;
		}
		if (parse_bool(value, &o->verbose) < 0)
			return invalid(src, name, value, "expected yes or no");
		return 0;
	case ARG_CONFIG:
		if (src->file)
			return invalid(src, name, value, "a config file can't read another one");
		return replace_string(&o->config_file, value);
	case 'l': {
		struct sr_address a;
		const char *reason = NULL;

		if (address_parse(value, ADDRESS_LISTEN, &a, &reason) < 0)
			return invalid(src, src->file ? name : "listen address", value, "%s",
				       reason);
		return strv_push(&o->listen, &o->n_listen, value);
	}
	case 'm':
		for (size_t i = 0; i < ELEMENTSOF(mode_table); i++)
			if (streq(value, mode_table[i])) {
				o->mode = (enum sr_mode)i;
				return 0;
			}
		return invalid(src, name, value, "expected auto, bpf or splice");
	case ARG_KERNEL_UPLOAD:
	case ARG_ALLOW_UNBOUNDED_UPLOAD: {
		bool *b = id == ARG_KERNEL_UPLOAD ? &o->kernel_upload : &o->allow_unbounded_upload;

		if (!value) {
			*b = true;
			return 0;
		}
		if (parse_bool(value, b) < 0)
			return invalid(src, name, value, "expected yes or no");
		return 0;
	}
	case ARG_UPLOAD_SNDBUF:
		if (parse_size(value, 4096, 1ULL << 30, &o->upload_sndbuf) < 0)
			return invalid(src, name, value, "expected a size from 4K to 1G");
		return 0;
	case 'n':
		if (!valid_name(value))
			return invalid(src, name, value,
				       "use 1-64 letters, digits, '_', '-', '.' or '@'");
		return replace_string(&o->name, value);
	case ARG_PIN_PATH:
		if (value[0] != '/')
			return invalid(src, name, value, "must be an absolute path");
		return replace_string(&o->pin_path, value);
	case ARG_MAP_ENTRIES:
		if (parse_size(value, 1, 1U << 24, &u) < 0)
			return invalid(src, name, value, "expected a number from 1 to 16777216");
		o->map_entries = (uint32_t)u;
		return 0;
	case ARG_WORKERS:
		if (streq(value, "auto")) {
			long n = sysconf(_SC_NPROCESSORS_ONLN);

			o->workers = (unsigned)CLAMP(n, 1, SR_WORKERS_MAX);
			return 0;
		}
		if (parse_size(value, 1, SR_WORKERS_MAX, &u) < 0)
			return invalid(src, name, value, "expected auto or a number from 1 to 64");
		o->workers = (unsigned)u;
		return 0;
	case ARG_DRAIN_TIMEOUT:
		return parse_time_option(src, name, value, &o->drain_timeout);
	case ARG_BACKEND:
		return add_backend(o, src, name, value);
	case ARG_ROUTE:
		return add_route(&o->routes, &o->n_routes, src, name, value, false);
	case ARG_ROUTE_HOST:
		return add_route(&o->host_routes, &o->n_host_routes, src, name, value, true);
	case ARG_BALANCE:
		if (streq(value, "round-robin"))
			o->balance = SR_BALANCE_ROUND_ROBIN;
		else if (streq(value, "least-conn"))
			o->balance = SR_BALANCE_LEAST_CONN;
		else
			return invalid(src, name, value, "expected round-robin or least-conn");
		return 0;
	case ARG_CONNECT_TIMEOUT:
		return parse_time_option(src, name, value, &o->connect_timeout);
	case ARG_MAX_FAILS:
		return parse_count_option(src, name, value, 1, 1000, &o->max_fails);
	case ARG_FAIL_TIMEOUT:
		return parse_time_option(src, name, value, &o->fail_timeout);
	case ARG_PEEK_TIMEOUT:
		r = parse_time_option(src, name, value, &o->peek_timeout);
		if (r >= 0 && o->peek_timeout == 0)
			return invalid(src, name, value, "must be more than 0");
		return r;
	case ARG_PEEK_FAIL:
		if (streq(value, "default"))
			o->peek_fail_close = false;
		else if (streq(value, "close"))
			o->peek_fail_close = true;
		else
			return invalid(src, name, value, "expected default or close");
		return 0;
	case ARG_PROXY_PROTOCOL:
		if (streq(value, "v1") || streq(value, "1"))
			o->proxy_protocol = 1;
		else if (streq(value, "v2") || streq(value, "2"))
			o->proxy_protocol = 2;
		else if (streq(value, "no") || streq(value, "off"))
			o->proxy_protocol = 0;
		else
			return invalid(src, name, value, "expected v1, v2 or no");
		return 0;
	case ARG_MAX_CONNECTIONS:
		r = parse_count_option(src, name, value, 0, 1000000, &n);
		if (r >= 0)
			o->max_connections = n;
		return r;
	case ARG_IDLE_TIMEOUT:
		return parse_time_option(src, name, value, &o->idle_timeout);
	case ARG_KEEPALIVE:
		o->keepalive_time = 0;
		if (!value) {
			o->keepalive = true;
			return 0;
		}
		if (parse_bool(value, &o->keepalive) >= 0)
			return 0;
		if (parse_time_usec(value, &o->keepalive_time) < 0 ||
		    o->keepalive_time < USEC_PER_SEC || o->keepalive_time > 32767 * USEC_PER_SEC)
			return invalid(src, name, value,
				       "expected yes, no, or a time from 1s to 32767s");
		o->keepalive = true;
		return 0;
	case ARG_EXIT_IDLE_TIME:
		return parse_time_option(src, name, value, &o->exit_idle_time);
	default:
		return log_error_errno(EINVAL, "Unhandled option %d.", id);
	}
}

static const struct option *find_option(const char *name)
{
	for (const struct option *opt = option_table; opt->name; opt++)
		if (streq(opt->name, name))
			return opt;
	return NULL;
}

static char *strip(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = 0;
	return s;
}

/* "key = value" lines; '#' and ';' start comments; the keys are the long option names. */
static int apply_file(struct options *o, const char *path)
{
	_cleanup_free_ char *line = NULL;
	FILE *f;
	size_t size = 0;
	struct source src = { .file = path };
	int r = 0;

	f = fopen(path, "re");
	if (!f) {
		log_error_errno(errno, "Failed to open config file %s: %m", path);
		return -SR_EUSAGE;
	}
	while (getline(&line, &size, f) >= 0) {
		const struct option *opt;
		char *key, *value, *eq;

		if (++src.line > CONFIG_MAX_LINES) {
			log_error("%s: more than %d lines.", path, CONFIG_MAX_LINES);
			r = -SR_EUSAGE;
			break;
		}
		key = strip(line);
		if (*key == 0 || *key == '#' || *key == ';')
			continue;
		eq = strchr(key, '=');
		if (!eq) {
			log_error("%s:%u: Expected 'key = value', got '%s'.", path, src.line, key);
			r = -SR_EUSAGE;
			break;
		}
		*eq = 0;
		key = strip(key);
		value = strip(eq + 1);
		opt = find_option(key);
		if (!opt || streq(key, "help") || streq(key, "version")) {
			log_error("%s:%u: Unknown option '%s'.", path, src.line, key);
			r = -SR_EUSAGE;
			break;
		}
		if (*value == 0) {
			log_error("%s:%u: Missing value for '%s'.", path, src.line, key);
			r = -SR_EUSAGE;
			break;
		}
		r = apply_option(o, opt->val, opt->name, value, &src);
		if (r < 0)
			break;
	}
	if (r >= 0 && ferror(f)) {
		log_error_errno(EIO, "Failed to read %s: %m", path);
		r = -SR_EUSAGE;
	}
	fclose(f);
	return r;
}

/* Returns 1 to go on, 0 after --help or --version, <0 on error. */
static int apply_argv(struct options *o, int argc, char *argv[])
{
	const struct source src = {};
	int c, r;

	/* optind = 0 makes glibc start over, for the second pass and for reloads. */
	optind = 0;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "hvl:m:n:", option_table, NULL)) >= 0) {
		const char *name = NULL;

		switch (c) {
		case 'h':
			help();
			return 0;
		case ARG_VERSION:
			printf("sockredir %s\n", SR_VERSION);
			return 0;
		case '?':
			log_error("Try '%s --help' for more information.",
				  program_invocation_short_name);
			return -SR_EUSAGE;
		}
		for (const struct option *opt = option_table; opt->name; opt++)
			if (opt->val == c)
				name = opt->name;
		r = apply_option(o, c, name, optarg, &src);
		if (r < 0) {
			if (r == -SR_EUSAGE)
				log_error("Try '%s --help' for more information.",
					  program_invocation_short_name);
			return r;
		}
	}
	for (int i = optind; i < argc; i++) {
		r = add_backend(o, &src, "BACKEND", argv[i]);
		if (r < 0)
			return r;
	}
	return 1;
}

static struct options *options_new(void)
{
	struct options *o = calloc(1, sizeof(*o));

	if (!o)
		return NULL;
	*o = (struct options){
		.mode = SR_MODE_AUTO,
		.upload_sndbuf = 64ULL << 20,
		.map_entries = SR_MAP_ENTRIES_DEFAULT,
		.workers = 1,
		.drain_timeout = 10 * USEC_PER_SEC,
		.connect_timeout = 5 * USEC_PER_SEC,
		.max_fails = 3,
		.fail_timeout = 10 * USEC_PER_SEC,
		.peek_timeout = 5 * USEC_PER_SEC,
	};
	return o;
}

static int options_verify(struct options *o)
{
	if (o->n_backends == 0 && o->n_routes == 0 && o->n_host_routes == 0) {
		log_error("Missing BACKEND argument (or --route).");
		log_error("Try '%s --help' for more information.", program_invocation_short_name);
		return -SR_EUSAGE;
	}
	if (o->kernel_upload && o->mode == SR_MODE_SPLICE) {
		log_error("--kernel-upload needs --mode bpf or auto.");
		return -SR_EUSAGE;
	}
	/*
	 * Both known ways to close a TCP window under a verdict program lose data on this kernel
	 * (SK_PASS duplicates, a map delete drops), so there is no bound to offer: say so, and
	 * make the user say yes.
	 */
	if (o->kernel_upload && !o->allow_unbounded_upload) {
		log_error(
			"--kernel-upload has no memory bound on this kernel: a client uploading to a "
			"slow backend can make the kernel queue as much memory as it sends (1 GiB "
			"measured; README.md, \"Known limits\"). Pass --allow-unbounded-upload too "
			"to use it anyway, with trusted clients only.");
		return -SR_EUSAGE;
	}
	if (!o->name && !(o->name = strdup("default")))
		return log_error_errno(ENOMEM, "Out of memory.");
	if (!o->pin_path && asprintf(&o->pin_path, SR_PIN_ROOT "/%s", o->name) < 0) {
		o->pin_path = NULL;
		return log_error_errno(ENOMEM, "Out of memory.");
	}
	return 0;
}

int options_parse(int argc, char *argv[], struct options **ret)
{
	_cleanup_(options_freep) struct options *o = NULL;
	_cleanup_free_ char *config = NULL;
	int r;

	o = options_new();
	if (!o)
		return log_error_errno(ENOMEM, "Out of memory.");
	r = apply_argv(o, argc, argv);
	if (r <= 0)
		return r;

	/* The file goes first so that the command line wins: parse again on top of it. */
	if (o->config_file) {
		config = TAKE_PTR(o->config_file);
		options_free(o);
		o = options_new();
		if (!o)
			return log_error_errno(ENOMEM, "Out of memory.");
		r = apply_file(o, config);
		if (r < 0)
			return r;
		r = apply_argv(o, argc, argv);
		if (r <= 0)
			return r;
	}

	r = options_verify(o);
	if (r < 0)
		return r;
	*ret = TAKE_PTR(o);
	return 1;
}

static void route_specs_free(struct route_spec *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(l[i].key);
		free(l[i].backend);
	}
	free(l);
}

static void strv_free(char **l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(l[i]);
	free(l);
}

struct options *options_free(struct options *o)
{
	if (!o)
		return NULL;
	strv_free(o->listen, o->n_listen);
	strv_free(o->backends, o->n_backends);
	route_specs_free(o->routes, o->n_routes);
	route_specs_free(o->host_routes, o->n_host_routes);
	free(o->name);
	free(o->pin_path);
	free(o->config_file);
	free(o);
	return NULL;
}
