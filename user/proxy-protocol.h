/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The PROXY protocol header (HAProxy's spec, v1 text and v2 binary), sent to the backend before
 * any client byte so that a backend behind --network=none learns the client's address.
 */
#ifndef SR_PROXY_PROTOCOL_H
#define SR_PROXY_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The longest header we write: v1 with two IPv6 addresses is 104 bytes, v2 with IPv6 52. */
#define PROXY_HEADER_MAX 108

/*
 * Encode the header for a connection from src to dst (the client's address, and the address
 * it connected to). Addresses that are not IPv4 or IPv6 (a Unix listener) give "PROXY UNKNOWN"
 * in v1 and the LOCAL command with AF_UNSPEC in v2. IPv4-mapped IPv6 addresses are sent as
 * IPv4. Returns the length, or -EINVAL.
 */
int proxy_header_encode(unsigned version, const struct sockaddr *src, const struct sockaddr *dst,
			uint8_t *buf, size_t size);

/* The same for a connected socket, from getpeername() and getsockname(). */
int proxy_header_for_socket(unsigned version, int fd, uint8_t *buf, size_t size);

#endif /* SR_PROXY_PROTOCOL_H */
