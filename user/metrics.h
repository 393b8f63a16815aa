/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The counters as Prometheus text (0.0.4) or OpenMetrics 1.0: what GET /metrics serves, and
 * `sockredir stats --format=openmetrics` prints. Rendering only: the caller reads the counters.
 */
#ifndef SR_METRICS_H
#define SR_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct sr_proxy_stats;
struct sr_kstats;
struct sr_metrics_shared;

enum metrics_format {
	METRICS_TEXT,
	METRICS_OPENMETRICS,
};

/* The counters of one instance. */
struct metrics_input {
	/*
	 * NULL: no label. Else name="INSTANCE" comes first on every sample of this input, so that
	 * several instances fit in one exposition (`sockredir stats`). Not "instance": Prometheus
	 * gives that label to every target it scrapes, and renames a sample's own to
	 * exported_instance.
	 */
	const char *instance;
	const struct sr_proxy_stats *proxy; /* required; may be the live shared page */
	const struct sr_kstats *kernel;	    /* NULL: no kernel path; its families are left out */
	const struct sr_metrics_shared *shared; /* NULL: no per-backend families and no histogram */
	const char *version; /* SR_VERSION; NULL: no version label (a reader that can't know it) */
	uint64_t now;	     /* CLOCK_MONOTONIC µs (now_usec()), for backend_up */
};

/*
 * Write every family to f once, HELP and TYPE first, then its samples from each of the n inputs
 * in turn; a family no input has (the kernel path's, the per-backend ones) is left out.
 * OpenMetrics ends with "# EOF". Returns 0 or negative errno (a write error).
 */
int metrics_write(FILE *f, const struct metrics_input *in, size_t n, enum metrics_format fmt);
/* "text/plain; version=0.0.4; charset=utf-8" or "application/openmetrics-text; ...". */
const char *metrics_content_type(enum metrics_format fmt);

#endif /* SR_METRICS_H */
