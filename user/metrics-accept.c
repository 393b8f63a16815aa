// SPDX-License-Identifier: GPL-2.0
/* Content negotiation for GET /metrics: which format an HTTP Accept header asks for. */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "metrics-accept.h"
#include "util.h"

static bool token_is(const char *s, size_t n, const char *want)
{
	return n == strlen(want) && strncasecmp(s, want, n) == 0;
}

static const char *skip_ows(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	return p;
}

static size_t trim_ows(const char *s, const char *end)
{
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	return (size_t)(end - s);
}

/* A qvalue (RFC 9110 12.4.2) in thousandths, or -1 if it is none. */
static int parse_qvalue(const char *s, size_t n)
{
	int q, scale = 100;

	if (n == 0 || (s[0] != '0' && s[0] != '1') || n > 5 || (n > 1 && s[1] != '.'))
		return -1;
	q = (s[0] - '0') * 1000;
	for (size_t i = 2; i < n; i++, scale /= 10) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		q += (s[i] - '0') * scale;
	}
	return q > 1000 ? -1 : q;
}

enum media {
	MEDIA_OTHER,
	MEDIA_OPENMETRICS,
	MEDIA_TEXT, /* text/plain, any text type, any type: what the text format answers */
};

/*
 * One element of Accept, s..end: "type/subtype *( OWS ; OWS name=value )". Which of our formats
 * it accepts, at which q in thousandths (0: not acceptable). A malformed q makes the element
 * count for nothing.
 */
static enum media parse_media_range(const char *s, const char *end, int *ret_q)
{
	const char *type;
	enum media media;
	size_t n;
	int q = 1000;

	s = skip_ows(s, end);
	for (type = s; s < end && *s != ';';)
		s++;
	n = trim_ows(type, s);
	if (token_is(type, n, "application/openmetrics-text"))
		media = MEDIA_OPENMETRICS;
	else if (token_is(type, n, "text/plain") || token_is(type, n, "text/*") ||
		 token_is(type, n, "*/*"))
		media = MEDIA_TEXT;
	else
		return MEDIA_OTHER;

	while (s < end && *s == ';') {
		const char *name, *value;
		size_t name_len, value_len;

		s = skip_ows(s + 1, end);
		for (name = s; s < end && *s != '=' && *s != ';';)
			s++;
		name_len = trim_ows(name, s);
		if (s >= end || *s != '=')
			continue;
		s = skip_ows(s + 1, end);
		if (s < end && *s == '"') {
			for (value = ++s; s < end && *s != '"'; s++)
				if (*s == '\\' && s + 1 < end)
					s++;
			value_len = (size_t)(s - value);
			while (s < end && *s != ';')
				s++;
		} else {
			for (value = s; s < end && *s != ';';)
				s++;
			value_len = trim_ows(value, s);
		}

		if (token_is(name, name_len, "q")) {
			q = parse_qvalue(value, value_len);
			if (q < 0)
				return MEDIA_OTHER;
		} else if (media == MEDIA_OPENMETRICS && token_is(name, name_len, "version")) {
			/* 1.0.0, any later 1.x, and 0.0.1, its draft that Prometheus still sends. */
			if (!token_is(value, value_len, "0.0.1") &&
			    !token_is(value, value_len, "1") &&
			    !(value_len >= 2 && strncmp(value, "1.", 2) == 0))
				return MEDIA_OTHER;
		}
	}
	*ret_q = q;
	return media;
}

enum metrics_format metrics_format_from_accept(const char *accept)
{
	int q_openmetrics = 0, q_text = 0;

	if (!accept)
		return METRICS_TEXT;
	for (const char *p = accept; *p;) {
		const char *end;
		bool quoted = false;
		int q;

		/* Split at commas outside a quoted parameter value. */
		for (end = p; *end && (quoted || *end != ','); end++)
			if (*end == '"')
				quoted = !quoted;
			else if (quoted && *end == '\\' && end[1])
				end++;
		switch (parse_media_range(p, end, &q)) {
		case MEDIA_OPENMETRICS:
			q_openmetrics = MAX(q_openmetrics, q);
			break;
		case MEDIA_TEXT:
			q_text = MAX(q_text, q);
			break;
		default:
			break;
		}
		p = *end ? end + 1 : end;
	}
	/* Ties go to OpenMetrics: the client named it, and it says more (units, info, EOF). */
	return q_openmetrics > 0 && q_openmetrics >= q_text ? METRICS_OPENMETRICS : METRICS_TEXT;
}
