// SPDX-License-Identifier: GPL-2.0
/*
 * Strict parsers for option values that need no option table: sizes, times, booleans, names.
 * They log nothing; the caller says what was wrong and where.
 */
#include <ctype.h>
#include <string.h>

#include "parse.h"
#include "util.h"

int parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	unsigned long long v;
	uint64_t mul = 1;
	char *end;

	if (!s || !*s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -ERANGE;
	if (*end) {
		if (streq(end, "K") || streq(end, "k"))
			mul = 1ULL << 10;
		else if (streq(end, "M"))
			mul = 1ULL << 20;
		else if (streq(end, "G"))
			mul = 1ULL << 30;
		else
			return -EINVAL;
	}
	if (v > UINT64_MAX / mul)
		return -ERANGE;
	v *= mul;
	if (v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

int parse_time_usec(const char *s, uint64_t *ret)
{
	static const struct {
		const char *suffix;
		uint64_t usec;
	} units[] = {
		{ "us", 1 },	      { "ms", USEC_PER_MSEC },	    { "s", USEC_PER_SEC },
		{ "", USEC_PER_SEC }, { "min", 60 * USEC_PER_SEC },
	};
	unsigned long long whole, frac = 0, frac_div = 1;
	const char *p;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	whole = strtoull(s, &end, 10);
	if (errno != 0 || whole > 1000000000ULL)
		return -ERANGE;
	p = end;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -EINVAL;
		for (; *p >= '0' && *p <= '9'; p++) {
			if (frac_div < 1000000ULL) {
				frac = frac * 10 + (unsigned long long)(*p - '0');
				frac_div *= 10;
			}
		}
	}
	for (size_t i = 0; i < ELEMENTSOF(units); i++)
		if (streq(p, units[i].suffix)) {
			*ret = whole * units[i].usec + frac * units[i].usec / frac_div;
			return 0;
		}
	return -EINVAL;
}

int parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = { "yes", "true", "on", "1" };
	static const char *const no[] = { "no", "false", "off", "0" };

	for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*ret = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* An instance name becomes a path component of the pins: keep it to a safe alphabet. */
bool instance_name_is_valid(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > 64 || streq(n, ".") || streq(n, ".."))
		return false;
	return strspn(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.@") ==
	       len;
}

/* A systemd FileDescriptorName=: printable ASCII without ':', at most 255 bytes. */
bool fdname_is_valid(const char *n)
{
	size_t len = strlen(n);

	if (len == 0 || len > 255)
		return false;
	for (const char *p = n; *p; p++)
		if (*p <= ' ' || *p >= 127 || *p == ':')
			return false;
	return true;
}

/* A host pattern: a host name, or "*." and a host name; stored lowercase, no trailing dot. */
int host_pattern_normalize(const char *s, char **ret)
{
	const char *name = strncmp(s, "*.", 2) == 0 ? s + 2 : s;
	size_t n = strlen(s), label = 0;
	char *out;

	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0 || n > 253 || (size_t)(name - s) >= n)
		return -EINVAL;
	for (const char *p = name; p < s + n; p++) {
		if (*p == '.') {
			if (label == 0)
				return -EINVAL;
			label = 0;
			continue;
		}
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
			return -EINVAL;
		if (++label > 63)
			return -EINVAL;
	}
	if (label == 0)
		return -EINVAL;
	out = strndup(s, n);
	if (!out)
		return -ENOMEM;
	for (char *p = out; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	*ret = out;
	return 0;
}
