// SPDX-License-Identifier: GPL-2.0
/* peek_http_host() and peek_name() on any bytes, up to PEEK_MAX: see peek-check.h. */
#include "peek-check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct peek_run r;

	if (size > PEEK_MAX)
		size = PEEK_MAX;
	r = peek_check(peek_http_host, "peek_http_host", data, size);
	peek_check_dispatch(data, size, &r, false);
	/* An HTTP request never starts with a TLS record's first byte. */
	if (size > 0 && data[0] == 22)
		CHECK(r.r == PEEK_INVALID, "HTTP starting with 0x16: %s",
		      peek_result_to_string(r.r));
	return 0;
}
