// SPDX-License-Identifier: GPL-2.0
/*
 * address_parse() on any string, as a BACKEND and as a --listen address, and the round trip:
 * whatever parses prints (address_to_string) as a string that parses to the same address.
 * Host names never reach DNS: see fake-resolver.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../user/address.h"
#include "fake-resolver.h"

#define FUZZ_ADDRESS_MAX 1024

#include "fuzz-check.h"

static bool same_address(const struct sr_address *a, const struct sr_address *b)
{
	return a->len == b->len && a->len <= sizeof(a->storage) && memcmp(&a->storage, &b->storage, a->len) == 0;
}

/* The checks on one successful parse; returns the address for comparison across kinds. */
static void check_parsed(const char *s, enum address_kind kind, const struct sr_address *a)
{
	const size_t off = offsetof(struct sockaddr_un, sun_path);
	struct sr_address again;
	const char *reason = NULL;
	char *buf;
	size_t n;
	int r;

	switch (a->sa.sa_family) {
	case AF_UNIX:
		CHECK(a->len > off + 1 && a->len <= sizeof(struct sockaddr_un), "'%s': len %u", s,
		      (unsigned)a->len);
		if (a->un.sun_path[0])
			/* A path: NUL-terminated inside len, and no NUL before. */
			CHECK(strnlen(a->un.sun_path, a->len - off) == a->len - off - 1, "'%s'", s);
		else
			/* Abstract: the name has no NUL (it came from a C string). */
			CHECK(!memchr(a->un.sun_path + 1, 0, a->len - off - 1), "'%s'", s);
		CHECK(address_is_unix(a), "'%s'", s);
		CHECK(address_is_unix_path(a) == (a->un.sun_path[0] != 0), "'%s'", s);
		CHECK(s[0] == '/' || s[0] == '@' || strncmp(s, "unix:", 5) == 0, "'%s'", s);
		break;
	case AF_INET:
		CHECK(a->len == sizeof(struct sockaddr_in), "'%s': len %u", s, (unsigned)a->len);
		CHECK(a->in.sin_port != 0, "'%s': port 0", s);
		break;
	case AF_INET6:
		CHECK(a->len == sizeof(struct sockaddr_in6), "'%s': len %u", s, (unsigned)a->len);
		CHECK(a->in6.sin6_port != 0, "'%s': port 0", s);
		break;
	default:
		CHECK(false, "'%s': family %d", s, a->sa.sa_family);
	}

	/* Printed into a heap buffer of exactly SR_ADDRESS_STRLEN bytes, with room to spare. */
	buf = malloc(SR_ADDRESS_STRLEN);
	if (!buf)
		abort();
	address_to_string(a, buf, SR_ADDRESS_STRLEN);
	n = strnlen(buf, SR_ADDRESS_STRLEN);
	CHECK(n > 0 && n < SR_ADDRESS_STRLEN - 1, "'%s' printed as '%s' (%zu bytes)", s, buf, n);

	/* The printed form is a valid address of the same kind, and the same address. */
	memset(&again, 0x5a, sizeof(again));
	r = address_parse(buf, kind, &again, &reason);
	CHECK(r == 0, "'%s' printed as '%s', which is rejected: %s", s, buf, reason);
	CHECK(same_address(a, &again), "'%s' printed as '%s', which parses differently", s, buf);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sr_address a[2], before;
	const char *reason;
	char *s;
	int r[2];

	if (size > FUZZ_ADDRESS_MAX)
		return 0;
	/* The string as the command line hands it over: up to the first NUL. */
	s = strndup((const char *)data, size);
	if (!s)
		abort();

	for (int k = 0; k < 2; k++) {
		enum address_kind kind = k == 0 ? ADDRESS_BACKEND : ADDRESS_LISTEN;

		memset(&a[k], 0x5a, sizeof(a[k]));
		before = a[k];
		reason = NULL;
		r[k] = address_parse(s, kind, &a[k], &reason);
		if (r[k] < 0) {
			CHECK(r[k] == -EINVAL || r[k] == -EADDRNOTAVAIL, "'%s': %d", s, r[k]);
			CHECK(reason && *reason, "'%s': rejected without a reason", s);
			CHECK(memcmp(&a[k], &before, sizeof(before)) == 0,
			      "'%s': output written on failure", s);
			continue;
		}
		CHECK(r[k] == 0, "'%s': %d", s, r[k]);
		check_parsed(s, kind, &a[k]);
	}

	/* --listen takes every BACKEND form, to the same address, and a bare port besides. */
	if (r[0] == 0)
		CHECK(r[1] == 0 && same_address(&a[0], &a[1]), "'%s': BACKEND but not --listen", s);
	else if (r[1] == 0)
		CHECK(strspn(s, "0123456789") == strlen(s) && a[1].sa.sa_family == AF_INET6,
		      "'%s': --listen but not BACKEND", s);

	free(s);
	return 0;
}
