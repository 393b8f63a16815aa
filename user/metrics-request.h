/* SPDX-License-Identifier: GPL-2.0 */
/* The HTTP side of a scrape: finding, parsing and judging a request (metrics-request.c). */
#ifndef SR_METRICS_REQUEST_H
#define SR_METRICS_REQUEST_H

#include <stdbool.h>
#include <sys/types.h>

#include "metrics.h"

/* The longest request, line and headers, that a scrape reads. */
#define METRICS_REQUEST_MAX 8192

/* What the request asked for; method and target point into the parsed buffer. */
struct metrics_request {
	const char *method, *target;
	bool head;
	enum metrics_format fmt;
};

/*
 * The end of the header section in buf[0, len), looking from *pos on: the index of the newline
 * that ends the last header line (the one before the empty line), or -1 if it isn't there yet,
 * with *pos where to look on when more bytes come. An empty line is "\r\n" or a bare "\n".
 */
ssize_t metrics_request_end(const char *buf, size_t len, size_t *pos);
/*
 * Parse the header section hdr (NUL-terminated, lines ending in "\n" or "\r\n", with no empty
 * line) into req, and return the status to reply with: 200, 400, 404 or 405.
 */
int metrics_request_parse(char *hdr, struct metrics_request *req);
/* The reason phrase of an HTTP status, and the body of an error reply: the phrase on a line. */
const char *metrics_status_reason(int status, const char **ret_body);

#endif /* SR_METRICS_REQUEST_H */
