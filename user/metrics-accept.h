/* SPDX-License-Identifier: GPL-2.0 */
/* Content negotiation for GET /metrics (metrics-accept.c). */
#ifndef SR_METRICS_ACCEPT_H
#define SR_METRICS_ACCEPT_H

#include "metrics.h"

/*
 * The format an HTTP Accept header value asks for (NULL: no header): OpenMetrics when it accepts
 * application/openmetrics-text, version 1.x or 0.0.1 or none given, with a q above 0 and no lower
 * than text/plain's; else text.
 */
enum metrics_format metrics_format_from_accept(const char *accept);

#endif /* SR_METRICS_ACCEPT_H */
