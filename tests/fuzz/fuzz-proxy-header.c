// SPDX-License-Identifier: GPL-2.0
/*
 * proxy_header_encode() on any (version, source, destination, buffer size), and a round trip
 * through a decoder written here from HAProxy's PROXY protocol spec, independent of the
 * encoder. The input is read as:
 *
 *   [0]      version: below 0xf0, v1 or v2 by the low bit; else the low nibble as is (0..15)
 *   [1] [2]  source and destination kind: 0 IPv4, 1 IPv6, 2 IPv4-mapped IPv6, 3 Unix,
 *            4 AF_UNSPEC, 5 some other family
 *   [3..18]  source address (IPv4 uses the first 4 bytes, mapped IPv6 too)
 *   [19..34] destination address
 *   [35..38] source port, destination port (big-endian)
 *   [39..40] output buffer size: below 0xff00, that modulo PROXY_HEADER_MAX + 8; else 4096
 *   [41..48] IPv6 flow info and scope id, which the header does not carry
 * (a Unix or other address takes its path or data from the address bytes).
 * Missing bytes are zero. Each sockaddr is on the heap in exactly its own type's size, and the
 * output buffer in exactly the size asked for, so that ASan catches a read or write past either.
 *
 * Expected: IPv4 and IPv4-mapped IPv6 as TCP4, IPv6 as TCP6, when both ends agree; anything
 * else "PROXY UNKNOWN\r\n" in v1 and LOCAL with AF_UNSPEC and no addresses in v2. A buffer
 * that is too small, or a version other than 1 and 2, gives -EINVAL.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "../../user/proxy-protocol.h"

#include "fuzz-check.h"

#define INPUT_MIN 49
#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* An endpoint as the header should carry it. */
struct ep {
	int family; /* AF_INET, AF_INET6, AF_UNSPEC */
	uint8_t addr[16];
	unsigned port;
};

/* What a decoded header says. */
struct decoded {
	bool local; /* v1 UNKNOWN or v2 LOCAL */
	struct ep src, dst;
	size_t len;
};

static unsigned be16(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* Build the sockaddr for kind, on the heap, and the endpoint the header should show for it. */
static struct sockaddr *make_sockaddr(uint8_t kind, const uint8_t *addr, unsigned port,
				      const uint8_t *in, struct ep *want)
{
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	struct sockaddr *sa = NULL;

	*want = (struct ep){ .family = AF_UNSPEC };
	switch (kind % 6) {
	case 0: {
		struct sockaddr_in *s = calloc(1, sizeof(*s));

		if (!s)
			abort();
		s->sin_family = AF_INET;
		s->sin_port = htons((uint16_t)port);
		memcpy(&s->sin_addr, addr, 4);
		*want = (struct ep){ .family = AF_INET, .port = port };
		memcpy(want->addr, addr, 4);
		sa = (struct sockaddr *)s;
		break;
	}
	case 1:
	case 2: {
		struct sockaddr_in6 *s = calloc(1, sizeof(*s));

		if (!s)
			abort();
		s->sin6_family = AF_INET6;
		s->sin6_port = htons((uint16_t)port);
		memcpy(&s->sin6_flowinfo, in + 41, 4);
		memcpy(&s->sin6_scope_id, in + 45, 4);
		if (kind % 6 == 2) {
			memcpy(&s->sin6_addr, v4mapped, 12);
			memcpy((uint8_t *)&s->sin6_addr + 12, addr, 4);
		} else
			memcpy(&s->sin6_addr, addr, 16);
		/* Mapped by kind 2, or by chance of kind 1. */
		if (memcmp(&s->sin6_addr, v4mapped, 12) == 0) {
			*want = (struct ep){ .family = AF_INET, .port = port };
			memcpy(want->addr, (uint8_t *)&s->sin6_addr + 12, 4);
		} else {
			*want = (struct ep){ .family = AF_INET6, .port = port };
			memcpy(want->addr, &s->sin6_addr, 16);
		}
		sa = (struct sockaddr *)s;
		break;
	}
	case 3: {
		struct sockaddr_un *s = calloc(1, sizeof(*s));

		if (!s)
			abort();
		s->sun_family = AF_UNIX;
		memcpy(s->sun_path, addr, 16);
		sa = (struct sockaddr *)s;
		break;
	}
	case 4:
	case 5:
		sa = calloc(1, sizeof(*sa));
		if (!sa)
			abort();
		/* Some other family: 11 (AF_NETROM... AF_NETLINK is 16) and up, never 2 or 10. */
		sa->sa_family = kind % 6 == 4 ? AF_UNSPEC : (sa_family_t)(kind / 6 + 11);
		memcpy(sa->sa_data, addr, sizeof(sa->sa_data));
		break;
	}
	return sa;
}

/* A decimal port, 0 to 65535, no sign, no leading zero. */
static bool decode_port(const char *s, size_t n, unsigned *ret)
{
	unsigned v = 0;

	if (n == 0 || n > 5 || (s[0] == '0' && n > 1))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > 65535)
		return false;
	*ret = v;
	return true;
}

/* The next field of a v1 line: up to a space (or the end, for the last). */
static bool next_field(const char **p, const char *end, bool last, char *out, size_t outsize,
		       size_t *outlen)
{
	const char *sp = last ? end : memchr(*p, ' ', (size_t)(end - *p));
	size_t n;

	if (!sp)
		return false;
	n = (size_t)(sp - *p);
	if (n == 0 || n >= outsize)
		return false;
	memcpy(out, *p, n);
	out[n] = 0;
	*outlen = n;
	*p = last ? end : sp + 1;
	return true;
}

/* "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n", or "PROXY UNKNOWN\r\n"; at most 107 bytes. */
static bool decode_v1(const uint8_t *buf, size_t len, struct decoded *ret)
{
	const char *s = (const char *)buf, *end, *p;
	char f[5][64];
	size_t n[5];
	int family;

	*ret = (struct decoded){};
	for (end = s; end + 1 < s + len && !(end[0] == '\r' && end[1] == '\n'); end++)
		if (*end < ' ' || *end > '~')
			return false;
	if (end + 1 >= s + len)
		return false;
	ret->len = (size_t)(end - s) + 2;
	if (ret->len > 107 || ret->len != len)
		return false;
	if (len < 6 || memcmp(s, "PROXY ", 6) != 0)
		return false;
	p = s + 6;
	if ((size_t)(end - p) == 7 && memcmp(p, "UNKNOWN", 7) == 0) {
		ret->local = true;
		return true;
	}
	for (int i = 0; i < 5; i++)
		if (!next_field(&p, end, i == 4, f[i], sizeof(f[i]), &n[i]))
			return false;
	if (strcmp(f[0], "TCP4") == 0)
		family = AF_INET;
	else if (strcmp(f[0], "TCP6") == 0)
		family = AF_INET6;
	else
		return false;
	ret->src.family = ret->dst.family = family;
	if (inet_pton(family, f[1], ret->src.addr) != 1 ||
	    inet_pton(family, f[2], ret->dst.addr) != 1)
		return false;
	return decode_port(f[3], n[3], &ret->src.port) && decode_port(f[4], n[4], &ret->dst.port);
}

/* The 12-byte signature, version 2 and a command, a family, a length, the addresses. */
static bool decode_v2(const uint8_t *buf, size_t len, struct decoded *ret)
{
	static const uint8_t sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
					 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };
	size_t alen;

	*ret = (struct decoded){};
	if (len < 16 || memcmp(buf, sig, 12) != 0 || buf[12] >> 4 != 2)
		return false;
	ret->len = 16 + be16(buf + 14);
	if (ret->len != len)
		return false;
	switch (buf[12] & 0xf) {
	case 0: /* LOCAL: what we send has AF_UNSPEC and no address block */
		ret->local = true;
		return buf[13] == 0x00 && len == 16;
	case 1:
		break;
	default:
		return false;
	}
	switch (buf[13]) {
	case 0x11: /* TCP over IPv4 */
		ret->src.family = ret->dst.family = AF_INET;
		alen = 4;
		break;
	case 0x21: /* TCP over IPv6 */
		ret->src.family = ret->dst.family = AF_INET6;
		alen = 16;
		break;
	default:
		return false;
	}
	/* Exactly the address block: we send no TLVs. */
	if (len != 16 + 2 * alen + 4)
		return false;
	memcpy(ret->src.addr, buf + 16, alen);
	memcpy(ret->dst.addr, buf + 16 + alen, alen);
	ret->src.port = be16(buf + 16 + 2 * alen);
	ret->dst.port = be16(buf + 18 + 2 * alen);
	return true;
}

static bool same_ep(const struct ep *a, const struct ep *b)
{
	size_t n = a->family == AF_INET ? 4 : 16;

	return a->family == b->family && a->port == b->port && memcmp(a->addr, b->addr, n) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t in[INPUT_MIN] = {}, full[PROXY_HEADER_MAX + 64], *small;
	struct sockaddr *src, *dst;
	struct ep ws, wd;
	struct decoded d;
	unsigned version, sel;
	size_t bufsize;
	bool tcp, ok;
	int r, r2;

	memcpy(in, data, MIN(size, sizeof(in)));
	version = in[0] < 0xf0 ? 1 + (in[0] & 1) : in[0] & 0x0f;
	src = make_sockaddr(in[1], in + 3, be16(in + 35), in, &ws);
	dst = make_sockaddr(in[2], in + 19, be16(in + 37), in, &wd);
	sel = be16(in + 39);
	bufsize = sel < 0xff00 ? sel % (PROXY_HEADER_MAX + 8) : 4096;
	tcp = ws.family != AF_UNSPEC && ws.family == wd.family;

	/* With room to spare: bytes past the returned length must be left alone. */
	memset(full, 0xa5, sizeof(full));
	r = proxy_header_encode(version, src, dst, full, sizeof(full));
	if (version != 1 && version != 2) {
		CHECK(r == -EINVAL, "version %u: %d", version, r);
	} else {
		CHECK(r > 0 && r <= PROXY_HEADER_MAX, "v%u: %d", version, r);
		for (size_t i = (size_t)r; i < sizeof(full); i++)
			CHECK(full[i] == 0xa5, "v%u: byte %zu past the %d returned written", version,
			      i, r);
		ok = version == 1 ? decode_v1(full, (size_t)r, &d) : decode_v2(full, (size_t)r, &d);
		CHECK(ok, "v%u: %d bytes that don't decode", version, r);
		CHECK(d.local == !tcp, "v%u: %s, want %s", version, d.local ? "local" : "proxy",
		      tcp ? "proxy" : "local");
		if (tcp) {
			CHECK(same_ep(&d.src, &ws), "v%u: source differs", version);
			CHECK(same_ep(&d.dst, &wd), "v%u: destination differs", version);
		}
	}

	/* The buffer size from the input, on the heap in exactly that size. */
	small = malloc(bufsize ? bufsize : 1);
	if (!small)
		abort();
	r2 = proxy_header_encode(version, src, dst, small, bufsize);
	if (r < 0)
		CHECK(r2 == -EINVAL, "version %u, %zu bytes: %d", version, bufsize, r2);
	else if ((size_t)r <= bufsize)
		CHECK(r2 == r && memcmp(small, full, (size_t)r) == 0,
		      "v%u: %zu bytes: %d, with room %d", version, bufsize, r2, r);
	else
		CHECK(r2 == -EINVAL, "v%u: %d bytes into %zu: %d", version, r, bufsize, r2);

	free(small);
	free(src);
	free(dst);
	return 0;
}
