/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Routes and backends: which backend a connection goes to. A route is a list of backends,
 * chosen by listener name (--route), by HTTP Host or TLS SNI (--route-host), or by default
 * (BACKEND arguments). Backends keep a passive health mark and their connection counts across
 * reloads.
 */
#ifndef SR_ROUTES_H
#define SR_ROUTES_H

#include "address.h"
#include "options.h"

/* More backends than this in one route are refused: a connection tracks them in a bitmask. */
#define ROUTE_BACKENDS_MAX 64

struct backend {
	unsigned n_ref;
	char *spec; /* as written in the options */
	struct sr_address addr;
	unsigned active;     /* connections using it now, for least-conn */
	unsigned fails;	     /* connect failures in a row */
	uint64_t skip_until; /* passive health: not tried before this (CLOCK_MONOTONIC µs) */
};

struct sr_backend_metrics;
struct sr_metrics_shared;

struct route {
	unsigned n_ref;
	char *key; /* listener name or host pattern; NULL for the default route */
	struct backend *backends[ROUTE_BACKENDS_MAX];
	/* The shared counters of each backend in this route (NULL: none; see metrics-table.h). */
	struct sr_backend_metrics *metrics[ROUTE_BACKENDS_MAX];
	size_t n_backends;
	unsigned next; /* round-robin position */
};

struct routes {
	struct sr_metrics_shared *metrics; /* where the routes count (NULL: nowhere) */
	struct route *fallback;		   /* the default route; it may have no backends */
	struct route **by_listener;
	size_t n_by_listener;
	struct route **by_host;
	size_t n_by_host;
	enum sr_balance balance;
	unsigned max_fails;
	uint64_t fail_timeout;
};

/*
 * Build the routes from the options. Backends with the same spec as one in old are reused, so
 * that their health and counts carry over a reload. Each backend of each route counts in table
 * (may be NULL). Errors are logged.
 */
int routes_new(const struct options *o, const struct routes *old, struct sr_metrics_shared *table,
	       struct routes **ret);
/* The shared counters of backend b in route rt, or NULL. */
struct sr_backend_metrics *route_metrics(const struct route *rt, const struct backend *b);
struct routes *routes_free(struct routes *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct routes *, routes_free);

/* Every --route must name an inherited socket, and every socket without one needs a default. */
struct listener;
int routes_check_listeners(const struct routes *r, const struct listener *l, size_t n);
/*
 * Log what connect() will meet at each Unix backend's path, so that a path the service can't
 * reach shows in the journal with the setting to change, instead of as empty replies later. A
 * socket that is not there yet is fine: whatever creates it may start later, and clients wait for
 * it up to --connect-timeout. Run it with the privileges that connect() will have.
 */
void routes_check_backends(const struct routes *r);

/* The route of a listener: its --route, or NULL when it uses the default (and host) routes. */
struct route *routes_for_listener(const struct routes *r, const char *name);
/* The route for a host name: an exact match first, then the longest *.domain; or NULL. */
struct route *routes_for_host(const struct routes *r, const char *host);

struct route *route_ref(struct route *rt);
struct route *route_unref(struct route *rt);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct route *, route_unref);
struct backend *backend_ref(struct backend *b);
struct backend *backend_unref(struct backend *b);

/*
 * Choose a backend of rt that is not in *tried, by the balance policy, preferring healthy
 * ones; mark it in *tried. NULL when all were tried.
 */
struct backend *route_pick(struct route *rt, const struct routes *r, uint64_t *tried, uint64_t now);
/* Record the result of a connect, for the passive health mark. */
void backend_report(struct backend *b, const struct routes *r, bool ok, uint64_t now);

#endif /* SR_ROUTES_H */
