// SPDX-License-Identifier: GPL-2.0
/* The HTTP side of a scrape: finding, parsing and judging a request for GET /metrics. */
#include <string.h>
#include <strings.h>

#include "metrics-accept.h"
#include "metrics-request.h"
#include "util.h"

static bool is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* A token (RFC 9110 5.6.2) of n bytes at p. */
static bool is_token(const char *p, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_tchar(p[i]))
			return false;
	return true;
}

/*
 * The end of the header section in buf[0, len), looking from *pos on: the index of the newline
 * that ends the last header line (the one before the empty line), or -1 if it isn't there yet,
 * with *pos where to look on when more bytes come. An empty line is "\r\n" or a bare "\n".
 */
ssize_t metrics_request_end(const char *buf, size_t len, size_t *pos)
{
	size_t i;

	for (i = *pos; i < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (i + 1 >= len)
			break;
		if (buf[i + 1] == '\n')
			return i;
		if (buf[i + 1] == '\r') {
			if (i + 2 >= len)
				break;
			if (buf[i + 2] == '\n')
				return i;
		}
	}
	*pos = i;
	return -1;
}

static bool path_is_metrics(const char *target)
{
	/* Absolute form (RFC 9112 3.2.2), which a server must accept: drop scheme and authority. */
	if (strncasecmp(target, "http://", 7) == 0 || strncasecmp(target, "https://", 8) == 0) {
		target = strchr(strstr(target, "//") + 2, '/');
		if (!target)
			return false;
	}
	return strncmp(target, "/metrics", 8) == 0 && (target[8] == '\0' || target[8] == '?');
}

/*
 * Parse the header section hdr (NUL-terminated, lines ending in "\n" or "\r\n", with no empty
 * line) into req, and return the status to reply with. Strict, since the clients are programs:
 * anything that is not exactly METHOD SP TARGET SP HTTP/1.x, or a header line that is not
 * NAME ":" VALUE (obs-fold included), is a 400.
 */
int metrics_request_parse(char *hdr, struct metrics_request *req)
{
	char accept[METRICS_REQUEST_MAX + 1];
	size_t accept_len = 0, n;
	bool have_accept = false;
	char *line, *next, *sp1, *sp2, *colon, *v, *end;

	next = hdr;
	line = strsep(&next, "\n");
	n = strlen(line);
	if (n > 0 && line[n - 1] == '\r')
		line[--n] = '\0';

	sp1 = strchr(line, ' ');
	if (!sp1 || !is_token(line, sp1 - line))
		return 400;
	sp2 = strchr(sp1 + 1, ' ');
	if (!sp2 || sp2 == sp1 + 1)
		return 400;
	for (const char *p = sp1 + 1; p < sp2; p++)
		if (*p <= ' ' || *p >= 0x7f)
			return 400;
	if (strncmp(sp2 + 1, "HTTP/1.", 7) != 0 || !(sp2[8] >= '0' && sp2[8] <= '9') ||
	    sp2[9] != '\0')
		return 400;
	*sp1 = *sp2 = '\0';
	req->method = line;
	req->target = sp1 + 1;
	req->head = streq(req->method, "HEAD");

	while ((line = strsep(&next, "\n"))) {
		n = strlen(line);
		if (n > 0 && line[n - 1] == '\r')
			line[--n] = '\0';
		colon = strchr(line, ':');
		if (!colon || !is_token(line, colon - line))
			return 400;
		if (colon - line != 6 || strncasecmp(line, "accept", 6) != 0)
			continue;

		/* Several Accept lines mean their values joined with commas (RFC 9110 5.3). */
		v = colon + 1 + strspn(colon + 1, " \t");
		end = v + strlen(v);
		while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		/* ", " plus the value is shorter than the line it came from, so it always fits. */
		if (have_accept && accept_len + 2 < sizeof(accept)) {
			memcpy(accept + accept_len, ", ", 2);
			accept_len += 2;
		}
		n = MIN((size_t)(end - v), sizeof(accept) - 1 - accept_len);
		memcpy(accept + accept_len, v, n);
		accept_len += n;
		have_accept = true;
	}
	accept[accept_len] = '\0';

	if (!streq(req->method, "GET") && !req->head)
		return 405;
	if (!path_is_metrics(req->target))
		return 404;
	req->fmt = metrics_format_from_accept(have_accept ? accept : NULL);
	return 200;
}

/* The reason phrase of status, and the body of an error reply: the phrase on a line. */
const char *metrics_status_reason(int status, const char **ret_body)
{
#define STATUS(code, phrase)             \
	case code:                       \
		*ret_body = phrase "\n"; \
		return phrase;
	switch (status) {
		STATUS(200, "OK")
		STATUS(400, "Bad Request")
		STATUS(404, "Not Found")
		STATUS(405, "Method Not Allowed")
		STATUS(431, "Request Header Fields Too Large")
		STATUS(500, "Internal Server Error")
	}
#undef STATUS
	*ret_body = "Internal Server Error\n";
	return "Internal Server Error";
}
