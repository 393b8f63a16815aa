// SPDX-License-Identifier: GPL-2.0
/*
 * Parsing of BACKEND and --listen addresses. The parser is strict: a string is either one of the
 * documented forms or rejected with a reason, never guessed at.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "address.h"

#define UNIX_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

static int fail(const char **reason, const char *why, int error)
{
	if (reason)
		*reason = why;
	return error;
}

/* A decimal port in 1..65535: digits only, no sign, no leading zeros beyond "0". */
static int parse_port(const char *s, uint16_t *ret)
{
	unsigned long v = 0;

	if (!*s || strlen(s) > 5)
		return -EINVAL;
	if (s[0] == '0')
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		v = v * 10 + (unsigned long)(*p - '0');
	}
	if (v < 1 || v > 65535)
		return -EINVAL;
	*ret = (uint16_t)v;
	return 0;
}

static int parse_unix(const char *path, bool abstract, struct sr_address *ret, const char **reason)
{
	struct sr_address a = {};
	size_t n = strlen(path);

	if (n == 0)
		return fail(reason, abstract ? "empty abstract socket name" : "empty path",
			    -EINVAL);
	if (memchr(path, 0, n) || strpbrk(path, "\n\r"))
		return fail(reason, "control characters in the name", -EINVAL);
	if (!abstract && path[0] != '/')
		return fail(reason, "a socket path must be absolute", -EINVAL);
	/* A path needs its NUL inside sun_path; an abstract name uses the leading 0 byte instead. */
	if (n + 1 > UNIX_PATH_MAX)
		return fail(reason, "socket name too long (at most 107 bytes)", -EINVAL);

	a.un.sun_family = AF_UNIX;
	if (abstract) {
		memcpy(a.un.sun_path + 1, path, n);
		a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
	} else {
		memcpy(a.un.sun_path, path, n);
		a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
	}
	*ret = a;
	return 0;
}

static bool valid_hostname(const char *h)
{
	size_t n = strlen(h), label = 0;

	if (n == 0 || n > 253)
		return false;
	for (const char *p = h; *p; p++) {
		if (*p == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			return false;
		if (++label > 63)
			return false;
	}
	return label > 0 || h[n - 1] == '.';
}

static int resolve(const char *host, uint16_t port, int family, int flags, struct sr_address *ret,
		   const char **reason)
{
	struct addrinfo hints = {
		.ai_family = family,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = flags,
	};
	struct addrinfo *res = NULL;
	struct sr_address a = {};
	int r;

	r = getaddrinfo(host, NULL, &hints, &res);
	if (r != 0 || !res)
		return fail(reason,
			    flags & AI_NUMERICHOST ? "invalid IP address" :
						     "host name does not resolve",
			    flags & AI_NUMERICHOST ? -EINVAL : -EADDRNOTAVAIL);
	if (res->ai_addrlen > sizeof(a.storage)) {
		freeaddrinfo(res);
		return fail(reason, "address too long", -EINVAL);
	}
	memcpy(&a.storage, res->ai_addr, res->ai_addrlen);
	a.len = res->ai_addrlen;
	freeaddrinfo(res);

	if (a.sa.sa_family == AF_INET)
		a.in.sin_port = htons(port);
	else if (a.sa.sa_family == AF_INET6)
		a.in6.sin6_port = htons(port);
	else
		return fail(reason, "unsupported address family", -EINVAL);
	*ret = a;
	return 0;
}

static int parse_inet(const char *s, enum address_kind kind, struct sr_address *ret,
		      const char **reason)
{
	char host[256];
	const char *colon, *port_str;
	struct in_addr in;
	uint16_t port;
	size_t hlen;

	/* A bare port: listen on every address, IPv6 and IPv4 alike. */
	if (kind == ADDRESS_LISTEN && strspn(s, "0123456789") == strlen(s)) {
		struct sr_address a = {};

		if (parse_port(s, &port) < 0)
			return fail(reason, "port must be a number from 1 to 65535", -EINVAL);
		a.in6.sin6_family = AF_INET6;
		a.in6.sin6_addr = in6addr_any;
		a.in6.sin6_port = htons(port);
		a.len = sizeof(a.in6);
		*ret = a;
		return 0;
	}

	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end)
			return fail(reason, "missing ']' after IPv6 address", -EINVAL);
		if (end[1] != ':')
			return fail(reason, "missing ':PORT' after ']'", -EINVAL);
		hlen = (size_t)(end - s - 1);
		if (hlen == 0 || hlen >= sizeof(host))
			return fail(reason, "invalid IPv6 address", -EINVAL);
		memcpy(host, s + 1, hlen);
		host[hlen] = 0;
		port_str = end + 2;
		if (parse_port(port_str, &port) < 0)
			return fail(reason, "port must be a number from 1 to 65535", -EINVAL);
		return resolve(host, port, AF_INET6, AI_NUMERICHOST, ret, reason);
	}

	colon = strrchr(s, ':');
	if (!colon)
		return fail(reason,
			    "not an address: expected /path, unix:/path, @abstract, host:port or "
			    "[v6addr]:port",
			    -EINVAL);
	if (strchr(s, ':') != colon)
		return fail(reason, "IPv6 addresses must be written as [addr]:port", -EINVAL);
	hlen = (size_t)(colon - s);
	if (hlen == 0)
		return fail(reason, "missing host before ':'", -EINVAL);
	if (hlen >= sizeof(host))
		return fail(reason, "host name too long", -EINVAL);
	memcpy(host, s, hlen);
	host[hlen] = 0;
	port_str = colon + 1;
	if (parse_port(port_str, &port) < 0)
		return fail(reason, "port must be a number from 1 to 65535", -EINVAL);

	/* Dotted quads are taken literally; anything else with digits and dots only is a typo. */
	if (strspn(host, "0123456789.") == hlen) {
		if (inet_pton(AF_INET, host, &in) != 1)
			return fail(reason, "invalid IPv4 address", -EINVAL);
		return resolve(host, port, AF_INET, AI_NUMERICHOST, ret, reason);
	}
	if (!valid_hostname(host))
		return fail(reason, "invalid host name", -EINVAL);
	/*
	 * Nor are inet_aton()'s other forms ("0x7f.1", "0x7f000001"): getaddrinfo() would take
	 * them as numbers, not names.
	 */
	if (inet_aton(host, &in) != 0)
		return fail(reason, "invalid IPv4 address", -EINVAL);
	return resolve(host, port, AF_UNSPEC, AI_ADDRCONFIG, ret, reason);
}

int address_parse(const char *s, enum address_kind kind, struct sr_address *ret,
		  const char **reason)
{
	struct sr_address a;
	int r;

	if (!s || !*s)
		return fail(reason, "empty address", -EINVAL);

	if (strncmp(s, "unix:", 5) == 0) {
		const char *p = s + 5;

		r = p[0] == '@' ? parse_unix(p + 1, true, &a, reason) :
				  parse_unix(p, false, &a, reason);
	} else if (s[0] == '/')
		r = parse_unix(s, false, &a, reason);
	else if (s[0] == '@')
		r = parse_unix(s + 1, true, &a, reason);
	else
		r = parse_inet(s, kind, &a, reason);
	if (r < 0)
		return r;

	*ret = a;
	return 0;
}

const char *address_to_string(const struct sr_address *a, char *buf, size_t size)
{
	char host[INET6_ADDRSTRLEN];

	switch (a->sa.sa_family) {
	case AF_UNIX: {
		size_t off = offsetof(struct sockaddr_un, sun_path);
		size_t n = a->len > off ? a->len - off : 0;

		if (n == 0)
			snprintf(buf, size, "(unnamed)");
		else if (a->un.sun_path[0] == 0)
			snprintf(buf, size, "@%.*s", (int)(n - 1), a->un.sun_path + 1);
		else
			snprintf(buf, size, "%.*s", (int)strnlen(a->un.sun_path, n),
				 a->un.sun_path);
		break;
	}
	case AF_INET:
		inet_ntop(AF_INET, &a->in.sin_addr, host, sizeof(host));
		snprintf(buf, size, "%s:%u", host, ntohs(a->in.sin_port));
		break;
	case AF_INET6:
		inet_ntop(AF_INET6, &a->in6.sin6_addr, host, sizeof(host));
		/* The scope ("[fe80::1%eth0]:80") as its number, which parses back the same. */
		if (a->in6.sin6_scope_id)
			snprintf(buf, size, "[%s%%%u]:%u", host, a->in6.sin6_scope_id,
				 ntohs(a->in6.sin6_port));
		else
			snprintf(buf, size, "[%s]:%u", host, ntohs(a->in6.sin6_port));
		break;
	default:
		snprintf(buf, size, "(family %d)", a->sa.sa_family);
	}
	return buf;
}
