/* SPDX-License-Identifier: GPL-2.0 */
/* Socket addresses given on the command line: BACKEND and --listen. */
#ifndef SR_ADDRESS_H
#define SR_ADDRESS_H

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "util.h"

struct sr_address {
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
		struct sockaddr_un un;
		struct sockaddr_storage storage;
	};
	socklen_t len;
};

/* Longest string address_to_string() writes, with its NUL. */
#define SR_ADDRESS_STRLEN (sizeof(((struct sockaddr_un *)0)->sun_path) + 8)

enum address_kind {
	ADDRESS_BACKEND, /* /path, unix:/path, @abstract, host:port, [v6]:port */
	ADDRESS_LISTEN,	 /* all of the above, and a bare port meaning [::]:port */
};

/*
 * Parse s into *ret. Host names are resolved with getaddrinfo(). On failure returns -EINVAL (or
 * -EADDRNOTAVAIL for a name that does not resolve) and, if reason is not NULL, points *reason at
 * a static string that says what is wrong.
 */
int address_parse(const char *s, enum address_kind kind, struct sr_address *ret,
		  const char **reason);

/* "/path", "@name", "1.2.3.4:80" or "[::1]:80". Returns buf. */
const char *address_to_string(const struct sr_address *a, char *buf, size_t size);

static inline bool address_is_unix(const struct sr_address *a)
{
	return a->sa.sa_family == AF_UNIX;
}

/* A filesystem AF_UNIX path (not abstract, not unnamed). */
static inline bool address_is_unix_path(const struct sr_address *a)
{
	return address_is_unix(a) && a->len > offsetof(struct sockaddr_un, sun_path) &&
	       a->un.sun_path[0] != 0;
}

#endif /* SR_ADDRESS_H */
