/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Connection setup, before any byte moves: choose a route (by listener, or by peeking at the
 * client's Host or SNI), connect to one of its backends with failover and backoff, and send
 * the PROXY protocol header. Then connection_start() takes over.
 */
#ifndef SR_SETUP_H
#define SR_SETUP_H

#include "connection.h"
#include "peek.h"

struct listener;
struct options;
struct routes;

struct setup {
	struct connections conns;

	/* The owner's options and routes, both replaced by a reload (setup_configure()). */
	const struct options *opts;
	struct routes *routes;

	uint8_t peek_buf[PEEK_MAX]; /* one connection peeks at a time: the loop is single-threaded */
	unsigned n_waiting_fd;	    /* connections waiting for an fd to connect to their backend */

	/* Connect failures are logged once per burst, then counted. */
	uint64_t connect_fail_logged_at;
	unsigned connect_fail_suppressed;

	/* The owner's: a connection waiting for an fd got one, or gave up (n_waiting_fd fell). */
	void (*fds_back)(struct setup *s);
};

/* Set up s->conns (see connections_init()) and take the events of connections in setup. */
int setup_init(struct setup *s, sd_event *e);
/* Use these options and routes for connections accepted from now on; they stay the caller's. */
void setup_configure(struct setup *s, const struct options *o, struct routes *r);
/* Take ownership of a client socket accepted on listener l, and start setting it up. */
int setup_accepted(struct setup *s, int client_fd, const struct listener *l);

#endif /* SR_SETUP_H */
