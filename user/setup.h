/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Connection setup, before any byte moves: choose a route (by listener, or by peeking at the
 * client's Host or SNI), connect to one of its backends with failover and backoff, and send
 * the PROXY protocol header.
 */
#ifndef SR_SETUP_H
#define SR_SETUP_H

#include "connection.h"

/* Take ownership of an accepted client socket from listener l and start setting it up. */
int connection_new(struct proxy *p, int client_fd, const struct listener *l);
/* An event for a connection still in setup: e is the socket (NULL for the timer). */
void setup_run(struct connection *c, struct end *e, uint32_t revents);
/* Drop what setup holds (route and backend references), when the connection is freed. */
void setup_done(struct connection *c);

#endif /* SR_SETUP_H */
