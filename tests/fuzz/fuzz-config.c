// SPDX-License-Identifier: GPL-2.0
/*
 * options_parse() with a config file holding the input:
 *
 *     sockredir --config /proc/self/fd/N /tmp/x.sock
 *
 * It must not crash or leak, must either succeed with options that hold only valid values or
 * fail with -SR_EUSAGE, and on success the options written back as a config file must parse to
 * the same options. The file is a memfd; log lines go to /dev/null (FUZZ_CONFIG_LOG=1 keeps
 * them), and host names never reach DNS (fake-resolver.c).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <syslog.h>

#include "../../user/address.h"
#include "../../user/log.h"
#include "../../user/options.h"

#define FUZZ_CONFIG_MAX (64 * 1024)

static FILE *report; /* the real stderr, for our own messages */
static int config_fd = -1, again_fd = -1;
static char config_path[64], again_path[64];

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(report, "CHECK failed: %s: ", #cond);                              \
			fprintf(report, __VA_ARGS__);                                              \
			fputc('\n', report);                                                       \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static int open_memfd(const char *name, char *path, size_t size)
{
	int fd = memfd_create(name, MFD_CLOEXEC);

	if (fd < 0) {
		perror("memfd_create");
		abort();
	}
	snprintf(path, size, "/proc/self/fd/%d", fd);
	return fd;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	report = stderr;
	if (!getenv("FUZZ_CONFIG_LOG")) {
		/* log.c and getopt write to stderr, the FILE; libFuzzer and ASan keep fd 2. */
		stderr = fopen("/dev/null", "we");
		if (!stderr)
			abort();
	}
	config_fd = open_memfd("fuzz-config", config_path, sizeof(config_path));
	again_fd = open_memfd("fuzz-config-again", again_path, sizeof(again_path));
	return 0;
}

static void set_file(int fd, const void *data, size_t size)
{
	if (ftruncate(fd, 0) < 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) {
		perror("memfd");
		abort();
	}
}

static int parse(const char *path, struct options **ret)
{
	char *argv[] = { "sockredir", "--config", (char *)path, "/tmp/x.sock", NULL };

	*ret = NULL;
	return options_parse(4, argv, ret);
}

static bool lowercase_host_pattern(const char *k)
{
	size_t n = strlen(k);

	if (strncmp(k, "*.", 2) == 0)
		k += 2, n -= 2;
	if (n == 0 || n > 253 || k[0] == '.' || k[n - 1] == '.' || strstr(k, ".."))
		return false;
	return strspn(k, "abcdefghijklmnopqrstuvwxyz0123456789-_.") == n;
}

static void check_address(const char *s, enum address_kind kind)
{
	struct sr_address a;
	const char *reason = NULL;

	CHECK(address_parse(s, kind, &a, &reason) == 0, "accepted '%s', which is invalid: %s", s,
	      reason);
}

/* Every value is one the parser would accept. */
static void check_valid(const struct options *o)
{
	CHECK(o->mode <= SR_MODE_SPLICE, "mode %d", o->mode);
	CHECK(!(o->kernel_upload && o->mode == SR_MODE_SPLICE), "kernel upload with splice");
	CHECK(!o->kernel_upload || o->allow_unbounded_upload, "kernel upload not allowed");
	CHECK(o->upload_sndbuf >= 4096 && o->upload_sndbuf <= 1 << 30, "upload-sndbuf %llu",
	      (unsigned long long)o->upload_sndbuf);
	CHECK(o->name && *o->name && strlen(o->name) <= 64, "name");
	CHECK(o->pin_path && o->pin_path[0] == '/', "pin path");
	CHECK(o->map_entries >= 1 && o->map_entries <= 1 << 24, "map entries %u", o->map_entries);
	CHECK(o->config_file && strcmp(o->config_file, config_path) == 0, "config file");
	for (size_t i = 0; i < o->n_listen; i++)
		check_address(o->listen[i], ADDRESS_LISTEN);
	CHECK(o->n_backends >= 1 && strcmp(o->backends[o->n_backends - 1], "/tmp/x.sock") == 0,
	      "the command line's BACKEND is not last");
	for (size_t i = 0; i < o->n_backends; i++)
		check_address(o->backends[i], ADDRESS_BACKEND);
	for (size_t i = 0; i < o->n_routes; i++) {
		const char *k = o->routes[i].key;

		CHECK(*k && strlen(k) <= 255 && !strpbrk(k, ": =\t"), "route name '%s'", k);
		check_address(o->routes[i].backend, ADDRESS_BACKEND);
	}
	for (size_t i = 0; i < o->n_host_routes; i++) {
		CHECK(lowercase_host_pattern(o->host_routes[i].key), "host pattern '%s'",
		      o->host_routes[i].key);
		check_address(o->host_routes[i].backend, ADDRESS_BACKEND);
	}
	CHECK(o->balance <= SR_BALANCE_LEAST_CONN, "balance %d", o->balance);
	CHECK(o->max_fails >= 1 && o->max_fails <= 1000, "max-fails %u", o->max_fails);
	CHECK(o->peek_timeout > 0, "peek-timeout 0");
	CHECK(o->proxy_protocol <= 2, "proxy-protocol %u", o->proxy_protocol);
	CHECK(o->max_connections <= 1000000, "max-connections %u", o->max_connections);
	CHECK(o->keepalive || o->keepalive_time == 0, "keepalive time without keepalive");
	CHECK(o->keepalive_time == 0 ||
		      (o->keepalive_time >= 1000000 && o->keepalive_time <= 32767000000ULL),
	      "keepalive time %llu", (unsigned long long)o->keepalive_time);
}

/* Text that parse_time_usec() reads back as usec exactly, or false if there is none. */
static bool format_time(uint64_t usec, char *buf, size_t size)
{
	const uint64_t max = 1000000000ULL, s = 1000000ULL, min = 60 * s;

	if (usec % min == 0 && usec / min <= max)
		snprintf(buf, size, "%llumin", (unsigned long long)(usec / min));
	else if (usec / s <= max)
		snprintf(buf, size, "%llu.%06llus", (unsigned long long)(usec / s),
			 (unsigned long long)(usec % s));
	else if (usec / min <= max && usec % min % 60 == 0)
		snprintf(buf, size, "%llu.%06llumin", (unsigned long long)(usec / min),
			 (unsigned long long)(usec % min / 60));
	else
		return false;
	return true;
}

struct text {
	char *buf;
	size_t len;
	FILE *f;
	bool ok;
};

static void put_time(struct text *t, const char *key, uint64_t usec)
{
	char b[64];

	if (!format_time(usec, b, sizeof(b)))
		t->ok = false;
	else
		fprintf(t->f, "%s = %s\n", key, b);
}

/* o as a config file; the command line's BACKEND is left out, as it comes again from argv. */
static bool write_back(const struct options *o, struct text *t)
{
	static const char *const modes[] = { "auto", "bpf", "splice" };
	static const char *const pp[] = { "no", "v1", "v2" };

	t->ok = true;
	t->f = open_memstream(&t->buf, &t->len);
	if (!t->f)
		abort();
	fprintf(t->f, "# written back\nmode = %s\n", modes[o->mode]);
	fprintf(t->f, "kernel-upload = %s\n", o->kernel_upload ? "yes" : "no");
	fprintf(t->f, "allow-unbounded-upload = %s\n", o->allow_unbounded_upload ? "1" : "0");
	fprintf(t->f, "upload-sndbuf = %llu\n", (unsigned long long)o->upload_sndbuf);
	fprintf(t->f, "name = %s\npin-path = %s\n", o->name, o->pin_path);
	fprintf(t->f, "map-entries = %u\n", o->map_entries);
	for (size_t i = 0; i < o->n_listen; i++)
		fprintf(t->f, "listen = %s\n", o->listen[i]);
	fprintf(t->f, "verbose = %s\n", o->verbose ? "on" : "off");
	for (size_t i = 0; i + 1 < o->n_backends; i++)
		fprintf(t->f, "backend = %s\n", o->backends[i]);
	for (size_t i = 0; i < o->n_routes; i++)
		fprintf(t->f, "route = %s=%s\n", o->routes[i].key, o->routes[i].backend);
	for (size_t i = 0; i < o->n_host_routes; i++)
		fprintf(t->f, "route-host = %s=%s\n", o->host_routes[i].key,
			o->host_routes[i].backend);
	fprintf(t->f, "balance = %s\n",
		o->balance == SR_BALANCE_LEAST_CONN ? "least-conn" : "round-robin");
	put_time(t, "connect-timeout", o->connect_timeout);
	fprintf(t->f, "max-fails = %u\n", o->max_fails);
	put_time(t, "fail-timeout", o->fail_timeout);
	put_time(t, "peek-timeout", o->peek_timeout);
	fprintf(t->f, "peek-fail = %s\n", o->peek_fail_close ? "close" : "default");
	fprintf(t->f, "proxy-protocol = %s\n", pp[o->proxy_protocol]);
	fprintf(t->f, "max-connections = %u\n", o->max_connections);
	put_time(t, "idle-timeout", o->idle_timeout);
	if (o->keepalive_time)
		put_time(t, "keepalive", o->keepalive_time);
	else
		fprintf(t->f, "keepalive = %s\n", o->keepalive ? "true" : "false");
	put_time(t, "exit-idle-time", o->exit_idle_time);
	put_time(t, "drain-timeout", o->drain_timeout);
	if (fclose(t->f) != 0)
		abort();
	return t->ok;
}

static bool same_strv(char **a, size_t na, char **b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

static bool same_routes(const struct route_spec *a, size_t na, const struct route_spec *b,
			size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i].key, b[i].key) != 0 || strcmp(a[i].backend, b[i].backend) != 0)
			return false;
	return true;
}

static void check_same(const struct options *a, const struct options *b, const char *text)
{
#define SAME(field) CHECK(a->field == b->field, "%s differs after writing back:\n%s", #field, text)
	SAME(mode);
	SAME(kernel_upload);
	SAME(allow_unbounded_upload);
	SAME(upload_sndbuf);
	SAME(map_entries);
	SAME(verbose);
	SAME(balance);
	SAME(connect_timeout);
	SAME(max_fails);
	SAME(fail_timeout);
	SAME(peek_timeout);
	SAME(peek_fail_close);
	SAME(proxy_protocol);
	SAME(max_connections);
	SAME(idle_timeout);
	SAME(keepalive);
	SAME(keepalive_time);
	SAME(exit_idle_time);
	SAME(drain_timeout);
#undef SAME
	CHECK(strcmp(a->name, b->name) == 0 && strcmp(a->pin_path, b->pin_path) == 0,
	      "name or pin path differs after writing back:\n%s", text);
	CHECK(same_strv(a->listen, a->n_listen, b->listen, b->n_listen),
	      "listen differs after writing back:\n%s", text);
	CHECK(same_strv(a->backends, a->n_backends, b->backends, b->n_backends),
	      "backends differ after writing back:\n%s", text);
	CHECK(same_routes(a->routes, a->n_routes, b->routes, b->n_routes),
	      "routes differ after writing back:\n%s", text);
	CHECK(same_routes(a->host_routes, a->n_host_routes, b->host_routes, b->n_host_routes),
	      "host routes differ after writing back:\n%s", text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	_cleanup_(options_freep) struct options *o = NULL, *o2 = NULL;
	struct text t = {};
	int r;

	if (size > FUZZ_CONFIG_MAX)
		return 0;
	set_file(config_fd, data, size);
	r = parse(config_path, &o);
	if (r < 0) {
		CHECK(r == -SR_EUSAGE, "options_parse: %d", r);
		CHECK(!o, "options returned on failure");
		return 0;
	}
	CHECK(r == 1 && o, "options_parse: %d", r);
	check_valid(o);

	/* Written back and read again, with the second file's path as --config. */
	if (write_back(o, &t)) {
		set_file(again_fd, t.buf, t.len);
		r = parse(again_path, &o2);
		CHECK(r == 1 && o2, "the options written back are rejected (%d):\n%s", r, t.buf);
		free(o2->config_file);
		o2->config_file = NULL;
		free(o->config_file);
		o->config_file = NULL;
		check_same(o, o2, t.buf);
	}
	free(t.buf);
	return 0;
}
