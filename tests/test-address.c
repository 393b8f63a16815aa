// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for BACKEND and --listen parsing (user/address.c) and the strict number parsers
 * (user/parse.c): every accepted form, and every way of being rejected.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "../user/address.h"
#include "../user/parse.h"

#include "check.h"

/* Parse s and check that it prints back as want. */
static void accept_(const char *s, enum address_kind kind, const char *want, int family)
{
	char buf[SR_ADDRESS_STRLEN];
	struct sr_address a;
	const char *reason = NULL;
	int r;

	r = address_parse(s, kind, &a, &reason);
	if (!CHECK(r == 0, "'%s' rejected: %s", s, reason ? reason : "(no reason)"))
		return;
	CHECK(a.sa.sa_family == family, "'%s': family %d, want %d", s, a.sa.sa_family, family);
	address_to_string(&a, buf, sizeof(buf));
	CHECK(strcmp(buf, want) == 0, "'%s' printed as '%s', want '%s'", s, buf, want);
}

static void reject(const char *s, enum address_kind kind, const char *why)
{
	struct sr_address a = {}, before;
	const char *reason = NULL;
	int r;

	memset(&a, 0x5a, sizeof(a));
	before = a;
	r = address_parse(s, kind, &a, &reason);
	if (!CHECK(r < 0, "'%s' accepted, want rejected (%s)", s, why))
		return;
	CHECK(reason && *reason, "'%s': no reason given", s);
	CHECK(!why || (reason && strstr(reason, why)), "'%s': reason '%s', want '%s'", s,
	      reason ? reason : "", why);
	/* ret_ parameters are written only on success. */
	CHECK(memcmp(&a, &before, sizeof(a)) == 0, "'%s': output written on failure", s);
}

static void test_backend_accepted(void)
{
	char longest[200];

	accept_("/run/app.sock", ADDRESS_BACKEND, "/run/app.sock", AF_UNIX);
	accept_("unix:/run/app.sock", ADDRESS_BACKEND, "/run/app.sock", AF_UNIX);
	accept_("@abstract-name", ADDRESS_BACKEND, "@abstract-name", AF_UNIX);
	accept_("unix:@abs", ADDRESS_BACKEND, "@abs", AF_UNIX);
	accept_("127.0.0.1:8080", ADDRESS_BACKEND, "127.0.0.1:8080", AF_INET);
	accept_("10.1.2.3:1", ADDRESS_BACKEND, "10.1.2.3:1", AF_INET);
	accept_("0.0.0.0:65535", ADDRESS_BACKEND, "0.0.0.0:65535", AF_INET);
	accept_("[::1]:443", ADDRESS_BACKEND, "[::1]:443", AF_INET6);
	accept_("[2001:db8::5]:80", ADDRESS_BACKEND, "[2001:db8::5]:80", AF_INET6);
	accept_("[::ffff:127.0.0.1]:80", ADDRESS_BACKEND, "[::ffff:127.0.0.1]:80", AF_INET6);
	/* A scope prints as its number, which parses back the same (a fuzzer finding). */
	accept_("[fe80::1%1]:80", ADDRESS_BACKEND, "[fe80::1%1]:80", AF_INET6);
	accept_("localhost:8080", ADDRESS_BACKEND, "127.0.0.1:8080", AF_INET);

	/* The longest path that fits sun_path with its NUL: 107 bytes. */
	memset(longest, 'a', sizeof(longest));
	longest[0] = '/';
	longest[107] = 0;
	accept_(longest, ADDRESS_BACKEND, longest, AF_UNIX);
	longest[0] = '@';
	accept_(longest, ADDRESS_BACKEND, longest, AF_UNIX);
}

static void test_backend_rejected(void)
{
	char toolong[200];

	reject("", ADDRESS_BACKEND, "empty");
	reject("foo", ADDRESS_BACKEND, "not an address");
	reject("relative/path.sock", ADDRESS_BACKEND, "not an address");
	reject("unix:", ADDRESS_BACKEND, "empty path");
	reject("unix:relative.sock", ADDRESS_BACKEND, "absolute");
	reject("@", ADDRESS_BACKEND, "empty abstract");
	reject("unix:@", ADDRESS_BACKEND, "empty abstract");
	reject("/with\nnewline", ADDRESS_BACKEND, "control");
	reject("8080", ADDRESS_BACKEND, "not an address");
	reject(":8080", ADDRESS_BACKEND, "missing host");
	reject("127.0.0.1:", ADDRESS_BACKEND, "port");
	reject("127.0.0.1:0", ADDRESS_BACKEND, "port");
	reject("127.0.0.1:65536", ADDRESS_BACKEND, "port");
	reject("127.0.0.1:99999999", ADDRESS_BACKEND, "port");
	reject("127.0.0.1:-1", ADDRESS_BACKEND, "port");
	reject("127.0.0.1:+80", ADDRESS_BACKEND, "port");
	reject("127.0.0.1:080", ADDRESS_BACKEND, "port");
	reject("127.0.0.1:80x", ADDRESS_BACKEND, "port");
	reject("127.0.0.1: 80", ADDRESS_BACKEND, "port");
	reject("256.1.1.1:80", ADDRESS_BACKEND, "invalid IPv4");
	reject("1.2.3:80", ADDRESS_BACKEND, "invalid IPv4");
	reject("1.2.3.4.5:80", ADDRESS_BACKEND, "invalid IPv4");
	reject("::1:80", ADDRESS_BACKEND, "[addr]:port");
	reject("[::1]", ADDRESS_BACKEND, "missing ':PORT'");
	reject("[::1]80", ADDRESS_BACKEND, "missing ':PORT'");
	reject("[::1:80", ADDRESS_BACKEND, "missing ']'");
	reject("[]:80", ADDRESS_BACKEND, "invalid IPv6");
	reject("[::g]:80", ADDRESS_BACKEND, "invalid IP");
	reject("[127.0.0.1]:80", ADDRESS_BACKEND, "invalid IP");
	reject("[::1]:0", ADDRESS_BACKEND, "port");
	reject("host name:80", ADDRESS_BACKEND, "invalid host");
	reject("-bad..name:80", ADDRESS_BACKEND, "invalid host");
	reject("no-such-host.invalid:80", ADDRESS_BACKEND, "does not resolve");
	/* inet_aton()'s other forms are numbers to getaddrinfo(), not names (a fuzzer finding). */
	reject("0x7f.1:80", ADDRESS_BACKEND, "invalid IPv4");
	reject("0x7f000001:80", ADDRESS_BACKEND, "invalid IPv4");

	memset(toolong, 'a', sizeof(toolong));
	toolong[0] = '/';
	toolong[108] = 0;
	reject(toolong, ADDRESS_BACKEND, "too long");
	/* An abstract name has no NUL: it may be 107 bytes, not 108. */
	toolong[0] = '@';
	toolong[108] = 'a';
	toolong[109] = 0;
	reject(toolong, ADDRESS_BACKEND, "too long");
}

static void test_listen(void)
{
	/* A bare port means every address, v6 and v4; only --listen takes it. */
	accept_("8080", ADDRESS_LISTEN, "[::]:8080", AF_INET6);
	accept_("127.0.0.1:80", ADDRESS_LISTEN, "127.0.0.1:80", AF_INET);
	accept_("[::]:80", ADDRESS_LISTEN, "[::]:80", AF_INET6);
	accept_("/run/listen.sock", ADDRESS_LISTEN, "/run/listen.sock", AF_UNIX);
	accept_("@listen", ADDRESS_LISTEN, "@listen", AF_UNIX);
	reject("0", ADDRESS_LISTEN, "port");
	reject("65536", ADDRESS_LISTEN, "port");
	reject("", ADDRESS_LISTEN, "empty");
	reject("x", ADDRESS_LISTEN, "not an address");
}

static void test_numbers(void)
{
	uint64_t v = 0;

	CHECK(parse_size("4096", 1, UINT64_MAX, &v) == 0 && v == 4096, "4096");
	CHECK(parse_size("64M", 1, UINT64_MAX, &v) == 0 && v == 64ULL << 20, "64M");
	CHECK(parse_size("2G", 1, UINT64_MAX, &v) == 0 && v == 2ULL << 30, "2G");
	CHECK(parse_size("4k", 1, UINT64_MAX, &v) == 0 && v == 4096, "4k");
	CHECK(parse_size("-1", 0, UINT64_MAX, &v) < 0, "-1");
	CHECK(parse_size("1.5M", 0, UINT64_MAX, &v) < 0, "1.5M");
	CHECK(parse_size("12x", 0, UINT64_MAX, &v) < 0, "12x");
	CHECK(parse_size("", 0, UINT64_MAX, &v) < 0, "empty size");
	CHECK(parse_size("99999999999999999999", 0, UINT64_MAX, &v) < 0, "overflow");
	CHECK(parse_size("20000000000G", 0, UINT64_MAX, &v) < 0, "suffix overflow");
	CHECK(parse_size("0", 1, 10, &v) < 0, "below range");
	CHECK(parse_size("11", 1, 10, &v) < 0, "above range");

	CHECK(parse_time_usec("10", &v) == 0 && v == 10000000, "10");
	CHECK(parse_time_usec("10s", &v) == 0 && v == 10000000, "10s");
	CHECK(parse_time_usec("500ms", &v) == 0 && v == 500000, "500ms");
	CHECK(parse_time_usec("1.5", &v) == 0 && v == 1500000, "1.5");
	CHECK(parse_time_usec("2min", &v) == 0 && v == 120000000, "2min");
	CHECK(parse_time_usec("250us", &v) == 0 && v == 250, "250us");
	CHECK(parse_time_usec("1.", &v) < 0, "1.");
	CHECK(parse_time_usec("-1", &v) < 0, "-1s");
	CHECK(parse_time_usec("10h", &v) < 0, "10h");
	CHECK(parse_time_usec("", &v) < 0, "empty time");
}

int main(void)
{
	test_backend_accepted();
	test_backend_rejected();
	test_listen();
	test_numbers();
	printf("test-address: %d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
