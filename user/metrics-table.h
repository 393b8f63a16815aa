/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Per route and backend counters, and the histogram of connect durations, in one page set
 * shared by every worker (a MAP_SHARED mapping made before they fork). The /metrics endpoint
 * reads it; a count is an atomic add, as in sr_proxy_stats.
 */
#ifndef SR_METRICS_TABLE_H
#define SR_METRICS_TABLE_H

#include <stdint.h>

/* Route and backend pairs with counters; more are served, but not counted (said once). */
#define SR_METRICS_BACKENDS 256
/* Label bytes: "listener:" or "host:" and a 255-byte name; a backend spec is a Unix path at most. */
#define SR_METRICS_ROUTE_MAX   272
#define SR_METRICS_BACKEND_MAX 128

/* Upper bounds of the connect duration buckets, in µs; a last, +Inf bucket follows. */
#define SR_CONNECT_BUCKETS_USEC                                                               \
	{                                                                                     \
		100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, \
			1000000, 2500000, 5000000                                             \
	}
#define SR_CONNECT_BUCKETS 15

/* The counters of one backend of one route. */
struct sr_backend_metrics {
	char route[SR_METRICS_ROUTE_MAX];     /* "default", "listener:NAME" or "host:PATTERN" */
	char backend[SR_METRICS_BACKEND_MAX]; /* the backend as configured */
	uint64_t open;			      /* connections to it now, from connect to close */
	uint64_t connect_failures;	      /* failed connect attempts */
	uint64_t down_until; /* passive health: marked down until this CLOCK_MONOTONIC µs */
	uint32_t used;	     /* set last: the labels above are complete */
};

struct sr_metrics_shared {
	uint32_t lock;	     /* held while a slot is claimed (a reload in some worker) */
	uint32_t n_backends; /* slots claimed: backends[0..n_backends) */
	uint32_t full;	     /* 1: a route and backend pair found no free slot */
	/* Connect durations, from accept (or the end of the peek) to a connected backend. */
	uint64_t connect_buckets[SR_CONNECT_BUCKETS + 1]; /* per bucket, not cumulative */
	uint64_t connect_count;
	uint64_t connect_sum_usec;
	struct sr_backend_metrics backends[SR_METRICS_BACKENDS];
};

/* Map the table, shared with the processes forked after this. */
int metrics_table_new(struct sr_metrics_shared **ret);
void metrics_table_free(struct sr_metrics_shared *t);
/*
 * The counters of backend in route, made if there are none yet: every worker that builds the
 * same route gets the same ones. NULL when the table is full (logged once).
 */
struct sr_backend_metrics *metrics_table_slot(struct sr_metrics_shared *t, const char *route,
					      const char *backend);
/* A connect that took usec. */
void metrics_table_observe_connect(struct sr_metrics_shared *t, uint64_t usec);

#endif /* SR_METRICS_TABLE_H */
