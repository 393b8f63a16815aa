// SPDX-License-Identifier: GPL-2.0
/* PROXY protocol v1 and v2 encoding. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "proxy-protocol.h"
#include "util.h"

/* The v2 signature, "\r\n\r\n\0\r\nQUIT\n". */
static const uint8_t v2_signature[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
					  0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

#define V2_VERSION_PROXY 0x21 /* version 2, command PROXY */
#define V2_VERSION_LOCAL 0x20 /* version 2, command LOCAL */
#define V2_TCP4		 0x11
#define V2_TCP6		 0x21
#define V2_UNSPEC	 0x00

/* An address reduced to what the header carries. */
struct endpoint {
	int family; /* AF_INET, AF_INET6, or AF_UNSPEC for anything else */
	uint8_t addr[16];
	uint16_t port;
};

static void endpoint_from(const struct sockaddr *sa, struct endpoint *ret)
{
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	*ret = (struct endpoint){ .family = AF_UNSPEC };
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		ret->family = AF_INET;
		memcpy(ret->addr, &in->sin_addr, 4);
		ret->port = ntohs(in->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		ret->port = ntohs(in6->sin6_port);
		if (memcmp(&in6->sin6_addr, v4mapped, sizeof(v4mapped)) == 0) {
			ret->family = AF_INET;
			memcpy(ret->addr, (const uint8_t *)&in6->sin6_addr + 12, 4);
		} else {
			ret->family = AF_INET6;
			memcpy(ret->addr, &in6->sin6_addr, 16);
		}
	}
}

static int encode_v1(const struct endpoint *s, const struct endpoint *d, uint8_t *buf, size_t size)
{
	char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN], line[PROXY_HEADER_MAX];
	int n;

	if (s->family == AF_UNSPEC || s->family != d->family)
		n = snprintf(line, sizeof(line), "PROXY UNKNOWN\r\n");
	else {
		inet_ntop(s->family, s->addr, sa, sizeof(sa));
		inet_ntop(d->family, d->addr, da, sizeof(da));
		n = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
			     s->family == AF_INET ? "TCP4" : "TCP6", sa, da, s->port, d->port);
	}
	/* The header has no NUL: it fits in exactly n bytes, as v2 does in its length. */
	if (n < 0 || (size_t)n >= sizeof(line) || (size_t)n > size)
		return -EINVAL;
	memcpy(buf, line, (size_t)n);
	return n;
}

static int encode_v2(const struct endpoint *s, const struct endpoint *d, uint8_t *buf, size_t size)
{
	size_t alen = 0, off;
	uint8_t cmd = V2_VERSION_PROXY, fam;

	if (s->family == AF_INET && d->family == AF_INET) {
		fam = V2_TCP4;
		alen = 4;
	} else if (s->family == AF_INET6 && d->family == AF_INET6) {
		fam = V2_TCP6;
		alen = 16;
	} else {
		/* Not a TCP client (a Unix listener): LOCAL, and no address block. */
		cmd = V2_VERSION_LOCAL;
		fam = V2_UNSPEC;
	}
	off = 16 + (alen ? 2 * alen + 4 : 0);
	if (size < off)
		return -EINVAL;

	memcpy(buf, v2_signature, sizeof(v2_signature));
	buf[12] = cmd;
	buf[13] = fam;
	buf[14] = (uint8_t)((off - 16) >> 8);
	buf[15] = (uint8_t)(off - 16);
	if (alen) {
		memcpy(buf + 16, s->addr, alen);
		memcpy(buf + 16 + alen, d->addr, alen);
		buf[16 + 2 * alen] = (uint8_t)(s->port >> 8);
		buf[17 + 2 * alen] = (uint8_t)s->port;
		buf[18 + 2 * alen] = (uint8_t)(d->port >> 8);
		buf[19 + 2 * alen] = (uint8_t)d->port;
	}
	return (int)off;
}

int proxy_header_encode(unsigned version, const struct sockaddr *src, const struct sockaddr *dst,
			uint8_t *buf, size_t size)
{
	struct endpoint s, d;

	endpoint_from(src, &s);
	endpoint_from(dst, &d);
	if (version == 1)
		return encode_v1(&s, &d, buf, size);
	if (version == 2)
		return encode_v2(&s, &d, buf, size);
	return -EINVAL;
}

int proxy_header_for_socket(unsigned version, int fd, uint8_t *buf, size_t size)
{
	struct sockaddr_storage src = {}, dst = {};
	socklen_t slen = sizeof(src), dlen = sizeof(dst);

	if (getpeername(fd, (struct sockaddr *)&src, &slen) < 0 ||
	    getsockname(fd, (struct sockaddr *)&dst, &dlen) < 0)
		return negative_errno();
	return proxy_header_encode(version, (struct sockaddr *)&src, (struct sockaddr *)&dst, buf,
				   size);
}
