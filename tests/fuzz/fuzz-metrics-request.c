// SPDX-License-Identifier: GPL-2.0
/*
 * What a scraper sends to GET /metrics, as the server reads it: metrics_request_end() over the
 * bytes as they come, then metrics_request_parse() on the header section, and
 * metrics_format_from_accept() on the whole input as one header value. Any client may send
 * anything, so none of them may read or write out of bounds, and the verdicts must hold:
 *   - the end found is inside the input, on a newline, followed by an empty line;
 *   - the status is 200, 400, 404 or 405, with a method and a target on 200;
 *   - looking for the end in pieces finds the same end as looking at once.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../user/metrics-accept.h"
#include "../../user/metrics-request.h"

#include "fuzz-check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct metrics_request req = {};
	size_t skip = 0, pos, pos_pieces;
	ssize_t end, end_pieces = -1;
	char *buf, *accept;
	int status;

	if (size > METRICS_REQUEST_MAX)
		size = METRICS_REQUEST_MAX;
	/* On the heap in exactly its size, so that ASan sees a read past the end. */
	buf = malloc(size + 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);

	/* As the server does: empty lines before the request line are skipped. */
	while (skip < size && (buf[skip] == '\r' || buf[skip] == '\n'))
		skip++;
	pos = pos_pieces = skip;
	end = metrics_request_end(buf, size, &pos);
	for (size_t n = 1; n <= size && end_pieces < 0; n += 1 + n / 7)
		end_pieces = metrics_request_end(buf, n, &pos_pieces);
	if (end_pieces < 0)
		end_pieces = metrics_request_end(buf, size, &pos_pieces);
	CHECK(end == end_pieces, "end %zd at once, %zd in pieces", end, end_pieces);

	if (end >= 0) {
		CHECK((size_t)end < size && buf[end] == '\n', "end %zd of %zu", end, size);
		CHECK(buf[end + 1] == '\n' || (buf[end + 1] == '\r' && buf[end + 2] == '\n'),
		      "no empty line after %zd", end);
		/* The server refuses a NUL, then parses up to that newline, NUL-terminated. */
		buf[end] = '\0';
		status = memchr(buf + skip, '\0', (size_t)end - skip) ?
				 400 :
				 metrics_request_parse(buf + skip, &req);
		CHECK(status == 200 || status == 400 || status == 404 || status == 405,
		      "status %d", status);
		if (status == 200)
			CHECK(req.method && req.target &&
				      (req.fmt == METRICS_TEXT || req.fmt == METRICS_OPENMETRICS),
			      "200 without a request");
	}
	free(buf);

	accept = strndup((const char *)data, size);
	if (accept) {
		enum metrics_format f = metrics_format_from_accept(accept);

		CHECK(f == METRICS_TEXT || f == METRICS_OPENMETRICS, "format %d", f);
		free(accept);
	}
	return 0;
}
