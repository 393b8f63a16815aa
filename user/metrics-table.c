// SPDX-License-Identifier: GPL-2.0
/* The shared table of per route and backend counters (see metrics-table.h). */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"
#include "metrics-table.h"
#include "stats.h"

int metrics_table_new(struct sr_metrics_shared **ret)
{
	void *mem;

	/* Anonymous and shared: zeroed, and the same pages in every worker forked later. */
	mem = mmap(NULL, sizeof(struct sr_metrics_shared), PROT_READ | PROT_WRITE,
		   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return negative_errno();
	*ret = mem;
	return 0;
}

void metrics_table_free(struct sr_metrics_shared *t)
{
	if (t)
		munmap(t, sizeof(*t));
}

static void table_lock(struct sr_metrics_shared *t)
{
	/* Held for a few string compares, only when routes are built: spinning is fine. */
	while (__atomic_exchange_n(&t->lock, 1, __ATOMIC_ACQUIRE))
		;
}

static void table_unlock(struct sr_metrics_shared *t)
{
	__atomic_store_n(&t->lock, 0, __ATOMIC_RELEASE);
}

struct sr_backend_metrics *metrics_table_slot(struct sr_metrics_shared *t, const char *route,
					      const char *backend)
{
	struct sr_backend_metrics *m = NULL;

	if (!t)
		return NULL;
	table_lock(t);
	for (uint32_t i = 0; i < t->n_backends; i++)
		if (strncmp(t->backends[i].route, route, SR_METRICS_ROUTE_MAX - 1) == 0 &&
		    strncmp(t->backends[i].backend, backend, SR_METRICS_BACKEND_MAX - 1) == 0) {
			m = &t->backends[i];
			break;
		}
	if (!m && t->n_backends < SR_METRICS_BACKENDS) {
		m = &t->backends[t->n_backends];
		snprintf(m->route, sizeof(m->route), "%s", route);
		snprintf(m->backend, sizeof(m->backend), "%s", backend);
		/* Readers take only the first n_backends, and only slots marked used. */
		__atomic_store_n(&m->used, 1, __ATOMIC_RELEASE);
		__atomic_store_n(&t->n_backends, t->n_backends + 1, __ATOMIC_RELEASE);
	}
	if (!m && !__atomic_exchange_n(&t->full, 1, __ATOMIC_RELAXED))
		log_warning("More than %d route and backend pairs: backend %s of route %s, and any "
			    "further ones, have no per-backend metrics.",
			    SR_METRICS_BACKENDS, backend, route);
	table_unlock(t);
	return m;
}

void metrics_table_observe_connect(struct sr_metrics_shared *t, uint64_t usec)
{
	static const uint64_t bounds[SR_CONNECT_BUCKETS] = SR_CONNECT_BUCKETS_USEC;
	size_t i = 0;

	if (!t)
		return;
	while (i < SR_CONNECT_BUCKETS && usec > bounds[i])
		i++;
	stat_inc(t->connect_buckets[i]);
	stat_add(t->connect_sum_usec, usec);
	stat_inc(t->connect_count);
}
