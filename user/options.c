// SPDX-License-Identifier: GPL-2.0
/*
 * Options, in the shape of systemd's parse_argv(). The command line goes through getopt_long();
 * a config file line "key = value" is looked up in the same table and applied by the same
 * function, so both accept exactly the same names and values.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../bpf/sockredir.h"
#include "address.h"
#include "config-file.h"
#include "log.h"
#include "options-help.h"
#include "options.h"
#include "parse.h"
#include "usage.h"

#ifndef SR_VERSION
#define SR_VERSION "0.0"
#endif

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
	ARG_METRICS_LISTEN,
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
	{ "metrics-listen", required_argument, NULL, ARG_METRICS_LISTEN },
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

		r = host_pattern_normalize(key, &pattern);
		if (r == -ENOMEM)
			return r;
		if (r < 0)
			return invalid(src, name, value, "'%s' is not a host name or *.domain",
				       key);
		free(key);
		key = pattern;
	} else if (!fdname_is_valid(key))
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
	case 'l':
	case ARG_METRICS_LISTEN: {
		struct sr_address a;
		const char *reason = NULL;

		if (address_parse(value, ADDRESS_LISTEN, &a, &reason) < 0)
			return invalid(src, src->file || id != 'l' ? name : "listen address", value,
				       "%s", reason);
		if (id == ARG_METRICS_LISTEN)
			return replace_string(&o->metrics_listen, value);
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
		if (!instance_name_is_valid(value))
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

/* One config file line: the same table and apply_option() as the command line. */
static int apply_file_line(const char *path, unsigned line, const char *key, const char *value,
			   void *userdata)
{
	const struct source src = { .file = path, .line = line };
	const struct option *opt;

	opt = find_option(key);
	if (!opt || streq(key, "help") || streq(key, "version")) {
		log_error("%s:%u: Unknown option '%s'.", path, line, key);
		return -SR_EUSAGE;
	}
	if (*value == 0) {
		log_error("%s:%u: Missing value for '%s'.", path, line, key);
		return -SR_EUSAGE;
	}
	return apply_option(userdata, opt->val, opt->name, value, &src);
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
			options_help();
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
		r = config_file_read(config, apply_file_line, o);
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
	free(o->metrics_listen);
	free(o->config_file);
	free(o);
	return NULL;
}
