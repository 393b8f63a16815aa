// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for the PROXY protocol encoder (user/proxy-protocol.c): round trips through a
 * decoder written here from HAProxy's spec, independent of the encoder, the exact bytes of
 * each form, the size limits, and headers for real connected sockets.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../user/proxy-protocol.h"

#include "check.h"

/* "\r\n\r\n\0\r\nQUIT\n" */
static const uint8_t v2_signature[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
					  0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

/* What a header says, as the decoder reads it. */
struct pp {
	unsigned version;
	bool local;	 /* v1 UNKNOWN, or the v2 LOCAL command */
	int family;	 /* AF_INET, AF_INET6, or AF_UNSPEC */
	char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
	unsigned sport, dport;
	size_t len;	 /* bytes of header */
};

/* A decimal port: 0 to 65535, no sign, no leading zero. */
static bool parse_port(const char *s, unsigned *ret)
{
	unsigned long v = 0;

	if (!*s || (s[0] == '0' && s[1]) || strlen(s) > 5)
		return false;
	for (const char *c = s; *c; c++) {
		if (*c < '0' || *c > '9')
			return false;
		v = v * 10 + (unsigned)(*c - '0');
	}
	if (v > 65535)
		return false;
	*ret = (unsigned)v;
	return true;
}

/* An address as the v1 spec has it: it parses, and it is the canonical text of itself. */
static bool parse_addr(int family, const char *s, char *ret)
{
	uint8_t a[16];

	if (inet_pton(family, s, a) != 1)
		return false;
	inet_ntop(family, a, ret, INET6_ADDRSTRLEN);
	return strcmp(ret, s) == 0;
}

/* "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or "PROXY UNKNOWN...\r\n", at most 107 bytes. */
static int decode_v1(const uint8_t *buf, size_t len, struct pp *ret)
{
	char line[108], *f[7], *save = NULL;
	const uint8_t *crlf = NULL;
	size_t n = 0;
	int family;

	for (size_t i = 0; i + 1 < len && i + 2 <= 107; i++)
		if (buf[i] == '\r' && buf[i + 1] == '\n') {
			crlf = buf + i;
			break;
		}
	if (!crlf)
		return -1;
	memcpy(line, buf, (size_t)(crlf - buf));
	line[crlf - buf] = 0;
	if (strlen(line) != (size_t)(crlf - buf))
		return -1; /* a NUL inside */
	ret->version = 1;
	ret->len = (size_t)(crlf - buf) + 2;

	/* Single spaces only: strtok_r would take doubled ones. */
	if (strstr(line, "  ") || line[strlen(line) - 1] == ' ')
		return -1;
	for (char *t = strtok_r(line, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		if (n == 6 + 1)
			return -1;
		f[n++] = t;
	}
	if (n < 2 || strcmp(f[0], "PROXY") != 0)
		return -1;
	if (strcmp(f[1], "UNKNOWN") == 0) {
		ret->local = true;
		ret->family = AF_UNSPEC;
		return 0;
	}
	if (strcmp(f[1], "TCP4") == 0)
		family = AF_INET;
	else if (strcmp(f[1], "TCP6") == 0)
		family = AF_INET6;
	else
		return -1;
	if (n != 6 || !parse_addr(family, f[2], ret->src) || !parse_addr(family, f[3], ret->dst) ||
	    !parse_port(f[4], &ret->sport) || !parse_port(f[5], &ret->dport))
		return -1;
	ret->local = false;
	ret->family = family;
	return 0;
}

/* The 16-byte v2 header, then the address block its length announces. */
static int decode_v2(const uint8_t *buf, size_t len, struct pp *ret)
{
	size_t alen, block;

	if (len < 16 || memcmp(buf, v2_signature, 12) != 0)
		return -1;
	if (buf[12] >> 4 != 2)
		return -1;
	block = (size_t)buf[14] << 8 | buf[15];
	if (16 + block > len)
		return -1;
	ret->version = 2;
	ret->len = 16 + block;
	switch (buf[12] & 0xf) {
	case 0: /* LOCAL: the receiver ignores the address block */
		ret->local = true;
		ret->family = AF_UNSPEC;
		return buf[13] == 0 ? 0 : -1;
	case 1: /* PROXY */
		ret->local = false;
		break;
	default:
		return -1;
	}
	switch (buf[13]) {
	case 0x11: /* TCP over IPv4 */
		ret->family = AF_INET;
		alen = 4;
		break;
	case 0x21: /* TCP over IPv6 */
		ret->family = AF_INET6;
		alen = 16;
		break;
	default:
		return -1;
	}
	if (block < 2 * alen + 4)
		return -1;
	inet_ntop(ret->family, buf + 16, ret->src, sizeof(ret->src));
	inet_ntop(ret->family, buf + 16 + alen, ret->dst, sizeof(ret->dst));
	ret->sport = (unsigned)buf[16 + 2 * alen] << 8 | buf[17 + 2 * alen];
	ret->dport = (unsigned)buf[18 + 2 * alen] << 8 | buf[19 + 2 * alen];
	return 0;
}

static int decode(const uint8_t *buf, size_t len, struct pp *ret)
{
	*ret = (struct pp){};
	if (len >= 12 && memcmp(buf, v2_signature, 12) == 0)
		return decode_v2(buf, len, ret);
	if (len >= 6 && memcmp(buf, "PROXY ", 6) == 0)
		return decode_v1(buf, len, ret);
	return -1;
}

/* A socket address from text: "a.b.c.d", an IPv6 address, or "unix:PATH". */
static struct sockaddr_storage addr(const char *s, unsigned port)
{
	struct sockaddr_storage ss = {};
	struct sockaddr_in *in = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
	struct sockaddr_un *un = (struct sockaddr_un *)&ss;

	if (strncmp(s, "unix:", 5) == 0) {
		un->sun_family = AF_UNIX;
		snprintf(un->sun_path, sizeof(un->sun_path), "%s", s + 5);
	} else if (inet_pton(AF_INET, s, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
	} else if (inet_pton(AF_INET6, s, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
	} else {
		fprintf(stderr, "bad test address '%s'\n", s);
		abort();
	}
	return ss;
}

static int encode(unsigned version, const struct sockaddr_storage *src,
		  const struct sockaddr_storage *dst, uint8_t *buf, size_t size)
{
	return proxy_header_encode(version, (const struct sockaddr *)src,
				   (const struct sockaddr *)dst, buf, size);
}

/*
 * Encode src:sport -> dst:dport in both versions, decode, and compare with what the header
 * should carry: family (AF_UNSPEC for UNKNOWN / LOCAL) and the canonical address texts.
 */
static void roundtrip(const char *s, unsigned sport, const char *d, unsigned dport, int family,
		      const char *want_src, const char *want_dst)
{
	struct sockaddr_storage src = addr(s, sport), dst = addr(d, dport);

	for (unsigned version = 1; version <= 2; version++) {
		uint8_t buf[PROXY_HEADER_MAX];
		struct pp pp;
		int n;

		memset(buf, 0xee, sizeof(buf));
		n = encode(version, &src, &dst, buf, sizeof(buf));
		if (!CHECK(n > 0 && (size_t)n <= sizeof(buf), "v%u %s -> %s: encode gave %d",
			   version, s, d, n))
			continue;
		if (!CHECK(decode(buf, (size_t)n, &pp) == 0, "v%u %s -> %s: does not decode",
			   version, s, d))
			continue;
		CHECK(pp.version == version && pp.len == (size_t)n,
		      "v%u %s -> %s: decoded v%u of %zu bytes, encoded %d", version, s, d,
		      pp.version, pp.len, n);
		CHECK(pp.family == family, "v%u %s -> %s: family %d, want %d", version, s, d,
		      pp.family, family);
		CHECK(pp.local == (family == AF_UNSPEC), "v%u %s -> %s: local %d", version, s, d,
		      pp.local);
		if (family == AF_UNSPEC) {
			/* No address at all: v1 "PROXY UNKNOWN", v2 LOCAL with no block. */
			if (version == 1)
				CHECK(n == 15 && memcmp(buf, "PROXY UNKNOWN\r\n", 15) == 0,
				      "v1 %s -> %s: '%.*s'", s, d, n, buf);
			else
				CHECK(n == 16 && buf[12] == 0x20 && buf[13] == 0 && buf[14] == 0 &&
					      buf[15] == 0,
				      "v2 %s -> %s: not LOCAL/UNSPEC with no addresses", s, d);
			continue;
		}
		CHECK(strcmp(pp.src, want_src) == 0 && strcmp(pp.dst, want_dst) == 0,
		      "v%u %s -> %s: decoded %s -> %s, want %s -> %s", version, s, d, pp.src, pp.dst,
		      want_src, want_dst);
		CHECK(pp.sport == sport && pp.dport == dport,
		      "v%u %s -> %s: ports %u -> %u, want %u -> %u", version, s, d, pp.sport,
		      pp.dport, sport, dport);
		/* Nothing written past the header. */
		CHECK((size_t)n == sizeof(buf) || buf[n] == 0xee,
		      "v%u %s -> %s: byte after the header written", version, s, d);
	}
}

static void test_roundtrip(void)
{
	roundtrip("192.0.2.1", 12345, "198.51.100.2", 80, AF_INET, "192.0.2.1", "198.51.100.2");
	roundtrip("10.0.0.1", 0, "10.0.0.2", 65535, AF_INET, "10.0.0.1", "10.0.0.2");
	roundtrip("255.255.255.255", 65535, "0.0.0.0", 0, AF_INET, "255.255.255.255", "0.0.0.0");
	roundtrip("2001:db8::1", 54321, "2001:db8::2", 443, AF_INET6, "2001:db8::1",
		  "2001:db8::2");
	roundtrip("::1", 0, "::1", 65535, AF_INET6, "::1", "::1");
	roundtrip("fe80::1:2:3:4", 1, "2001:db8:0:1:1:1:1:1", 2, AF_INET6, "fe80::1:2:3:4",
		  "2001:db8:0:1:1:1:1:1");
	/* IPv4-mapped IPv6: sent as IPv4. */
	roundtrip("::ffff:192.0.2.1", 12345, "::ffff:198.51.100.2", 80, AF_INET, "192.0.2.1",
		  "198.51.100.2");
	roundtrip("::ffff:127.0.0.1", 40000, "127.0.0.1", 8080, AF_INET, "127.0.0.1",
		  "127.0.0.1");
	roundtrip("192.0.2.1", 40000, "::ffff:198.51.100.2", 8080, AF_INET, "192.0.2.1",
		  "198.51.100.2");
	/* Mixed families: nothing the backend could use. */
	roundtrip("192.0.2.1", 12345, "2001:db8::2", 80, AF_UNSPEC, NULL, NULL);
	roundtrip("2001:db8::1", 12345, "198.51.100.2", 80, AF_UNSPEC, NULL, NULL);
	/* A Unix client, or a Unix listener. */
	roundtrip("unix:/run/client.sock", 0, "unix:/run/listen.sock", 0, AF_UNSPEC, NULL, NULL);
	roundtrip("unix:", 0, "unix:", 0, AF_UNSPEC, NULL, NULL);
	roundtrip("unix:/run/client.sock", 0, "192.0.2.1", 80, AF_UNSPEC, NULL, NULL);
	roundtrip("192.0.2.1", 80, "unix:/run/listen.sock", 0, AF_UNSPEC, NULL, NULL);
}

/* The header for s:sport -> d:dport is exactly want (want_len bytes). */
static void exact(unsigned version, const char *s, unsigned sport, const char *d, unsigned dport,
		  const void *want, size_t want_len)
{
	struct sockaddr_storage src = addr(s, sport), dst = addr(d, dport);
	uint8_t buf[PROXY_HEADER_MAX];
	int n = encode(version, &src, &dst, buf, sizeof(buf));

	if (!CHECK(n == (int)want_len, "v%u %s -> %s: %d bytes, want %zu", version, s, d, n,
		   want_len))
		return;
	CHECK(memcmp(buf, want, want_len) == 0, "v%u %s -> %s: wrong bytes", version, s, d);
}

#define SIG "\r\n\r\n\0\r\nQUIT\n"

static void test_exact(void)
{
	static const char v1_ipv4[] = "PROXY TCP4 192.0.2.1 198.51.100.2 12345 80\r\n";
	static const char v1_ipv6[] = "PROXY TCP6 2001:db8::1 2001:db8::2 54321 443\r\n";
	static const uint8_t v2_ipv4[] = SIG "\x21\x11\x00\x0c"
					     "\xc0\x00\x02\x01"
					     "\xc6\x33\x64\x02"
					     "\x30\x39\x00\x50";
	static const uint8_t v2_ipv6[] = SIG "\x21\x21\x00\x24"
					     "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01"
					     "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x02"
					     "\xd4\x31\x01\xbb";
	static const uint8_t v2_local[] = SIG "\x20\x00\x00\x00";
	static const uint8_t v2_ports[] = SIG "\x21\x11\x00\x0c"
					      "\x0a\x00\x00\x01"
					      "\x0a\x00\x00\x02"
					      "\x00\x00\xff\xff";

	CHECK(sizeof(v2_ipv4) - 1 == 28 && sizeof(v2_ipv6) - 1 == 52 && sizeof(v2_local) - 1 == 16,
	      "expected byte strings");
	exact(1, "192.0.2.1", 12345, "198.51.100.2", 80, v1_ipv4, strlen(v1_ipv4));
	exact(1, "::ffff:192.0.2.1", 12345, "::ffff:198.51.100.2", 80, v1_ipv4, strlen(v1_ipv4));
	exact(1, "2001:db8::1", 54321, "2001:db8::2", 443, v1_ipv6, strlen(v1_ipv6));
	exact(1, "10.0.0.1", 0, "10.0.0.2", 65535, "PROXY TCP4 10.0.0.1 10.0.0.2 0 65535\r\n", 38);
	exact(1, "unix:/a", 0, "unix:/b", 0, "PROXY UNKNOWN\r\n", 15);
	exact(1, "192.0.2.1", 1, "2001:db8::2", 2, "PROXY UNKNOWN\r\n", 15);

	exact(2, "192.0.2.1", 12345, "198.51.100.2", 80, v2_ipv4, 28);
	exact(2, "::ffff:192.0.2.1", 12345, "::ffff:198.51.100.2", 80, v2_ipv4, 28);
	exact(2, "2001:db8::1", 54321, "2001:db8::2", 443, v2_ipv6, 52);
	exact(2, "10.0.0.1", 0, "10.0.0.2", 65535, v2_ports, 28);
	exact(2, "unix:/a", 0, "unix:/b", 0, v2_local, 16);
	exact(2, "192.0.2.1", 1, "2001:db8::2", 2, v2_local, 16);
	exact(2, "2001:db8::1", 1, "unix:/b", 2, v2_local, 16);
}

/* Two full-length IPv6 addresses and 5-digit ports: the longest v1 header. */
static void test_sizes(void)
{
	struct sockaddr_storage src = addr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535),
				dst = addr("1234:5678:9abc:def0:1234:5678:9abc:def0", 65534),
				src4 = addr("192.0.2.1", 12345), dst4 = addr("198.51.100.2", 80),
				unix_ = addr("unix:/x", 0);
	uint8_t buf[PROXY_HEADER_MAX + 16];
	struct pp pp;
	int n;

	n = encode(1, &src, &dst, buf, PROXY_HEADER_MAX);
	CHECK(n > 0 && n <= 107 && n <= PROXY_HEADER_MAX, "longest v1: %d bytes", n);
	CHECK(n == 104, "longest v1: %d bytes, want 104", n);
	CHECK(n > 0 && decode(buf, (size_t)n, &pp) == 0 && pp.sport == 65535 &&
		      pp.dport == 65534 &&
		      strcmp(pp.src, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe") == 0 &&
		      strcmp(pp.dst, "1234:5678:9abc:def0:1234:5678:9abc:def0") == 0,
	      "longest v1 round trip");
	n = encode(2, &src, &dst, buf, PROXY_HEADER_MAX);
	CHECK(n == 52, "longest v2: %d bytes", n);

	/* Too small by one byte, and nothing at all. */
	for (unsigned version = 1; version <= 2; version++) {
		int full = encode(version, &src, &dst, buf, sizeof(buf));

		CHECK(encode(version, &src, &dst, buf, (size_t)full - 1) == -EINVAL,
		      "v%u in %d bytes", version, full - 1);
		CHECK(encode(version, &src, &dst, buf, (size_t)full) == full,
		      "v%u in exactly %d bytes", version, full);
		CHECK(encode(version, &src, &dst, buf, 0) == -EINVAL, "v%u in 0 bytes", version);
		full = encode(version, &src4, &dst4, buf, sizeof(buf));
		CHECK(encode(version, &src4, &dst4, buf, (size_t)full - 1) == -EINVAL,
		      "v%u IPv4 in %d bytes", version, full - 1);
		CHECK(encode(version, &src4, &dst4, buf, (size_t)full) == full,
		      "v%u IPv4 in exactly %d bytes", version, full);
		full = encode(version, &unix_, &unix_, buf, sizeof(buf));
		CHECK(encode(version, &unix_, &unix_, buf, (size_t)full - 1) == -EINVAL,
		      "v%u LOCAL in %d bytes", version, full - 1);
		CHECK(encode(version, &unix_, &unix_, buf, (size_t)full) == full,
		      "v%u LOCAL in exactly %d bytes", version, full);
	}

	CHECK(encode(0, &src4, &dst4, buf, sizeof(buf)) == -EINVAL, "version 0");
	CHECK(encode(3, &src4, &dst4, buf, sizeof(buf)) == -EINVAL, "version 3");
	CHECK(encode(3, &unix_, &unix_, buf, sizeof(buf)) == -EINVAL, "version 3, Unix");
}

/* A connected TCP pair over lo: the accepted end, and the port of the connecting one. */
static bool tcp_pair(int family, const char *ip, int *ret_accepted, unsigned *ret_cport,
		     unsigned *ret_lport, int v6only)
{
	struct sockaddr_storage ss = addr(ip, 0), peer = {};
	socklen_t sl = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	int l = -1, c = -1, a = -1;
	const char *cip = ip;
	int cfamily = family;

	l = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0)
		goto skip;
	if (family == AF_INET6 && v6only >= 0 &&
	    setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof(v6only)) < 0)
		goto skip;
	if (bind(l, (struct sockaddr *)&ss, sl) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&ss, &sl) < 0)
		goto skip;
	*ret_lport = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port :
					       ((struct sockaddr_in6 *)&ss)->sin6_port);
	if (v6only == 0) {
		/* A dual-stack listener on [::], reached over IPv4. */
		cfamily = AF_INET;
		cip = "127.0.0.1";
	}
	ss = addr(cip, *ret_lport);
	c = socket(cfamily, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sl = cfamily == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	if (c < 0 || connect(c, (struct sockaddr *)&ss, sl) < 0)
		goto skip;
	a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (a < 0)
		goto skip;
	sl = sizeof(peer);
	if (getsockname(c, (struct sockaddr *)&peer, &sl) < 0)
		goto skip;
	*ret_cport = ntohs(cfamily == AF_INET ? ((struct sockaddr_in *)&peer)->sin_port :
						((struct sockaddr_in6 *)&peer)->sin6_port);
	close(l);
	close(c);
	*ret_accepted = a;
	return true;
skip:
	fprintf(stderr, "test-proxy-protocol: no TCP over %s here (%m), skipped\n", ip);
	if (l >= 0)
		close(l);
	if (c >= 0)
		close(c);
	if (a >= 0)
		close(a);
	return false;
}

static void for_socket(const char *what, int fd, int family, const char *ip, unsigned cport,
		       unsigned lport)
{
	for (unsigned version = 1; version <= 2; version++) {
		uint8_t buf[PROXY_HEADER_MAX];
		struct pp pp;
		int n = proxy_header_for_socket(version, fd, buf, sizeof(buf));

		if (!CHECK(n > 0, "%s v%u: %d", what, version, n))
			continue;
		if (!CHECK(decode(buf, (size_t)n, &pp) == 0 && pp.len == (size_t)n,
			   "%s v%u: does not decode", what, version))
			continue;
		CHECK(pp.family == family && !pp.local, "%s v%u: family %d local %d", what, version,
		      pp.family, pp.local);
		CHECK(strcmp(pp.src, ip) == 0 && strcmp(pp.dst, ip) == 0, "%s v%u: %s -> %s", what,
		      version, pp.src, pp.dst);
		CHECK(pp.sport == cport && pp.dport == lport, "%s v%u: ports %u -> %u, want %u -> %u",
		      what, version, pp.sport, pp.dport, cport, lport);
	}
}

static void test_sockets(void)
{
	unsigned cport, lport;
	int fd, pair[2], p[2];
	uint8_t buf[PROXY_HEADER_MAX];

	if (tcp_pair(AF_INET, "127.0.0.1", &fd, &cport, &lport, -1)) {
		char want[PROXY_HEADER_MAX];

		for_socket("TCP over 127.0.0.1", fd, AF_INET, "127.0.0.1", cport, lport);
		snprintf(want, sizeof(want), "PROXY TCP4 127.0.0.1 127.0.0.1 %u %u\r\n", cport,
			 lport);
		CHECK(proxy_header_for_socket(1, fd, buf, sizeof(buf)) == (int)strlen(want) &&
			      memcmp(buf, want, strlen(want)) == 0,
		      "TCP over 127.0.0.1: not '%s'", want);
		CHECK(proxy_header_for_socket(3, fd, buf, sizeof(buf)) == -EINVAL,
		      "TCP over 127.0.0.1: version 3");
		CHECK(proxy_header_for_socket(1, fd, buf, 10) == -EINVAL,
		      "TCP over 127.0.0.1: 10 bytes");
		close(fd);
	}
	if (tcp_pair(AF_INET6, "::1", &fd, &cport, &lport, 1)) {
		for_socket("TCP over ::1", fd, AF_INET6, "::1", cport, lport);
		close(fd);
	}
	/* What sockredir listens on by default: [::] taking IPv4 clients as mapped addresses. */
	if (tcp_pair(AF_INET6, "::", &fd, &cport, &lport, 0)) {
		for_socket("TCP over [::] from 127.0.0.1", fd, AF_INET, "127.0.0.1", cport, lport);
		close(fd);
	}

	if (CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0, "socketpair: %m")) {
		CHECK(proxy_header_for_socket(1, pair[0], buf, sizeof(buf)) == 15 &&
			      memcmp(buf, "PROXY UNKNOWN\r\n", 15) == 0,
		      "socketpair: v1 not UNKNOWN");
		CHECK(proxy_header_for_socket(2, pair[0], buf, sizeof(buf)) == 16 &&
			      memcmp(buf, v2_signature, 12) == 0 &&
			      memcmp(buf + 12, "\x20\x00\x00\x00", 4) == 0,
		      "socketpair: v2 not LOCAL");
		close(pair[0]);
		close(pair[1]);
	}

	/* Not a connected socket. */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		CHECK(proxy_header_for_socket(1, fd, buf, sizeof(buf)) == -ENOTCONN,
		      "unconnected socket");
		close(fd);
	}
	if (pipe(p) == 0) {
		CHECK(proxy_header_for_socket(2, p[0], buf, sizeof(buf)) == -ENOTSOCK, "a pipe");
		close(p[0]);
		close(p[1]);
	}
	CHECK(proxy_header_for_socket(1, -1, buf, sizeof(buf)) == -EBADF, "fd -1");
}

/* The decoder refuses what it should, so that the round trips above mean something. */
static void test_decoder(void)
{
	static const char *bad_v1[] = {
		"PROXY TCP4 192.0.2.1 198.51.100.2 12345 80\n",
		"PROXY TCP4 192.0.2.1 198.51.100.2 12345\r\n",
		"PROXY TCP4 192.0.2.1  198.51.100.2 12345 80\r\n",
		"PROXY TCP4 2001:db8::1 198.51.100.2 12345 80\r\n",
		"PROXY TCP6 192.0.2.1 198.51.100.2 12345 80\r\n",
		"PROXY TCP4 192.0.2.1 198.51.100.2 012345 80\r\n",
		"PROXY TCP4 192.0.2.1 198.51.100.2 65536 80\r\n",
		"PROXY TCP6 2001:DB8::1 2001:db8::2 1 2\r\n",
		"PROXY UDP4 192.0.2.1 198.51.100.2 12345 80\r\n",
	};
	struct pp pp;

	for (size_t i = 0; i < sizeof(bad_v1) / sizeof(bad_v1[0]); i++)
		CHECK(decode((const uint8_t *)bad_v1[i], strlen(bad_v1[i]), &pp) < 0,
		      "decoder took '%s'", bad_v1[i]);
	CHECK(decode((const uint8_t *)SIG "\x22\x11\x00\x0c", 16, &pp) < 0, "decoder: command 2");
	CHECK(decode((const uint8_t *)SIG "\x21\x11\x00\x0c", 16, &pp) < 0, "decoder: short block");
	CHECK(decode((const uint8_t *)SIG "\x21\x12\x00\x00", 16, &pp) < 0, "decoder: UDP");
}

int main(void)
{
	test_decoder();
	test_roundtrip();
	test_exact();
	test_sizes();
	test_sockets();
	printf("test-proxy-protocol: %d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
