/* SPDX-License-Identifier: GPL-2.0 */
/*
 * GET /metrics over HTTP/1.x, on a listening socket, in an sd-event loop. Made for clients that
 * may be hostile: each scrape reads at most METRICS_REQUEST_MAX bytes of request, has
 * METRICS_REQUEST_TIMEOUT from accept to the end of its reply, and at most METRICS_MAX_SCRAPES
 * are served at once (the others wait in the listener's backlog). One request per connection.
 */
#ifndef SR_METRICS_HTTP_H
#define SR_METRICS_HTTP_H

#include <stdio.h>
#include <systemd/sd-event.h>

#include "metrics-request.h"
#include "util.h"

#define METRICS_MAX_SCRAPES	4
#define METRICS_REQUEST_TIMEOUT (5 * USEC_PER_SEC)

struct metrics_server;

/*
 * Write the body for fmt to f (an open_memstream or similar FILE the server owns). Returns 0, or
 * a negative errno: the scrape then gets 500.
 */
typedef int (*metrics_render_t)(FILE *f, enum metrics_format fmt, void *userdata);

/*
 * Serve GET /metrics on listen_fd (a listening stream socket, non-blocking; not owned: the caller
 * closes it after freeing the server).
 */
int metrics_server_new(sd_event *e, int listen_fd, metrics_render_t render, void *userdata,
		       struct metrics_server **ret);
/* Closes the scrapes under way, unanswered. */
struct metrics_server *metrics_server_free(struct metrics_server *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct metrics_server *, metrics_server_free);

/*
 * Test hook: the time from accept to the end of the reply for scrapes accepted from now on,
 * instead of METRICS_REQUEST_TIMEOUT, so that a test of the deadline doesn't wait 5 s.
 */
void metrics_server_set_timeout(struct metrics_server *s, uint64_t usec);

#endif /* SR_METRICS_HTTP_H */
