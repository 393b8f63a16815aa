// SPDX-License-Identifier: GPL-2.0
/*
 * peek_http_host() and peek_name() on any bytes, up to PEEK_MAX: see peek-check.h. And
 * peek_http_request_line() agrees with them: the Host parser starts with it.
 */
#include "peek-check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct peek_run r;
	enum peek_result line_r;
	size_t line = SIZE_MAX;

	if (size > PEEK_MAX)
		size = PEEK_MAX;
	r = peek_check(peek_http_host, "peek_http_host", data, size);
	peek_check_dispatch(data, size, &r, false);
	line_r = peek_http_request_line(data, size, &line);
	if (line_r == PEEK_FOUND)
		CHECK(line >= 14 && line <= size && data[line - 2] == '\r' && data[line - 1] == '\n',
		      "request line of %zu of %zu bytes", line, size);
	else
		CHECK(r.r == line_r && line == SIZE_MAX, "request line %s, Host %s",
		      peek_result_to_string(line_r), peek_result_to_string(r.r));
	/* An HTTP request never starts with a TLS record's first byte. */
	if (size > 0 && data[0] == 22)
		CHECK(r.r == PEEK_INVALID, "HTTP starting with 0x16: %s",
		      peek_result_to_string(r.r));
	return 0;
}
