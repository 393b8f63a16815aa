/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Reading the name a client asks for from its first bytes, without consuming them: the Host:
 * header of an HTTP/1.x request, or the SNI of a TLS ClientHello; and whether bytes start with
 * an HTTP/1.x request line (a request boundary, for promote_download()). Pure functions over a
 * buffer, so that they can be unit-tested and fuzzed.
 */
#ifndef SR_PEEK_H
#define SR_PEEK_H

#include <stddef.h>
#include <stdint.h>

/* The most a peek looks at; a request or ClientHello that needs more is "oversized". */
#define PEEK_MAX 16384
/* Host names are at most 253 bytes; the buffer also holds the NUL. */
#define PEEK_HOST_MAX 256

enum peek_result {
	PEEK_MORE,    /* the bytes so far are a valid start: wait for more */
	PEEK_FOUND,   /* host holds the name, lowercase, without port or trailing dot */
	PEEK_NO_NAME, /* a complete, valid request or ClientHello that names no host */
	PEEK_INVALID, /* not HTTP/1.x or TLS, or malformed */
};

/*
 * "METHOD SP target SP HTTP/1.x CRLF" at buf's start: PEEK_FOUND, with the line's length (its
 * CRLF included) in *ret_len, PEEK_MORE or PEEK_INVALID.
 */
enum peek_result peek_http_request_line(const uint8_t *buf, size_t len, size_t *ret_len);
/* Look at buf (len bytes, len <= PEEK_MAX) and decide; host must hold PEEK_HOST_MAX bytes. */
enum peek_result peek_name(const uint8_t *buf, size_t len, char *host);
enum peek_result peek_http_host(const uint8_t *buf, size_t len, char *host);
enum peek_result peek_tls_sni(const uint8_t *buf, size_t len, char *host);

const char *peek_result_to_string(enum peek_result r);

#endif /* SR_PEEK_H */
