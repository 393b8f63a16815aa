// SPDX-License-Identifier: GPL-2.0
/*
 * A resolver for the fuzz targets that never touches the network. The targets link with
 * -Wl,--wrap=getaddrinfo, so that the getaddrinfo() calls in user/address.c land here:
 *
 *  - a numeric lookup (AI_NUMERICHOST) goes to the real getaddrinfo(), which does no I/O for
 *    it (an IPv6 scope given by interface name costs one ioctl);
 *  - a name lookup is answered with a made-up address, 192.0.2.N or 2001:db8::N (the
 *    documentation ranges) chosen by a hash of the name, built by the real getaddrinfo() from
 *    numeric text, so that freeaddrinfo() frees it as usual.
 *
 * address.c decides by itself what is numeric: a name lookup for a string that glibc would take
 * as a number anyway (inet_aton's "0x7f.1", "1e0"...) means that decision let a non-canonical
 * address through, and aborts.
 */
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fake-resolver.h"

int __real_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		       struct addrinfo **res);
int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		       struct addrinfo **res);

unsigned long fake_resolver_names, fake_resolver_numeric;

int __wrap_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		       struct addrinfo **res)
{
	struct addrinfo h = hints ? *hints : (struct addrinfo){ .ai_family = AF_UNSPEC };
	char text[64];
	uint32_t hash = 2166136261u;
	int r;

	if (!node)
		abort(); /* address.c always asks about a host */
	if (h.ai_flags & AI_NUMERICHOST) {
		fake_resolver_numeric++;
		return __real_getaddrinfo(node, service, hints, res);
	}

	/* A name lookup: first, would glibc have taken it as a number without any I/O? */
	h.ai_flags = (h.ai_flags | AI_NUMERICHOST) & ~AI_ADDRCONFIG;
	r = __real_getaddrinfo(node, service, &h, res);
	if (r == 0) {
		fprintf(stderr, "fake-resolver: name lookup for numeric '%s'\n", node);
		abort();
	}

	fake_resolver_names++;
	for (const char *p = node; *p; p++)
		hash = (hash ^ (uint8_t)*p) * 16777619u;
	if (h.ai_family == AF_INET6)
		snprintf(text, sizeof(text), "2001:db8::%x", hash & 0xffff);
	else if (strcasecmp(node, "localhost") == 0 || strcasecmp(node, "localhost.") == 0)
		snprintf(text, sizeof(text), "127.0.0.1");
	else
		snprintf(text, sizeof(text), "192.0.2.%u", hash % 254 + 1);
	return __real_getaddrinfo(text, service, &h, res);
}
