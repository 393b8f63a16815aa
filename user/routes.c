// SPDX-License-Identifier: GPL-2.0
/* Routes, backends, balancing and passive health. */
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "listen.h"
#include "log.h"
#include "metrics-table.h"
#include "routes.h"

struct backend *backend_ref(struct backend *b)
{
	if (b)
		b->n_ref++;
	return b;
}

struct backend *backend_unref(struct backend *b)
{
	if (!b || --b->n_ref > 0)
		return NULL;
	free(b->spec);
	free(b);
	return NULL;
}

struct route *route_ref(struct route *rt)
{
	if (rt)
		rt->n_ref++;
	return rt;
}

struct route *route_unref(struct route *rt)
{
	if (!rt || --rt->n_ref > 0)
		return NULL;
	for (size_t i = 0; i < rt->n_backends; i++)
		backend_unref(rt->backends[i]);
	free(rt->key);
	free(rt);
	return NULL;
}

static struct backend *find_backend(const struct route *rt, const char *spec)
{
	for (size_t i = 0; rt && i < rt->n_backends; i++)
		if (streq(rt->backends[i]->spec, spec))
			return rt->backends[i];
	return NULL;
}

/* A backend of the old routes with this spec, so that its state survives a reload. */
static struct backend *old_backend(const struct routes *old, const char *spec)
{
	struct backend *b;

	if (!old)
		return NULL;
	b = find_backend(old->fallback, spec);
	for (size_t i = 0; !b && i < old->n_by_listener; i++)
		b = find_backend(old->by_listener[i], spec);
	for (size_t i = 0; !b && i < old->n_by_host; i++)
		b = find_backend(old->by_host[i], spec);
	return b;
}

static void backend_check_reachable(const struct backend *b)
{
	bool dir_missing;
	int r;

	r = backend_check_path(&b->addr, &dir_missing);
	if (r == 0)
		return;
	if (r == -ENOENT && !dir_missing) {
		log_notice("Backend %s does not exist yet: clients wait for it up to the "
			   "--connect-timeout.",
			   b->spec);
		return;
	}
	if (r == -ENOTSOCK) {
		log_warning("Backend %s is not a socket: connections to it will fail.", b->spec);
		return;
	}
	if (r == -EACCES || r == -EPERM)
		log_warning_errno(r,
				  "Backend %s can't be reached: %m. The socket file needs write "
				  "permission for sockredir's user (uid %u), and every directory "
				  "above it search permission. Under systemd, check User= and the "
				  "sandbox: ProtectHome= hides /home, /root and /run/user.",
				  b->spec, (unsigned)geteuid());
	else if (r == -ENOENT)
		log_warning("Backend %s: its directory does not exist. Under systemd, the "
			    "sandbox may hide it: ProtectHome= hides /home, /root and /run/user, "
			    "PrivateTmp= gives the service a /tmp of its own.",
			    b->spec);
	else
		log_warning_errno(r, "Backend %s can't be checked: %m.", b->spec);
}

static int route_add_backend(struct route *rt, const struct routes *old, const char *spec)
{
	struct backend *b;
	const char *reason = NULL;
	int r;

	if (find_backend(rt, spec))
		return 0; /* listed twice: once is enough */
	if (rt->n_backends >= ROUTE_BACKENDS_MAX)
		return log_error_errno(E2BIG, "Route %s: more than %d backends.",
				       rt->key ? rt->key : "(default)", ROUTE_BACKENDS_MAX);

	b = old_backend(old, spec);
	if (b) {
		rt->backends[rt->n_backends++] = backend_ref(b);
		return 0;
	}
	b = calloc(1, sizeof(*b));
	if (!b)
		return log_error_errno(ENOMEM, "Out of memory.");
	b->n_ref = 1;
	b->spec = strdup(spec);
	/* Parsed once already when the options were read; a name may resolve differently now. */
	r = address_parse(spec, ADDRESS_BACKEND, &b->addr, &reason);
	if (!b->spec || r < 0) {
		backend_unref(b);
		if (r < 0)
			return log_error_errno(r, "Invalid backend '%s': %s.", spec, reason);
		return log_error_errno(ENOMEM, "Out of memory.");
	}
	rt->backends[rt->n_backends++] = b;
	return 0;
}

static int route_new(const char *key, struct route **ret)
{
	struct route *rt = calloc(1, sizeof(*rt));

	if (!rt)
		return -ENOMEM;
	rt->n_ref = 1;
	if (key && !(rt->key = strdup(key))) {
		free(rt);
		return -ENOMEM;
	}
	*ret = rt;
	return 0;
}

/* Add spec to the route keyed key in list (created if new). */
static int routes_add(struct route ***list, size_t *n, const struct routes *old, const char *key,
		      const char *spec)
{
	struct route *rt = NULL, **nl;
	int r;

	for (size_t i = 0; i < *n; i++)
		if (streq((*list)[i]->key, key))
			rt = (*list)[i];
	if (!rt) {
		r = route_new(key, &rt);
		if (r < 0)
			return log_error_errno(r, "Out of memory.");
		nl = realloc(*list, (*n + 1) * sizeof(*nl));
		if (!nl) {
			route_unref(rt);
			return log_error_errno(ENOMEM, "Out of memory.");
		}
		nl[(*n)++] = rt;
		*list = nl;
	}
	return route_add_backend(rt, old, spec);
}

/*
 * Each backend of each route counts in the slot named by the route's label ("default",
 * "listener:NAME" or "host:PATTERN") and its spec: the same slot in every worker, and across
 * reloads that keep the pair.
 */
static void route_attach_metrics(struct route *rt, struct sr_metrics_shared *table,
				 const char *kind)
{
	char label[SR_METRICS_ROUTE_MAX];

	snprintf(label, sizeof(label), "%s%s", kind, rt->key ?: "");
	for (size_t i = 0; i < rt->n_backends; i++)
		rt->metrics[i] = metrics_table_slot(table, label, rt->backends[i]->spec);
}

struct sr_backend_metrics *route_metrics(const struct route *rt, const struct backend *b)
{
	for (size_t i = 0; i < rt->n_backends; i++)
		if (rt->backends[i] == b)
			return rt->metrics[i];
	return NULL;
}

int routes_new(const struct options *o, const struct routes *old, struct sr_metrics_shared *table,
	       struct routes **ret)
{
	_cleanup_(routes_freep) struct routes *r = NULL;
	int k;

	r = calloc(1, sizeof(*r));
	if (!r)
		return log_error_errno(ENOMEM, "Out of memory.");
	r->metrics = table;
	r->balance = o->balance;
	r->max_fails = o->max_fails;
	r->fail_timeout = o->fail_timeout;

	k = route_new(NULL, &r->fallback);
	if (k < 0)
		return log_error_errno(k, "Out of memory.");
	for (size_t i = 0; i < o->n_backends; i++) {
		k = route_add_backend(r->fallback, old, o->backends[i]);
		if (k < 0)
			return k;
	}
	for (size_t i = 0; i < o->n_routes; i++) {
		k = routes_add(&r->by_listener, &r->n_by_listener, old, o->routes[i].key,
			       o->routes[i].backend);
		if (k < 0)
			return k;
	}
	for (size_t i = 0; i < o->n_host_routes; i++) {
		k = routes_add(&r->by_host, &r->n_by_host, old, o->host_routes[i].key,
			       o->host_routes[i].backend);
		if (k < 0)
			return k;
	}

	route_attach_metrics(r->fallback, table, "default");
	for (size_t i = 0; i < r->n_by_listener; i++)
		route_attach_metrics(r->by_listener[i], table, "listener:");
	for (size_t i = 0; i < r->n_by_host; i++)
		route_attach_metrics(r->by_host[i], table, "host:");
	*ret = TAKE_PTR(r);
	return 0;
}

struct routes *routes_free(struct routes *r)
{
	if (!r)
		return NULL;
	route_unref(r->fallback);
	for (size_t i = 0; i < r->n_by_listener; i++)
		route_unref(r->by_listener[i]);
	for (size_t i = 0; i < r->n_by_host; i++)
		route_unref(r->by_host[i]);
	free(r->by_listener);
	free(r->by_host);
	free(r);
	return NULL;
}

int routes_check_listeners(const struct routes *r, const struct listener *l, size_t n)
{
	for (size_t i = 0; i < r->n_by_listener; i++) {
		bool found = false;

		for (size_t j = 0; j < n && !found; j++)
			found = streq(l[j].name, r->by_listener[i]->key);
		if (!found)
			return log_error_errno(EINVAL,
					       "--route %s: no inherited socket is named '%s' "
					       "(set FileDescriptorName= in the socket unit, or "
					       "--fdname= with systemd-socket-activate).",
					       r->by_listener[i]->key, r->by_listener[i]->key);
	}
	if (r->fallback->n_backends > 0)
		return 0;
	for (size_t j = 0; j < n; j++)
		if (!routes_for_listener(r, l[j].name))
			return log_error_errno(EINVAL,
					       "Socket '%s' has no --route and there is no default "
					       "BACKEND.",
					       l[j].name);
	return 0;
}

struct route *routes_for_listener(const struct routes *r, const char *name)
{
	for (size_t i = 0; i < r->n_by_listener; i++)
		if (streq(r->by_listener[i]->key, name))
			return r->by_listener[i];
	return NULL;
}

struct route *routes_for_host(const struct routes *r, const char *host)
{
	struct route *best = NULL;
	size_t best_len = 0, hlen = strlen(host);

	for (size_t i = 0; i < r->n_by_host; i++) {
		const char *key = r->by_host[i]->key;

		if (streq(key, host))
			return r->by_host[i];
		/* "*.example.com" matches any name that ends in ".example.com", not the bare one. */
		if (key[0] == '*') {
			size_t klen = strlen(key) - 1; /* ".example.com" */

			if (hlen > klen && streq(host + hlen - klen, key + 1) && klen > best_len) {
				best = r->by_host[i];
				best_len = klen;
			}
		}
	}
	return best;
}

static bool backend_healthy(const struct backend *b, uint64_t now)
{
	return b->skip_until <= now;
}

struct backend *route_pick(struct route *rt, const struct routes *r, uint64_t *tried, uint64_t now)
{
	struct backend *best = NULL;
	size_t best_i = 0;

	/*
	 * Two passes: healthy backends first; only when none is left are those marked down
	 * tried too, since a route with every backend marked down must still try one.
	 */
	for (int pass = 0; pass < 2 && !best; pass++) {
		for (size_t k = 0; k < rt->n_backends; k++) {
			/* Round-robin starts at the route's position; least-conn scans all. */
			size_t i = (rt->next + k) % rt->n_backends;
			struct backend *b = rt->backends[i];

			if (*tried & (1ULL << i))
				continue;
			if (pass == 0 && !backend_healthy(b, now))
				continue;
			if (!best ||
			    (r->balance == SR_BALANCE_LEAST_CONN && b->active < best->active)) {
				best = b;
				best_i = i;
			}
			if (r->balance == SR_BALANCE_ROUND_ROBIN)
				break;
		}
	}
	if (!best)
		return NULL;
	*tried |= 1ULL << best_i;
	if (r->balance == SR_BALANCE_ROUND_ROBIN)
		rt->next = (unsigned)((best_i + 1) % rt->n_backends);
	return best;
}

void backend_report(struct backend *b, const struct routes *r, bool ok, uint64_t now)
{
	if (ok) {
		b->fails = 0;
		b->skip_until = 0;
		return;
	}
	if (++b->fails < r->max_fails)
		return;
	if (b->skip_until <= now)
		log_notice("Backend %s failed %u times in a row: marked down for %llu ms (tried "
			   "only when its route has no other backend left).",
			   b->spec, b->fails,
			   (unsigned long long)(r->fail_timeout / USEC_PER_MSEC));
	b->skip_until = now + r->fail_timeout;
}

/* Route k of all: the default route, then by listener, then by host. */
static const struct route *route_at(const struct routes *r, size_t k)
{
	if (k == 0)
		return r->fallback;
	k--;
	return k < r->n_by_listener ? r->by_listener[k] : r->by_host[k - r->n_by_listener];
}

void routes_check_backends(const struct routes *r)
{
	size_t n = 1 + r->n_by_listener + r->n_by_host;

	for (size_t k = 0; k < n; k++) {
		const struct route *rt = route_at(r, k);

		for (size_t j = 0; j < rt->n_backends; j++) {
			const char *spec = rt->backends[j]->spec;
			bool seen = false;

			/* Several routes may name one backend: say it once. */
			for (size_t kk = 0; kk < k && !seen; kk++)
				seen = find_backend(route_at(r, kk), spec);
			if (!seen)
				backend_check_reachable(rt->backends[j]);
		}
	}
}
