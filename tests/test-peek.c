// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests for the Host and SNI peek parsers (user/peek.c): every accepted form, every prefix
 * of a valid request or ClientHello, every way of being refused, and a short deterministic fuzz
 * loop. Each input is handed over in a heap buffer of exactly its length, so that a sanitizer
 * build catches any read past the end.
 */
#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../user/peek.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))

#include "check.h"

typedef enum peek_result (*peek_fn)(const uint8_t *buf, size_t len, char *host);

/* Exactly PEEK_HOST_MAX bytes on the heap, so that writing past it is caught too. */
static char *host;

static const char *str(enum peek_result r)
{
	return peek_result_to_string(r);
}

/* A printable, shortened copy of data for messages. */
static const char *escape(const void *data, size_t len)
{
	static char out[4][200];
	static unsigned next;
	const uint8_t *p = data;
	char *o = out[next++ % 4];
	size_t j = 0;

	for (size_t i = 0; i < len && j < sizeof(out[0]) - 8; i++) {
		if (p[i] == '\r')
			j += (size_t)sprintf(o + j, "\\r");
		else if (p[i] == '\n')
			j += (size_t)sprintf(o + j, "\\n");
		else if (p[i] < ' ' || p[i] >= 127 || p[i] == '\\')
			j += (size_t)sprintf(o + j, "\\x%02x", p[i]);
		else
			o[j++] = (char)p[i];
	}
	if (j >= sizeof(out[0]) - 8)
		j += (size_t)sprintf(o + j, "...");
	o[j] = 0;
	return o;
}

/* Run fn over a heap copy of exactly len bytes, with host filled with garbage. */
static enum peek_result run(peek_fn fn, const void *data, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);
	enum peek_result r;

	if (!copy)
		abort();
	if (len)
		memcpy(copy, data, len);
	memset(host, 0x5a, PEEK_HOST_MAX);
	r = fn(copy, len, host);
	free(copy);
	return r;
}

/* fn gives want, and when that is PEEK_FOUND, want_host. */
static void expect(const char *what, peek_fn fn, const void *data, size_t len,
		   enum peek_result want, const char *want_host)
{
	enum peek_result r = run(fn, data, len);

	if (!CHECK(r == want, "%s: '%s': %s, want %s", what, escape(data, len), str(r), str(want)))
		return;
	if (want != PEEK_FOUND)
		return;
	if (!CHECK(memchr(host, 0, PEEK_HOST_MAX), "%s: host not NUL-terminated", what))
		return;
	CHECK(strcmp(host, want_host) == 0, "%s: '%s': host '%s', want '%s'", what,
	      escape(data, len), host, want_host);
}

/* Every prefix shorter than decided gives PEEK_MORE; from decided on, want. */
static void expect_prefixes(const char *what, peek_fn fn, const void *data, size_t len,
			    size_t decided, enum peek_result want, const char *want_host)
{
	size_t bad = SIZE_MAX;
	enum peek_result r = PEEK_MORE, w = PEEK_MORE;

	for (size_t k = 0; k <= len; k++) {
		w = k < decided ? PEEK_MORE : want;
		r = run(fn, data, k);
		if (r != w || (r == PEEK_FOUND && strcmp(host, want_host) != 0)) {
			bad = k;
			break;
		}
	}
	CHECK(bad == SIZE_MAX, "%s: prefix of %zu of %zu bytes: %s (host '%s'), want %s", what,
	      bad, len, str(r), r == PEEK_FOUND ? host : "", str(w));
}

static void http(const char *req, enum peek_result want, const char *want_host)
{
	expect("HTTP", peek_http_host, req, strlen(req), want, want_host);
	expect("HTTP via peek_name", peek_name, req, strlen(req), want, want_host);
}

static void http_found(const char *req, const char *want_host)
{
	http(req, PEEK_FOUND, want_host);
}

static void http_invalid(const char *req)
{
	http(req, PEEK_INVALID, NULL);
}

static void test_http_found(void)
{
	http_found("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", "example.com");
	http_found("GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n", "example.com");
	http_found("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", "[::1]");
	http_found("GET / HTTP/1.1\r\nHost: [::1]\r\n\r\n", "[::1]");
	http_found("GET / HTTP/1.1\r\nHost: [2001:DB8::1]:443\r\n\r\n", "[2001:db8::1]");
	http_found("GET / HTTP/1.1\r\nHost: 192.0.2.1:8080\r\n\r\n", "192.0.2.1");
	http_found("GET / HTTP/1.1\r\nHost: ExAmPlE.COM\r\n\r\n", "example.com");
	http_found("GET / HTTP/1.1\r\nHost: WWW.EXAMPLE.COM:443\r\n\r\n", "www.example.com");
	http_found("GET / HTTP/1.1\r\nHost: example.com.\r\n\r\n", "example.com");
	http_found("GET / HTTP/1.1\r\nHost: example.com.:8080\r\n\r\n", "example.com");
	http_found("GET / HTTP/1.1\r\nhost: example.com\r\n\r\n", "example.com");
	http_found("GET / HTTP/1.1\r\nHOST: example.com\r\n\r\n", "example.com");
	http_found("GET / HTTP/1.1\r\nhost:example.com\r\n\r\n", "example.com");
	http_found("GET / HTTP/1.1\r\nHost: \t  example.com \t \r\n\r\n", "example.com");
	http_found("GET / HTTP/1.1\r\nHost:\texample.com\t\r\n\r\n", "example.com");
	http_found("GET / HTTP/1.1\r\nHost: my_host-1.internal\r\n\r\n", "my_host-1.internal");
	http_found("GET /index.html?q=1 HTTP/1.1\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n"
		   "Host: example.com\r\n\r\n",
		   "example.com");
	http_found("GET / HTTP/1.1\r\nX-Forwarded-Host: other.example\r\nHostname: x\r\n"
		   "X-Host: y\r\nHost: example.com\r\n\r\n",
		   "example.com");
	/* Decided by the Host line alone: the rest of the headers need not have arrived. */
	http_found("GET / HTTP/1.1\r\nHost: example.com\r\n", "example.com");
	http_found("GET / HTTP/1.1\r\nHost: example.com\r\nAccept: ", "example.com");
	http_found("GET / HTTP/1.0\r\nHost: example.com\r\n\r\n", "example.com");
	http_found("POST /submit HTTP/1.1\r\nContent-Length: 3\r\nHost: api.example\r\n\r\nabc",
		   "api.example");
	http_found("OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n", "example.com");
	http_found("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
		   "example.com");
	http_found("M-SEARCH * HTTP/1.1\r\nHost: example.com\r\n\r\n", "example.com");
}

static void test_http_no_name(void)
{
	http("GET / HTTP/1.0\r\n\r\n", PEEK_NO_NAME, NULL);
	http("GET / HTTP/1.0\r\nAccept: */*\r\nUser-Agent: x\r\n\r\n", PEEK_NO_NAME, NULL);
	/* Not yet: the empty line has not arrived. */
	http("GET / HTTP/1.0\r\nAccept: */*\r\n", PEEK_MORE, NULL);
	http("GET / HTTP/1.0\r\nAccept: */*\r\n\r", PEEK_MORE, NULL);
}

static void test_http_invalid(void)
{
	static const uint8_t random_bytes[] = { 0x00, 0x01, 0x02, 0x03, 0xff, 0xfe, 0x80, 0x0d,
						0x0a, 0x0d, 0x0a };
	char method[64];

	expect("random bytes", peek_http_host, random_bytes, sizeof(random_bytes), PEEK_INVALID,
	       NULL);
	expect("random bytes", peek_name, random_bytes, sizeof(random_bytes), PEEK_INVALID, NULL);
	expect("0xff", peek_name, "\xff", 1, PEEK_INVALID, NULL);
	http_invalid("SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13.5\r\n");
	http_invalid("SSH-2.0-OpenSSH_9.6\r\n");
	/* Garbage is refused as it arrives, not only once a line is complete. */
	http_invalid("SSH-2.0-OpenSSH_9.6\r");
	http_invalid("\x01");
	http_invalid("G\x01");
	http_invalid("GE(T");

	/* Empty labels, and a second trailing dot (fuzzer findings). */
	http_invalid("GET / HTTP/1.1\r\nHost: example.com..\r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\nHost: .example.com\r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\nHost: a..b\r\n\r\n");

	/* The version. */
	http_invalid("GET / HTTP/2.0\r\nHost: example.com\r\n\r\n");
	http_invalid("GET / HTTP/1.2\r\nHost: example.com\r\n\r\n");
	http_invalid("GET / HTTP/1.10\r\nHost: example.com\r\n\r\n");
	http_invalid("GET / HTTP/1\r\nHost: example.com\r\n\r\n");
	http_invalid("GET / HTTPS/1.1\r\nHost: example.com\r\n\r\n");
	http_invalid("GET / http/1.1\r\nHost: example.com\r\n\r\n");
	http_invalid("GET /\r\nHost: example.com\r\n\r\n");
	http_invalid("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

	/* The spaces of the request line. */
	http_invalid("GET/ HTTP/1.1\r\nHost: example.com\r\n\r\n");
	http_invalid("GET /HTTP/1.1\r\nHost: example.com\r\n\r\n");
	http_invalid("GET  / HTTP/1.1\r\nHost: example.com\r\n\r\n");
	http_invalid("GET / HTTP/1.1 \r\nHost: example.com\r\n\r\n");
	http_invalid(" GET / HTTP/1.1\r\nHost: example.com\r\n\r\n");
	http_invalid("GET\r\nHost: example.com\r\n\r\n");
	http_invalid("\r\n\r\n");

	/* The method: a token of at most 32 characters. */
	memset(method, 'A', sizeof(method));
	memcpy(method + 32, " / HTTP/1.1\r\n\r\n", 16);
	http(method, PEEK_NO_NAME, NULL);
	memset(method, 'A', sizeof(method));
	memcpy(method + 33, " / HTTP/1.1\r\n\r\n", 16);
	http_invalid(method);

	/* Header lines. */
	http_invalid("GET / HTTP/1.1\r\nHost example.com\r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\nAccept */*\r\nHost: example.com\r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\nHost : example.com\r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\n: example.com\r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\n Host: example.com\r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\nX(y): z\r\nHost: example.com\r\n\r\n");

	/* The host name. */
	http_invalid("GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\nHost: example.com/\r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\nHost: user@example.com\r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\nHost: exa\x01mple.com\r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\nHost: ex\xc3\xa9mple.com\r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\nHost: \"example.com\"\r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\nHost: [::1\r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\nHost:\r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\nHost: \r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\nHost:  \t \r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\nHost: :8080\r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\nHost: .\r\n\r\n");
	http_invalid("GET / HTTP/1.1\r\nHost: .:80\r\n\r\n");
	/* A TLS ClientHello is not HTTP. */
	expect("TLS to the HTTP parser", peek_http_host, "\x16\x03\x01\x00\x05", 5, PEEK_INVALID,
	       NULL);
}

/* Host names of 255 bytes fit PEEK_HOST_MAX with the NUL; 256 do not. */
/* peek_http_request_line() over a heap copy of exactly the bytes: want, and the line's length. */
static void request_line(const char *what, const void *data, size_t len, enum peek_result want,
			 size_t want_len)
{
	uint8_t *copy = malloc(len ? len : 1);
	size_t line = 12345;
	enum peek_result r;

	if (!copy)
		abort();
	if (len)
		memcpy(copy, data, len);
	r = peek_http_request_line(copy, len, &line);
	free(copy);
	if (!CHECK(r == want, "request line, %s: '%s': %s, want %s", what, escape(data, len),
		   str(r), str(want)))
		return;
	/* ret_len is written on PEEK_FOUND only. */
	CHECK(line == (want == PEEK_FOUND ? want_len : 12345), "request line, %s: length %zu", what,
	      line);
}

/*
 * What promote_download() asks of a client's next bytes: an HTTP/1.x request line, whole. The
 * headers need not have arrived; anything else (srpeer's proto header, a WebSocket frame, TLS,
 * a bare "GET N" line, HTTP/2's preface, a response) is not a request.
 */
static void test_http_request_line(void)
{
	static const char get[] = "GET /1048576 HTTP/1.1\r\nHost: t\r\n\r\n";
	static const uint8_t ws_frame[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f };
	/* "SRPQ", flags 4 (duplex), then the seed... */
	static const uint8_t proto_hdr[] = { 'S', 'R', 'P', 'Q', 0x04, 0, 0, 0, 0x2a, 0 };
	size_t first = strlen("GET /1048576 HTTP/1.1\r\n");

	request_line("GET", get, strlen(get), PEEK_FOUND, first);
	request_line("the line alone", get, first, PEEK_FOUND, first);
	request_line("HTTP/1.0", "HEAD / HTTP/1.0\r\n", 17, PEEK_FOUND, 17);
	request_line("POST with a body", "POST /x HTTP/1.1\r\nContent-Length: 1\r\n\r\nz", 40,
		     PEEK_FOUND, 18);
	for (size_t k = 0; k < first; k++)
		request_line("a prefix of the line", get, k, PEEK_MORE, 0);
	request_line("a bare line", "GET 1048576\n", 12, PEEK_MORE, 0);
	request_line("a bare line, then CRLF", "GET 1048576\r\n", 13, PEEK_INVALID, 0);
	request_line("HTTP/2", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24, PEEK_INVALID, 0);
	request_line("a response", "HTTP/1.1 200 OK\r\n", 17, PEEK_INVALID, 0);
	request_line("a WebSocket frame", ws_frame, sizeof(ws_frame), PEEK_INVALID, 0);
	request_line("srpeer's proto header", proto_hdr, sizeof(proto_hdr), PEEK_INVALID, 0);
	request_line("TLS", "\x16\x03\x01\x00\x05", 5, PEEK_INVALID, 0);
	request_line("nothing", "", 0, PEEK_MORE, 0);
}

static void test_http_host_length(void)
{
	char name[300], req[400];

	memset(name, 'a', sizeof(name));
	for (size_t i = 50; i < 260; i += 50)
		name[i] = '.';
	name[255] = 0;
	snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", name);
	http_found(req, name);
	snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s.:8080\r\n\r\n", name);
	http_found(req, name);
	name[255] = 'a';
	name[256] = 0;
	snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", name);
	http_invalid(req);
}

/* Every prefix of a valid request waits for more until its Host line is complete. */
static void http_prefixes(const char *req, enum peek_result want, const char *want_host)
{
	const char *h = strcasestr(req, "\r\nHost:");
	size_t decided;

	if (h)
		decided = (size_t)(strstr(h + 2, "\r\n") + 2 - req);
	else
		decided = (size_t)(strstr(req, "\r\n\r\n") + 4 - req);
	expect_prefixes("HTTP prefixes", peek_http_host, req, strlen(req), decided, want,
			want_host);
	expect_prefixes("HTTP prefixes via peek_name", peek_name, req, strlen(req), decided, want,
			want_host);
}

static void test_http_prefixes(void)
{
	http_prefixes("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", PEEK_FOUND, "example.com");
	http_prefixes("GET /a/b?c=d HTTP/1.1\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n"
		      "host: \tExample.COM.:8443 \r\nConnection: close\r\n\r\n",
		      PEEK_FOUND, "example.com");
	http_prefixes("PUT /x HTTP/1.1\r\nHost: [2001:db8::7]:8080\r\nContent-Length: 0\r\n\r\n",
		      PEEK_FOUND, "[2001:db8::7]");
	http_prefixes("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n", PEEK_NO_NAME, NULL);
	http_prefixes("GET / HTTP/1.0\r\n\r\n", PEEK_NO_NAME, NULL);
}

/* Append header lines of filler to b (at len) until it is exactly want bytes long. */
static size_t pad_headers(char *b, size_t len, size_t want)
{
	unsigned n = 0;

	while (len < want) {
		size_t room = want - len, line;

		/* "X-Pad-NNNN: " + value + CRLF; leave no remainder too short for a line. */
		line = room > 300 ? 200 : room;
		if (line < 20)
			abort();
		len += (size_t)sprintf(b + len, "X-Pad-%04u: ", n++ % 10000);
		memset(b + len, 'v', line - 14);
		len += line - 14;
		memcpy(b + len, "\r\n", 2);
		len += 2;
	}
	if (len != want)
		abort();
	return len;
}

static void test_http_oversized(void)
{
	static const char start[] = "GET / HTTP/1.1\r\n";
	static const char host_line[] = "Host: big.example\r\n\r\n";
	char *b = malloc(PEEK_MAX + 1000);
	size_t len;

	if (!b)
		abort();

	/* Headers that never end: refused at PEEK_MAX, waited for just before. */
	len = strlen(start);
	memcpy(b, start, len);
	len = pad_headers(b, len, PEEK_MAX - 100);
	memset(b + len, 'x', 200);
	memcpy(b + len, "X-Long: ", 8);
	expect("16 KiB of headers", peek_http_host, b, PEEK_MAX, PEEK_INVALID, NULL);
	expect("16 KiB of headers", peek_name, b, PEEK_MAX, PEEK_INVALID, NULL);
	expect("16 KiB - 1 of headers", peek_http_host, b, PEEK_MAX - 1, PEEK_MORE, NULL);

	/* Complete header lines up to exactly PEEK_MAX, and no end: still oversized. */
	len = pad_headers(b, strlen(start), PEEK_MAX);
	expect("16 KiB of complete header lines", peek_http_host, b, len, PEEK_INVALID, NULL);

	/* A request line that never ends. */
	memcpy(b, "GET /", 5);
	memset(b + 5, 'a', PEEK_MAX);
	expect("16 KiB request line", peek_http_host, b, PEEK_MAX, PEEK_INVALID, NULL);
	expect("16 KiB - 1 request line", peek_http_host, b, PEEK_MAX - 1, PEEK_MORE, NULL);

	/* 16,000 bytes with Host last. */
	len = strlen(start);
	memcpy(b, start, len);
	len = pad_headers(b, len, 16000 - strlen(host_line));
	memcpy(b + len, host_line, strlen(host_line));
	len += strlen(host_line);
	CHECK(len == 16000, "built %zu bytes, want 16000", len);
	expect("16,000-byte request", peek_http_host, b, len, PEEK_FOUND, "big.example");
	expect("16,000-byte request", peek_name, b, len, PEEK_FOUND, "big.example");

	/* Host ending on the very last byte PEEK_MAX allows. */
	len = strlen(start);
	memcpy(b, start, len);
	len = pad_headers(b, len, PEEK_MAX - strlen("Host: edge.example\r\n"));
	memcpy(b + len, "Host: edge.example\r\n", 20);
	len += 20;
	CHECK(len == PEEK_MAX, "built %zu bytes, want %d", len, PEEK_MAX);
	expect("Host ending at PEEK_MAX", peek_http_host, b, len, PEEK_FOUND, "edge.example");
	free(b);
}

/* A byte buffer that ClientHellos are written into, with length prefixes filled in after. */
struct builder {
	uint8_t *d;
	size_t len, size;
};

static void put(struct builder *b, const void *p, size_t n)
{
	if (b->len + n > b->size)
		abort();
	memcpy(b->d + b->len, p, n);
	b->len += n;
}

static void put_fill(struct builder *b, uint8_t c, size_t n)
{
	if (b->len + n > b->size)
		abort();
	memset(b->d + b->len, c, n);
	b->len += n;
}

static void put8(struct builder *b, unsigned v)
{
	uint8_t c = (uint8_t)v;

	put(b, &c, 1);
}

static void put16(struct builder *b, unsigned v)
{
	put8(b, v >> 8);
	put8(b, v);
}

/* Reserve a length prefix of lenlen bytes; returns where, for close_len(). */
static size_t open_len(struct builder *b, size_t lenlen)
{
	size_t at = b->len;

	put_fill(b, 0, lenlen);
	return at;
}

static void close_len(struct builder *b, size_t at, size_t lenlen)
{
	size_t n = b->len - at - lenlen;

	for (size_t i = 0; i < lenlen; i++)
		b->d[at + i] = (uint8_t)(n >> (8 * (lenlen - 1 - i)));
}

/* What a ClientHello looks like; zero is the usual. */
struct hello {
	const char *sni;	/* the host_name in server_name, or NULL for no such extension */
	size_t sni_len;		/* its length, if not strlen(sni) */
	bool sni_other_first;	/* a server name of another type before the host_name */
	bool sni_empty_list;	/* a server_name extension with an empty list */
	bool no_extensions;	/* nothing after the compression methods */
	bool empty_extensions;	/* an extensions block of length 0 */
	size_t key_share;	/* bytes of key_share key exchange data */
	size_t padding;		/* bytes of a padding extension after server_name */
	bool sni_last;		/* server_name the last thing in the handshake: no ALPN */
	size_t trailing;	/* bytes of 'z' after the handshake message, in its record */
	uint8_t handshake_type; /* instead of ClientHello */
	uint8_t content_type;	/* instead of handshake */
	size_t fragment;	/* at most this many handshake bytes per record; 0: one record */
};

/* Where the length fields are, in the bytes on the wire (only for one record). */
struct hello_fields {
	size_t record_len, handshake_len, session_len, suites_len, compression_len, exts_len,
		key_share_len, sni_ext_len, sni_list_len, sni_name_len;
};

#define WIRE_MAX 65536

/* Write the ClientHello h describes into out; returns its length on the wire. */
static size_t build_hello(const struct hello *h, uint8_t *out, struct hello_fields *f)
{
	static uint8_t hsbuf[WIRE_MAX];
	struct builder hs = { hsbuf, 0, sizeof(hsbuf) }, w = { out, 0, WIRE_MAX };
	struct hello_fields fields = {};
	size_t hs_at, exts_at = 0, at, at2;

	put8(&hs, h->handshake_type ?: 1);
	fields.handshake_len = hs.len;
	hs_at = open_len(&hs, 3);
	put16(&hs, 0x0303);
	for (unsigned i = 0; i < 32; i++)
		put8(&hs, i * 7 + 3);
	fields.session_len = hs.len;
	put8(&hs, 32);
	put_fill(&hs, 0xaa, 32);
	fields.suites_len = hs.len;
	at = open_len(&hs, 2);
	put16(&hs, 0x1301);
	put16(&hs, 0x1302);
	put16(&hs, 0x1303);
	put16(&hs, 0xc02f);
	close_len(&hs, at, 2);
	fields.compression_len = hs.len;
	put8(&hs, 1);
	put8(&hs, 0);

	if (!h->no_extensions) {
		fields.exts_len = hs.len;
		exts_at = open_len(&hs, 2);
	}
	if (!h->no_extensions && !h->empty_extensions) {
		/* supported_versions: TLS 1.3 and 1.2. */
		put16(&hs, 43);
		at = open_len(&hs, 2);
		put8(&hs, 4);
		put16(&hs, 0x0304);
		put16(&hs, 0x0303);
		close_len(&hs, at, 2);
		/* supported_groups. */
		put16(&hs, 10);
		at = open_len(&hs, 2);
		put16(&hs, 4);
		put16(&hs, 0x001d);
		put16(&hs, 0x0017);
		close_len(&hs, at, 2);
		/* key_share: one share of the size asked for. */
		if (h->key_share) {
			put16(&hs, 51);
			fields.key_share_len = hs.len;
			at = open_len(&hs, 2);
			at2 = open_len(&hs, 2);
			put16(&hs, 0x11ec);
			put16(&hs, (unsigned)h->key_share);
			for (size_t i = 0; i < h->key_share; i++)
				put8(&hs, (unsigned)(i * 31 + 7));
			close_len(&hs, at2, 2);
			close_len(&hs, at, 2);
		}
		if (h->sni || h->sni_empty_list) {
			size_t n = h->sni_len ?: h->sni ? strlen(h->sni) : 0;

			put16(&hs, 0);
			fields.sni_ext_len = hs.len;
			at = open_len(&hs, 2);
			fields.sni_list_len = hs.len;
			at2 = open_len(&hs, 2);
			if (h->sni_other_first) {
				put8(&hs, 7);
				put16(&hs, 5);
				put(&hs, "other", 5);
			}
			if (h->sni) {
				put8(&hs, 0);
				fields.sni_name_len = hs.len;
				put16(&hs, (unsigned)n);
				put(&hs, h->sni, n);
			}
			close_len(&hs, at2, 2);
			close_len(&hs, at, 2);
		}
		/* ALPN, after server_name. */
		if (!h->sni_last) {
			put16(&hs, 16);
			at = open_len(&hs, 2);
			at2 = open_len(&hs, 2);
			put8(&hs, 2);
			put(&hs, "h2", 2);
			put8(&hs, 8);
			put(&hs, "http/1.1", 8);
			close_len(&hs, at2, 2);
			close_len(&hs, at, 2);
		}
		if (h->padding && !h->sni_last) {
			put16(&hs, 21);
			put16(&hs, (unsigned)h->padding);
			put_fill(&hs, 0, h->padding);
		}
	}
	if (!h->no_extensions)
		close_len(&hs, exts_at, 2);
	close_len(&hs, hs_at, 3);
	/* Record bytes after the handshake message, where a parser has no business reading. */
	put_fill(&hs, 'z', h->trailing);

	/* Into records. */
	for (size_t off = 0; off < hs.len;) {
		size_t n = h->fragment ? MIN(h->fragment, hs.len - off) : hs.len - off;

		put8(&w, h->content_type ?: 22);
		put16(&w, 0x0301);
		put16(&w, (unsigned)n);
		put(&w, hs.d + off, n);
		off += n;
	}
	if (f) {
		/* One record: 5 bytes of record header before the handshake. */
		size_t *all[] = { &fields.handshake_len,   &fields.session_len,
				  &fields.suites_len,	   &fields.compression_len,
				  &fields.exts_len,	   &fields.key_share_len,
				  &fields.sni_ext_len,	   &fields.sni_list_len,
				  &fields.sni_name_len };

		for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
			if (*all[i])
				*all[i] += 5;
		fields.record_len = 3;
		*f = fields;
	}
	return w.len;
}

static uint8_t *wire;

static void tls(const char *what, const struct hello *h, enum peek_result want,
		const char *want_host)
{
	size_t len = build_hello(h, wire, NULL);

	expect(what, peek_tls_sni, wire, len, want, want_host);
	expect(what, peek_name, wire, len, want, want_host);
}

static void test_tls_found(void)
{
	tls("SNI", &(struct hello){ .sni = "example.com" }, PEEK_FOUND, "example.com");
	tls("SNI after a big key share",
	    &(struct hello){ .sni = "example.com", .key_share = 1216 }, PEEK_FOUND,
	    "example.com");
	tls("SNI uppercase", &(struct hello){ .sni = "WWW.Example.COM" }, PEEK_FOUND,
	    "www.example.com");
	tls("SNI trailing dot", &(struct hello){ .sni = "example.com." }, PEEK_FOUND,
	    "example.com");
	tls("SNI after another name type",
	    &(struct hello){ .sni = "example.com", .sni_other_first = true }, PEEK_FOUND,
	    "example.com");
	tls("SNI then padding", &(struct hello){ .sni = "example.com", .padding = 512 },
	    PEEK_FOUND, "example.com");
	tls("SNI one letter", &(struct hello){ .sni = "a" }, PEEK_FOUND, "a");
}

static void test_tls_no_name(void)
{
	tls("no extensions", &(struct hello){ .no_extensions = true }, PEEK_NO_NAME, NULL);
	tls("empty extensions", &(struct hello){ .empty_extensions = true }, PEEK_NO_NAME, NULL);
	tls("no server_name", &(struct hello){ .key_share = 1216 }, PEEK_NO_NAME, NULL);
	tls("server_name with an empty list", &(struct hello){ .sni_empty_list = true },
	    PEEK_NO_NAME, NULL);
}

static void test_tls_invalid_names(void)
{
	tls("SNI with a space", &(struct hello){ .sni = "exa mple.com" }, PEEK_INVALID, NULL);
	tls("SNI with a slash", &(struct hello){ .sni = "a/b" }, PEEK_INVALID, NULL);
	tls("SNI with a NUL", &(struct hello){ .sni = "exa\0mple.com", .sni_len = 12 },
	    PEEK_INVALID, NULL);
	tls("SNI with a control character", &(struct hello){ .sni = "exa\x7fmple.com" },
	    PEEK_INVALID, NULL);
	tls("SNI with UTF-8", &(struct hello){ .sni = "ex\xc3\xa9mple.com" }, PEEK_INVALID, NULL);
	tls("SNI empty", &(struct hello){ .sni = "", .sni_len = 0 }, PEEK_INVALID, NULL);
	tls("SNI a dot", &(struct hello){ .sni = "." }, PEEK_INVALID, NULL);
}

static void test_tls_name_length(void)
{
	char name[300], want[300];

	memset(name, 'b', sizeof(name));
	for (size_t i = 60; i < 260; i += 60)
		name[i] = '.';
	name[255] = 0;
	tls("SNI of 255 bytes", &(struct hello){ .sni = name }, PEEK_FOUND, name);
	name[255] = 'b';
	name[256] = 0;
	tls("SNI of 256 bytes", &(struct hello){ .sni = name }, PEEK_INVALID, NULL);
	name[255] = '.';
	memcpy(want, name, 255);
	want[255] = 0;
	tls("SNI of 255 bytes and a dot", &(struct hello){ .sni = name }, PEEK_FOUND, want);
}

static void test_tls_prefixes(void)
{
	static const struct hello hellos[] = {
		{ .sni = "example.com" },
		{ .sni = "Example.COM", .key_share = 1216 },
		{ .sni = "example.com", .fragment = 100 },
		{ .sni = "example.com", .key_share = 1216, .fragment = 512 },
		{ .sni = "example.com", .fragment = 1 },
		{ .no_extensions = true },
		{ .key_share = 64, .fragment = 40 },
	};

	for (size_t i = 0; i < sizeof(hellos) / sizeof(hellos[0]); i++) {
		const struct hello *h = &hellos[i];
		size_t len = build_hello(h, wire, NULL);
		enum peek_result want = h->sni ? PEEK_FOUND : PEEK_NO_NAME;
		char what[64];

		snprintf(what, sizeof(what), "TLS prefixes of hello %zu", i);
		expect_prefixes(what, peek_tls_sni, wire, len, len, want, "example.com");
		expect_prefixes(what, peek_name, wire, len, len, want, "example.com");
	}
}

/* The ClientHello split over two or three records, at various places. */
static void test_tls_fragmented(void)
{
	size_t one = build_hello(&(struct hello){ .sni = "example.com", .key_share = 1216 }, wire,
				 NULL) -
		     5;
	size_t sizes[] = { 1, 2, 3, 4, 5, 40, 100, (one + 1) / 2, (one + 2) / 3, one - 1 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct hello h = { .sni = "example.com", .key_share = 1216, .fragment = sizes[i] };
		char what[64];

		snprintf(what, sizeof(what), "ClientHello in records of %zu bytes", sizes[i]);
		tls(what, &h, PEEK_FOUND, "example.com");
	}
	/* Exactly two and three records. */
	CHECK(build_hello(&(struct hello){ .sni = "example.com", .key_share = 1216,
					   .fragment = (one + 1) / 2 },
			  wire, NULL) == one + 10,
	      "two records");
	CHECK(build_hello(&(struct hello){ .sni = "example.com", .key_share = 1216,
					   .fragment = (one + 2) / 3 },
			  wire, NULL) == one + 15,
	      "three records");
}

static void test_tls_not_client_hello(void)
{
	struct hello_fields f;
	size_t len;

	tls("application data record", &(struct hello){ .sni = "example.com", .content_type = 23 },
	    PEEK_INVALID, NULL);
	tls("alert record", &(struct hello){ .sni = "example.com", .content_type = 21 },
	    PEEK_INVALID, NULL);
	tls("ServerHello", &(struct hello){ .sni = "example.com", .handshake_type = 2 },
	    PEEK_INVALID, NULL);
	tls("Certificate", &(struct hello){ .sni = "example.com", .handshake_type = 11 },
	    PEEK_INVALID, NULL);
	tls("fragmented ServerHello",
	    &(struct hello){ .sni = "example.com", .handshake_type = 2, .fragment = 2 },
	    PEEK_INVALID, NULL);
	/* Decided as soon as the handshake header is there. */
	expect("ServerHello start", peek_tls_sni, "\x16\x03\x03\x00\x50\x02\x00\x00\x4c", 9,
	       PEEK_INVALID, NULL);
	expect("ClientHello start", peek_tls_sni, "\x16\x03\x01\x00\x50\x01\x00\x00\x4c", 9,
	       PEEK_MORE, NULL);

	len = build_hello(&(struct hello){ .sni = "example.com" }, wire, &f);
	/* Record version 2.x, length 0, length over 2^14. */
	wire[1] = 2;
	expect("record version 2", peek_tls_sni, wire, len, PEEK_INVALID, NULL);
	wire[1] = 3;
	wire[3] = wire[4] = 0;
	expect("record length 0", peek_tls_sni, wire, len, PEEK_INVALID, NULL);
	wire[3] = 0x40;
	wire[4] = 0x01;
	expect("record length 16385", peek_tls_sni, wire, len, PEEK_INVALID, NULL);

	/* A second record that is not a handshake. */
	len = build_hello(&(struct hello){ .sni = "example.com", .fragment = 50 }, wire, NULL);
	wire[55] = 23;
	expect("application data in the middle", peek_tls_sni, wire, len, PEEK_INVALID, NULL);
	wire[55] = 20;
	expect("change_cipher_spec in the middle", peek_tls_sni, wire, len, PEEK_INVALID, NULL);

	/* HTTP to the TLS parser. */
	expect("HTTP to the TLS parser", peek_tls_sni, "GET / HTTP/1.1\r\n", 16, PEEK_INVALID,
	       NULL);
}

/* Set the big-endian field of n bytes at off. */
static void set_be(uint8_t *p, size_t off, size_t n, uint32_t v)
{
	for (size_t i = 0; i < n; i++)
		p[off + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static uint32_t get_be(const uint8_t *p, size_t off, size_t n)
{
	uint32_t v = 0;

	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[off + i];
	return v;
}

/*
 * Change the length field of n bytes at off by delta, or set it to value when delta is 0, and
 * check the result on an exact-size copy.
 */
static void tweak(const char *what, size_t off, size_t n, int delta, uint32_t value,
		  enum peek_result want)
{
	struct hello_fields f;
	const struct hello h = { .sni = "example.com", .key_share = 300 };
	size_t len = build_hello(&h, wire, &f);
	char msg[128];

	set_be(wire, off, n, delta ? (uint32_t)((int64_t)get_be(wire, off, n) + delta) : value);
	snprintf(msg, sizeof(msg), "%s (%+d / 0x%x)", what, delta, value);
	expect(msg, peek_tls_sni, wire, len, want, NULL);
}

static void test_tls_bad_lengths(void)
{
	struct hello_fields f;

	build_hello(&(struct hello){ .sni = "example.com", .key_share = 300 }, wire, &f);

	/* Extension lengths. */
	tweak("server_name longer than the extensions", f.sni_ext_len, 2, 0, 0xffff,
	      PEEK_INVALID);
	tweak("server_name one byte long", f.sni_ext_len, 2, 1, 0, PEEK_INVALID);
	tweak("server_name one byte short", f.sni_ext_len, 2, -1, 0, PEEK_INVALID);
	tweak("server_name length 0", f.sni_ext_len, 2, 0, 0, PEEK_INVALID);
	tweak("server_name length 1", f.sni_ext_len, 2, 0, 1, PEEK_INVALID);
	/* The key share is the extension before server_name. */
	tweak("key_share longer than the extensions", f.key_share_len, 2, 0, 0xffff,
	      PEEK_INVALID);
	tweak("key_share one byte long", f.key_share_len, 2, 1, 0, PEEK_INVALID);

	/* The server name list. */
	tweak("SNI list longer than its extension", f.sni_list_len, 2, 1, 0, PEEK_INVALID);
	tweak("SNI list shorter than its extension", f.sni_list_len, 2, -1, 0, PEEK_INVALID);
	tweak("SNI list length 0xffff", f.sni_list_len, 2, 0, 0xffff, PEEK_INVALID);
	tweak("SNI list length 0, extension not", f.sni_list_len, 2, 0, 0, PEEK_INVALID);

	/* The name. */
	tweak("name past the end", f.sni_name_len, 2, 0, 0xffff, PEEK_INVALID);
	tweak("name one byte past its list", f.sni_name_len, 2, 1, 0, PEEK_INVALID);

	/* The extensions block, and the vectors before it. */
	tweak("extensions longer than the hello", f.exts_len, 2, 1, 0, PEEK_INVALID);
	tweak("extensions shorter than the hello", f.exts_len, 2, -1, 0, PEEK_INVALID);
	tweak("extensions length 0xffff", f.exts_len, 2, 0, 0xffff, PEEK_INVALID);
	tweak("compression methods past the end", f.compression_len, 1, 0, 0xff, PEEK_INVALID);
	tweak("cipher suites past the end", f.suites_len, 2, 0, 0xffff, PEEK_INVALID);
	tweak("session id past the end", f.session_len, 1, 0, 0xff, PEEK_INVALID);
	tweak("cipher suites one byte short", f.suites_len, 2, -1, 0, PEEK_INVALID);

	/* The handshake: too short for its contents, or longer than what is there. */
	tweak("handshake one byte short", f.handshake_len, 3, -1, 0, PEEK_INVALID);
	tweak("handshake of 10 bytes", f.handshake_len, 3, 0, 10, PEEK_INVALID);
	tweak("handshake of 0 bytes", f.handshake_len, 3, 0, 0, PEEK_INVALID);
	tweak("handshake one byte long", f.handshake_len, 3, 1, 0, PEEK_MORE);
	/* The record shorter than the handshake: wait for the next record. */
	tweak("record one byte short", f.record_len, 2, -1, 0, PEEK_MORE);
}

/*
 * Lengthen a field by k and all the fields inside it alike, so that only the outermost one runs
 * past its parent: into the 'z' bytes that follow the handshake message in its record. A parser
 * that read them would find "example.comz" (the parser copies the handshake into a buffer of
 * its own, where a sanitizer cannot see such a read); one that checks its bounds refuses it.
 */
static void grow(const char *what, unsigned levels, unsigned k, enum peek_result want,
		 const char *want_host)
{
	const struct hello h = { .sni = "example.com", .key_share = 100, .sni_last = true,
				 .trailing = 8 };
	struct hello_fields f;
	size_t len = build_hello(&h, wire, &f);
	/* From the inside out. */
	const size_t fields[][2] = { { f.sni_name_len, 2 }, { f.sni_list_len, 2 },
				     { f.sni_ext_len, 2 },  { f.exts_len, 2 },
				     { f.handshake_len, 3 } };
	char msg[128];

	for (unsigned i = 0; i < levels; i++)
		set_be(wire, fields[i][0], fields[i][1],
		       get_be(wire, fields[i][0], fields[i][1]) + k);
	snprintf(msg, sizeof(msg), "%s by %u", what, k);
	expect(msg, peek_tls_sni, wire, len, want, want_host);
}

static void test_tls_no_overread(void)
{
	/* The control: the trailing bytes are ignored, and readable when the lengths say so. */
	tls("trailing bytes", &(struct hello){ .sni = "example.com", .sni_last = true, .trailing = 8 },
	    PEEK_FOUND, "example.com");
	grow("everything", 5, 1, PEEK_FOUND, "example.comz");
	grow("everything", 5, 3, PEEK_FOUND, "example.comzzz");
	for (unsigned k = 1; k <= 3; k++) {
		grow("name past its list", 1, k, PEEK_INVALID, NULL);
		grow("SNI list past its extension", 2, k, PEEK_INVALID, NULL);
		grow("server_name past the extensions", 3, k, PEEK_INVALID, NULL);
		grow("extensions past the handshake", 4, k, PEEK_INVALID, NULL);
	}
}

/* A ClientHello of more than PEEK_MAX is refused; one that just fits is not. */
static void test_tls_oversized(void)
{
	struct hello h = { .sni = "example.com", .key_share = 1216 };
	size_t base, len;

	/* The handshake header says more than 16 KiB: refused as soon as it is seen. */
	h.padding = 20000;
	h.fragment = 16384;
	len = build_hello(&h, wire, NULL);
	expect("handshake of 20 KiB", peek_tls_sni, wire, 9, PEEK_INVALID, NULL);
	expect("handshake of 20 KiB", peek_tls_sni, wire, PEEK_MAX, PEEK_INVALID, NULL);
	expect("handshake of 20 KiB", peek_name, wire, PEEK_MAX, PEEK_INVALID, NULL);
	set_be(wire, 6, 3, 0xffffff);
	expect("handshake of 16 MiB", peek_tls_sni, wire, PEEK_MAX, PEEK_INVALID, NULL);

	/* One record holding a handshake that ends exactly at PEEK_MAX. */
	h.padding = 0;
	h.fragment = 0;
	base = build_hello(&h, wire, NULL);
	h.padding = PEEK_MAX - base - 4;
	len = build_hello(&h, wire, NULL);
	CHECK(len == PEEK_MAX, "built %zu bytes, want %d", len, PEEK_MAX);
	expect("ClientHello of exactly PEEK_MAX", peek_tls_sni, wire, len, PEEK_FOUND,
	       "example.com");
	expect("ClientHello of exactly PEEK_MAX", peek_name, wire, len, PEEK_FOUND, "example.com");

	/* One byte more: its end is past what a peek looks at. */
	h.padding++;
	len = build_hello(&h, wire, NULL);
	CHECK(len == PEEK_MAX + 1, "built %zu bytes, want %d", len, PEEK_MAX + 1);
	expect("ClientHello of PEEK_MAX + 1", peek_tls_sni, wire, PEEK_MAX, PEEK_INVALID, NULL);
	expect("ClientHello of PEEK_MAX + 1", peek_tls_sni, wire, PEEK_MAX - 1, PEEK_MORE, NULL);

	/*
	 * A handshake under 16 KiB in many small records, whose record headers push it past
	 * PEEK_MAX: the peek ends inside a record header, and that too is oversized.
	 */
	h.padding = 16000 - base;
	h.fragment = 100;
	len = build_hello(&h, wire, NULL);
	CHECK(len > PEEK_MAX && PEEK_MAX % 105 < 5, "built %zu bytes", len);
	expect("small records past PEEK_MAX", peek_tls_sni, wire, PEEK_MAX, PEEK_INVALID, NULL);
	expect("small records past PEEK_MAX", peek_name, wire, PEEK_MAX, PEEK_INVALID, NULL);
	expect("small records before PEEK_MAX", peek_tls_sni, wire, PEEK_MAX - 5, PEEK_MORE,
	       NULL);
	/* The same ending inside a record body, and at a record boundary. */
	h.fragment = 99;
	len = build_hello(&h, wire, NULL);
	expect("small records past PEEK_MAX", peek_tls_sni, wire, PEEK_MAX, PEEK_INVALID, NULL);
	h.fragment = 123; /* 16384 = 128 * (123 + 5) */
	len = build_hello(&h, wire, NULL);
	CHECK(len > PEEK_MAX, "built %zu bytes", len);
	expect("small records up to PEEK_MAX", peek_tls_sni, wire, PEEK_MAX, PEEK_INVALID, NULL);
}

static void test_dispatch(void)
{
	size_t len;

	expect("empty", peek_name, "", 0, PEEK_MORE, NULL);
	CHECK(peek_name(NULL, 0, host) == PEEK_MORE, "NULL, 0");
	expect("empty", peek_tls_sni, "", 0, PEEK_MORE, NULL);
	expect("empty", peek_http_host, "", 0, PEEK_MORE, NULL);
	/* 0x16 goes to the TLS parser, which waits; the HTTP parser would refuse it. */
	expect("0x16", peek_name, "\x16", 1, PEEK_MORE, NULL);
	expect("0x16", peek_http_host, "\x16", 1, PEEK_INVALID, NULL);
	expect("0x16 0x03", peek_name, "\x16\x03\x01\x02", 4, PEEK_MORE, NULL);
	expect("G", peek_name, "G", 1, PEEK_MORE, NULL);
	expect("GET /", peek_tls_sni, "GET /", 5, PEEK_INVALID, NULL);
	expect("TLS application data", peek_name, "\x17\x03\x03\x00\x10", 5, PEEK_INVALID, NULL);

	len = build_hello(&(struct hello){ .sni = "tls.example" }, wire, NULL);
	expect("ClientHello", peek_name, wire, len, PEEK_FOUND, "tls.example");
	expect("HTTP", peek_name, "GET / HTTP/1.1\r\nHost: http.example\r\n", 36, PEEK_FOUND,
	       "http.example");

	CHECK(strcmp(str(PEEK_MORE), "incomplete") == 0, "PEEK_MORE string");
	CHECK(strcmp(str(PEEK_FOUND), "found") == 0, "PEEK_FOUND string");
	CHECK(strcmp(str(PEEK_NO_NAME), "no name") == 0, "PEEK_NO_NAME string");
	CHECK(strcmp(str(PEEK_INVALID), "invalid") == 0, "PEEK_INVALID string");
}

/* xorshift64*: deterministic, so that a failure can be replayed. */
static uint64_t rng = 0x5eed5eed12345678ULL;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dULL;
}

static size_t rnd_below(size_t n)
{
	return n ? (size_t)(rnd() % n) : 0;
}

static double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A seed input, and for ClientHellos the offsets and sizes of its length fields. */
struct seed {
	uint8_t *d;
	size_t len;
	size_t fields[16], field_sizes[16], n_fields;
};

#define FUZZ_ITERATIONS 200000
#define FUZZ_SECONDS	60

static bool plausible(enum peek_result r, const char *h)
{
	const char *nul;

	if (r != PEEK_MORE && r != PEEK_FOUND && r != PEEK_NO_NAME && r != PEEK_INVALID)
		return false;
	if (r != PEEK_FOUND)
		return true;
	nul = memchr(h, 0, PEEK_HOST_MAX);
	if (!nul || nul == h)
		return false;
	for (const char *c = h; c < nul; c++)
		if (*c != tolower((unsigned char)*c))
			return false;
	return true;
}

/*
 * The caller acts on the first answer that is not PEEK_MORE: once a prefix of buf gives one, every
 * longer prefix must give the same, with the same host.
 */
static bool stable(const uint8_t *buf, size_t len)
{
	enum peek_result first = PEEK_MORE;
	char first_host[PEEK_HOST_MAX];

	for (size_t k = 0; k <= len; k++) {
		enum peek_result r = run(peek_name, buf, k);

		if (first == PEEK_MORE) {
			first = r;
			memcpy(first_host, host, PEEK_HOST_MAX);
		} else if (r != first || (r == PEEK_FOUND && strcmp(host, first_host) != 0)) {
			return false;
		}
	}
	return true;
}

static void add_seed(struct seed *s, size_t *n, const void *d, size_t len,
		     const struct hello_fields *f)
{
	struct seed *e = &s[(*n)++];

	e->d = malloc(len);
	if (!e->d)
		abort();
	memcpy(e->d, d, len);
	e->len = len;
	e->n_fields = 0;
	if (!f)
		return;
#define FIELD(name, size)                                                                          \
	do {                                                                                       \
		if (f->name) {                                                                     \
			e->fields[e->n_fields] = f->name;                                          \
			e->field_sizes[e->n_fields++] = size;                                      \
		}                                                                                  \
	} while (0)
	FIELD(record_len, 2);
	FIELD(handshake_len, 3);
	FIELD(session_len, 1);
	FIELD(suites_len, 2);
	FIELD(compression_len, 1);
	FIELD(exts_len, 2);
	FIELD(sni_ext_len, 2);
	FIELD(sni_list_len, 2);
	FIELD(sni_name_len, 2);
#undef FIELD
}

/* Mutate buf (len bytes, room for PEEK_MAX) once; returns the new length. */
static size_t mutate(uint8_t *buf, size_t len, const struct seed *s)
{
	size_t pos = rnd_below(len), n;

	switch (rnd_below(s->n_fields ? 8 : 7)) {
	case 0: /* flip a bit */
		if (len)
			buf[pos] ^= (uint8_t)(1u << rnd_below(8));
		return len;
	case 1: /* a random byte */
		if (len)
			buf[pos] = (uint8_t)rnd();
		return len;
	case 2: /* an interesting byte */
		if (len) {
			static const uint8_t bytes[] = { 0,   ' ', '\r', '\n', ':', '[',  ']',
							 '.', 'A', 0x16, 0x7f, 0xff, '\t', 1 };
			buf[pos] = bytes[rnd_below(sizeof(bytes))];
		}
		return len;
	case 3: /* truncate */
		return rnd_below(len + 1);
	case 4: /* delete a range */
		n = rnd_below(MIN(len - pos, 16) + 1);
		memmove(buf + pos, buf + pos + n, len - pos - n);
		return len - n;
	case 5: /* insert random bytes */
		n = rnd_below(MIN(PEEK_MAX - len, 8) + 1);
		memmove(buf + pos + n, buf + pos, len - pos);
		for (size_t i = 0; i < n; i++)
			buf[pos + i] = (uint8_t)rnd();
		return len + n;
	case 6: /* duplicate a range */
		n = rnd_below(MIN(MIN(len - pos, PEEK_MAX - len), 64) + 1);
		memmove(buf + pos + n, buf + pos, len - pos);
		return len + n;
	default: { /* tweak a length field */
		size_t k = rnd_below(s->n_fields), off = s->fields[k], size = s->field_sizes[k];
		static const int deltas[] = { -256, -3, -2, -1, 1, 2, 3, 256 };
		uint32_t v;

		if (off + size > len)
			return len;
		switch (rnd_below(3)) {
		case 0:
			v = get_be(buf, off, size) + (uint32_t)deltas[rnd_below(8)];
			break;
		case 1:
			v = (uint32_t)rnd();
			break;
		default:
			v = rnd_below(2) ? 0 : 0xffffffff;
			break;
		}
		set_be(buf, off, size, v);
		return len;
	}
	}
}

static void test_fuzz(void)
{
	static const char *requests[] = {
		"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"GET /a?b=c HTTP/1.1\r\nUser-Agent: x\r\nhost: \t[2001:DB8::1]:8080 \r\n\r\n",
		"POST /x HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nAccept: */*\r\nHOST: Example.Com.:443\r\n\r\n",
	};
	static const struct hello hellos[] = {
		{ .sni = "example.com" },
		{ .sni = "Example.COM", .key_share = 1216 },
		{ .sni = "example.com", .sni_other_first = true, .padding = 100 },
		{ .no_extensions = true },
		{ .key_share = 32 },
		{ .sni = "example.com", .fragment = 60 },
	};
	struct seed seeds[16];
	size_t n_seeds = 0, bad = 0, unstable = 0, i, found = 0, no_name = 0;
	uint8_t *buf = malloc(PEEK_MAX);
	double start = now_sec();

	if (!buf)
		abort();
	for (i = 0; i < sizeof(requests) / sizeof(requests[0]); i++)
		add_seed(seeds, &n_seeds, requests[i], strlen(requests[i]), NULL);
	for (i = 0; i < sizeof(hellos) / sizeof(hellos[0]); i++) {
		struct hello_fields f;
		size_t len = build_hello(&hellos[i], wire, &f);

		add_seed(seeds, &n_seeds, wire, len, hellos[i].fragment ? NULL : &f);
	}

	for (i = 0; i < FUZZ_ITERATIONS; i++) {
		static const peek_fn fns[] = { peek_name, peek_http_host, peek_tls_sni };
		size_t len;

		if ((i & 1023) == 0 && now_sec() - start > FUZZ_SECONDS) {
			printf("test-peek: fuzzing stopped after %zu iterations (%d s)\n", i,
			       FUZZ_SECONDS);
			break;
		}
		if (rnd_below(10) == 0) {
			/* Random bytes, half of them looking like a TLS record. */
			len = rnd_below(rnd_below(4) ? 64 : 2048);
			for (size_t j = 0; j < len; j++)
				buf[j] = (uint8_t)rnd();
			if (len && rnd_below(2))
				buf[0] = 0x16;
			if (len > 1 && rnd_below(2))
				buf[1] = 3;
		} else {
			const struct seed *s = &seeds[rnd_below(n_seeds)];
			unsigned m = 1 + (unsigned)rnd_below(4);

			memcpy(buf, s->d, s->len);
			len = s->len;
			for (unsigned k = 0; k < m; k++)
				len = mutate(buf, len, s);
		}
		for (size_t k = 0; k < 3; k++) {
			enum peek_result r = run(fns[k], buf, len);

			found += r == PEEK_FOUND;
			no_name += r == PEEK_NO_NAME;
			if (!plausible(r, host) && bad++ < 5)
				fprintf(stderr, "fuzz %zu: parser %zu: %d on '%s'\n", i, k, (int)r,
					escape(buf, len));
		}
		if (i % 16 == 0 && !stable(buf, len) && unstable++ < 5)
			fprintf(stderr, "fuzz %zu: answer changes with more bytes: '%s'\n", i,
				escape(buf, len));
	}
	CHECK(bad == 0, "fuzz: %zu implausible results", bad);
	CHECK(unstable == 0, "fuzz: %zu inputs whose answer changes with more bytes", unstable);
	/* The mutations keep enough inputs valid to reach the name parsing. */
	CHECK(found > i / 10 && no_name > 0, "fuzz: only %zu found, %zu no name in %zu", found,
	      no_name, i);
	for (i = 0; i < n_seeds; i++)
		free(seeds[i].d);
	free(buf);
}

int main(void)
{
	host = malloc(PEEK_HOST_MAX);
	wire = malloc(WIRE_MAX);
	if (!host || !wire)
		return 2;

	test_http_found();
	test_http_no_name();
	test_http_invalid();
	test_http_request_line();
	test_http_host_length();
	test_http_prefixes();
	test_http_oversized();
	test_tls_found();
	test_tls_no_name();
	test_tls_invalid_names();
	test_tls_name_length();
	test_tls_prefixes();
	test_tls_fragmented();
	test_tls_not_client_hello();
	test_tls_bad_lengths();
	test_tls_no_overread();
	test_tls_oversized();
	test_dispatch();
	test_fuzz();

	free(host);
	free(wire);
	printf("test-peek: %d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
