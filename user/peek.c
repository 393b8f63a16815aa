// SPDX-License-Identifier: GPL-2.0
/*
 * Host and SNI peeking. Every read is bounds-checked against the bytes actually there: these
 * parsers see whatever a client sends.
 */
#include <ctype.h>
#include <string.h>

#include "peek.h"
#include "util.h"

/* TLS record and handshake constants (RFC 8446). */
#define TLS_RECORD_HEADER     5
#define TLS_CONTENT_HANDSHAKE 22
#define TLS_HANDSHAKE_HEADER  4
#define TLS_CLIENT_HELLO      1
#define TLS_EXT_SERVER_NAME   0
#define TLS_SNI_HOST_NAME     0

const char *peek_result_to_string(enum peek_result r)
{
	switch (r) {
	case PEEK_MORE:
		return "incomplete";
	case PEEK_FOUND:
		return "found";
	case PEEK_NO_NAME:
		return "no name";
	case PEEK_INVALID:
		return "invalid";
	}
	return "?";
}

/*
 * Copy a host name into host: lowercase, without a trailing dot, checked to be a plausible DNS
 * name or IP literal. Returns PEEK_FOUND or PEEK_INVALID.
 */
static enum peek_result set_host(const char *s, size_t n, char *host)
{
	if (n > 0 && s[n - 1] == '.')
		n--;
	if (n == 0 || n >= PEEK_HOST_MAX)
		return PEEK_INVALID;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!isalnum(c) && c != '-' && c != '.' && c != '_' && c != ':' && c != '[' &&
		    c != ']')
			return PEEK_INVALID;
		/* No empty label: ".a", "a..b", and "a.." (whose trailing dot would be left). */
		if (c == '.' && (i == 0 || i == n - 1 || s[i - 1] == '.'))
			return PEEK_INVALID;
		host[i] = (char)tolower(c);
	}
	host[n] = 0;
	return PEEK_FOUND;
}

static const uint8_t *find_crlf(const uint8_t *p, const uint8_t *end)
{
	for (; p + 1 < end; p++)
		if (p[0] == '\r' && p[1] == '\n')
			return p;
	return NULL;
}

static bool is_token_char(uint8_t c)
{
	return c > ' ' && c < 127 && !strchr("()<>@,;:\\\"/[]?={}", c);
}

enum peek_result peek_http_request_line(const uint8_t *buf, size_t len, size_t *ret_len)
{
	const uint8_t *end = buf + len, *eol, *sp1, *sp2;
	size_t i;

	/* The method: a token, checked as it arrives so that garbage is refused early. */
	for (i = 0; i < len && buf[i] != ' '; i++)
		if (!is_token_char(buf[i]) || i >= 32)
			return PEEK_INVALID;
	eol = find_crlf(buf, end);
	if (!eol)
		return len >= PEEK_MAX ? PEEK_INVALID : PEEK_MORE;

	sp1 = memchr(buf, ' ', (size_t)(eol - buf));
	if (!sp1 || sp1 == buf)
		return PEEK_INVALID;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
	if (!sp2 || sp2 == sp1 + 1)
		return PEEK_INVALID;
	if (eol - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
	    (sp2[8] != '0' && sp2[8] != '1'))
		return PEEK_INVALID;
	*ret_len = (size_t)(eol + 2 - buf);
	return PEEK_FOUND;
}

/*
 * The request line, then header lines until an empty one. The Host: value decides as soon as
 * its line is complete.
 */
enum peek_result peek_http_host(const uint8_t *buf, size_t len, char *host)
{
	const uint8_t *p, *end = buf + len, *eol;
	enum peek_result r;
	size_t line;

	r = peek_http_request_line(buf, len, &line);
	if (r != PEEK_FOUND)
		return r;

	for (p = buf + line;; p = eol + 2) {
		const uint8_t *colon, *v, *vend;

		eol = find_crlf(p, end);
		if (!eol)
			return len >= PEEK_MAX ? PEEK_INVALID : PEEK_MORE;
		if (eol == p)
			return PEEK_NO_NAME; /* end of the headers: HTTP/1.0 without Host */
		colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || colon == p)
			return PEEK_INVALID;
		for (const uint8_t *c = p; c < colon; c++)
			if (!is_token_char(*c))
				return PEEK_INVALID;
		if (colon - p != 4 || strncasecmp((const char *)p, "host", 4) != 0)
			continue;

		v = colon + 1;
		vend = eol;
		while (v < vend && (*v == ' ' || *v == '\t'))
			v++;
		while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
			vend--;
		/* Drop a port: "name:8080" or "[v6]:8080". */
		if (v < vend && *v == '[') {
			const uint8_t *rb = memchr(v, ']', (size_t)(vend - v));

			if (!rb)
				return PEEK_INVALID;
			vend = rb + 1;
		} else {
			const uint8_t *c = memchr(v, ':', (size_t)(vend - v));

			if (c)
				vend = c;
		}
		return set_host((const char *)v, (size_t)(vend - v), host);
	}
}

static uint32_t be16(const uint8_t *p)
{
	return (uint32_t)p[0] << 8 | p[1];
}

static uint32_t be24(const uint8_t *p)
{
	return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

/* A reader over a byte range that refuses to step past its end. */
struct cursor {
	const uint8_t *p, *end;
};

static bool take(struct cursor *c, size_t n, const uint8_t **ret)
{
	if ((size_t)(c->end - c->p) < n)
		return false;
	if (ret)
		*ret = c->p;
	c->p += n;
	return true;
}

/* A vector with a length prefix of lenlen bytes: *ret spans its body. */
static bool take_vector(struct cursor *c, size_t lenlen, struct cursor *ret)
{
	const uint8_t *l;
	size_t n;

	if (!take(c, lenlen, &l))
		return false;
	n = lenlen == 1 ? l[0] : lenlen == 2 ? be16(l) : be24(l);
	if (!take(c, n, &ret->p))
		return false;
	ret->end = ret->p + n;
	return true;
}

static enum peek_result parse_client_hello(struct cursor *h, char *host)
{
	struct cursor session, suites, compression, exts;

	if (!take(h, 2 + 32, NULL) || /* legacy_version, random */
	    !take_vector(h, 1, &session) || !take_vector(h, 2, &suites) ||
	    !take_vector(h, 1, &compression))
		return PEEK_INVALID;
	if (h->p == h->end)
		return PEEK_NO_NAME; /* no extensions at all */
	if (!take_vector(h, 2, &exts) || h->p != h->end)
		return PEEK_INVALID;

	while (exts.p < exts.end) {
		struct cursor body, list;
		const uint8_t *type;

		if (!take(&exts, 2, &type) || !take_vector(&exts, 2, &body))
			return PEEK_INVALID;
		if (be16(type) != TLS_EXT_SERVER_NAME)
			continue;
		if (!take_vector(&body, 2, &list) || body.p != body.end)
			return PEEK_INVALID;
		while (list.p < list.end) {
			const uint8_t *name_type;
			struct cursor name;

			if (!take(&list, 1, &name_type) || !take_vector(&list, 2, &name))
				return PEEK_INVALID;
			if (*name_type == TLS_SNI_HOST_NAME)
				return set_host((const char *)name.p, (size_t)(name.end - name.p),
						host);
		}
		return PEEK_NO_NAME;
	}
	return PEEK_NO_NAME;
}

/*
 * A ClientHello may span several TLS records: gather the handshake bytes of consecutive
 * handshake records (at most PEEK_MAX in all) until the whole message is there.
 */
enum peek_result peek_tls_sni(const uint8_t *buf, size_t len, char *host)
{
	uint8_t hs[PEEK_MAX];
	size_t hs_len = 0, off = 0, need = 0;

	while (off < len) {
		size_t rec_len, avail;

		if (len - off < TLS_RECORD_HEADER)
			return len >= PEEK_MAX ? PEEK_INVALID : PEEK_MORE;
		if (buf[off] != TLS_CONTENT_HANDSHAKE || buf[off + 1] != 3)
			return PEEK_INVALID;
		rec_len = be16(buf + off + 3);
		if (rec_len == 0 || rec_len > 16384)
			return PEEK_INVALID;
		off += TLS_RECORD_HEADER;
		avail = MIN(rec_len, len - off);
		if (hs_len + avail > sizeof(hs))
			return PEEK_INVALID;
		memcpy(hs + hs_len, buf + off, avail);
		hs_len += avail;
		off += avail;

		if (need == 0 && hs_len >= TLS_HANDSHAKE_HEADER) {
			if (hs[0] != TLS_CLIENT_HELLO)
				return PEEK_INVALID;
			need = TLS_HANDSHAKE_HEADER + be24(hs + 1);
			if (need > sizeof(hs))
				return PEEK_INVALID; /* oversized */
		}
		if (need && hs_len >= need) {
			struct cursor h = { hs + TLS_HANDSHAKE_HEADER, hs + need };

			return parse_client_hello(&h, host);
		}
		if (avail < rec_len)
			return len >= PEEK_MAX ? PEEK_INVALID : PEEK_MORE;
	}
	return len >= PEEK_MAX ? PEEK_INVALID : PEEK_MORE;
}

enum peek_result peek_name(const uint8_t *buf, size_t len, char *host)
{
	if (len == 0)
		return PEEK_MORE;
	/* A TLS record starts with content type 22; no HTTP method starts with that byte. */
	if (buf[0] == TLS_CONTENT_HANDSHAKE)
		return peek_tls_sni(buf, len, host);
	return peek_http_host(buf, len, host);
}
