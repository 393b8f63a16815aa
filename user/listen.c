// SPDX-License-Identifier: GPL-2.0
/* Socket activation and --listen. */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <systemd/sd-daemon.h>

#include "fdstore.h"
#include "listen.h"
#include "log.h"

static int fd_set_cloexec(int fd)
{
	int fl;

	fl = fcntl(fd, F_GETFD);
	if (fl < 0)
		return negative_errno();
	if (!(fl & FD_CLOEXEC) && fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
		return negative_errno();
	return 0;
}

static int fd_set_flags(int fd)
{
	int fl;

	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return negative_errno();
	if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return negative_errno();
	return fd_set_cloexec(fd);
}

unsigned listener_queued(const struct listener *l)
{
	struct tcp_info ti = {};
	socklen_t len = sizeof(ti);

	/*
	 * For a listening socket, tcp_get_info() reports the accept queue's length in
	 * tcpi_unacked (sk_ack_backlog). A Unix listener has no such figure (SIOCINQ says EINVAL).
	 */
	if (l->addr.sa.sa_family == AF_UNIX ||
	    getsockopt(l->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return 0;
	return ti.tcpi_unacked;
}

void listener_done(struct listener *l)
{
	l->fd = safe_close(l->fd);
	if (l->unlink_path)
		(void)unlink(l->unlink_path);
	l->unlink_path = mfree(l->unlink_path);
	l->name = mfree(l->name);
}

void listeners_free(struct listener *l, size_t n)
{
	if (!l)
		return;
	for (size_t i = 0; i < n; i++)
		listener_done(&l[i]);
	free(l);
}

void named_fds_free(struct named_fd *f, size_t n)
{
	if (!f)
		return;
	for (size_t i = 0; i < n; i++) {
		safe_close(f[i].fd);
		free(f[i].name);
	}
	free(f);
}

static bool is_stored(const char *name)
{
	return name && strncmp(name, FDSTORE_PREFIX, strlen(FDSTORE_PREFIX)) == 0;
}

/*
 * Whatever the owner stored (a bag, the state record) is taken as it is, never checked as a
 * listener. O_NONBLOCK is left as it came: it belongs to the open file, which the copy systemd
 * still holds shares. Close-on-exec belongs to this fd alone.
 */
static int stored_inherit(int fd, const char *name, struct named_fd *ret)
{
	char *copy;
	int r;

	r = fd_set_cloexec(fd);
	if (r < 0)
		return log_error_errno(r, "Failed to set close-on-exec on stored fd %d (%s): %m",
				       fd, name);
	copy = strdup(name);
	if (!copy)
		return log_error_errno(ENOMEM, "Out of memory.");
	*ret = (struct named_fd){ .fd = fd, .name = copy };
	return 0;
}

/*
 * A Unix socket path left behind by a dead process makes bind() fail with EADDRINUSE. Remove it
 * only if nobody answers on it, so a live listener is never stolen.
 */
static int unlink_stale_socket(const struct sr_address *a)
{
	_cleanup_close_ int fd = -EBADF;
	struct stat st;

	if (stat(a->un.sun_path, &st) < 0)
		return negative_errno();
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return negative_errno();
	if (connect(fd, &a->sa, a->len) == 0)
		return -EADDRINUSE;
	if (errno != ECONNREFUSED)
		return -EADDRINUSE;
	if (unlink(a->un.sun_path) < 0)
		return negative_errno();
	return 0;
}

static int listener_bind(const char *spec, const char *option, struct listener *ret)
{
	_cleanup_close_ int fd = -EBADF;
	struct sr_address a;
	const char *reason;
	int r, one = 1, zero = 0;

	r = address_parse(spec, ADDRESS_LISTEN, &a, &reason);
	if (r < 0)
		return log_error_errno(r, "Invalid %s address '%s': %s.", option, spec, reason);

	fd = socket(a.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return log_error_errno(errno, "Failed to create socket for '%s': %m", spec);

	if (!address_is_unix(&a) && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		return log_error_errno(errno, "Failed to set SO_REUSEADDR on '%s': %m", spec);
	/* A wildcard IPv6 listener takes IPv4 too, as systemd's ListenStream=PORT does. */
	if (a.sa.sa_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&a.in6.sin6_addr) &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0)
		log_debug_errno(errno, "Failed to clear IPV6_V6ONLY on '%s', ignoring: %m", spec);

	r = bind(fd, &a.sa, a.len);
	if (r < 0 && errno == EADDRINUSE && address_is_unix_path(&a) &&
	    unlink_stale_socket(&a) >= 0)
		r = bind(fd, &a.sa, a.len);
	if (r < 0)
		return log_error_errno(errno, "Failed to bind '%s': %m", spec);

	if (listen(fd, SOMAXCONN) < 0)
		return log_error_errno(errno, "Failed to listen on '%s': %m", spec);

	*ret = (struct listener){
		.fd = -EBADF,
		.addr = a,
		.name = strdup(spec),
		.unlink_path = address_is_unix_path(&a) ? strdup(a.un.sun_path) : NULL,
	};
	if (!ret->name || (address_is_unix_path(&a) && !ret->unlink_path)) {
		if (ret->unlink_path)
			(void)unlink(ret->unlink_path);
		free(ret->name);
		free(ret->unlink_path);
		return log_error_errno(ENOMEM, "Out of memory.");
	}
	ret->fd = TAKE_FD(fd);
	return 0;
}

static int listener_inherit(int fd, const char *name, struct listener *ret)
{
	struct sr_address a = { .len = sizeof(a.storage) };
	int r;

	r = sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1);
	if (r < 0)
		return log_error_errno(r, "Failed to check inherited fd %d (%s): %m", fd, name);
	if (r == 0)
		return log_error_errno(EINVAL,
				       "Inherited fd %d (%s) is not a listening stream socket. "
				       "Check the socket unit: use ListenStream= and Accept=no.",
				       fd, name);

	r = fd_set_flags(fd);
	if (r < 0)
		return log_error_errno(r, "Failed to make fd %d non-blocking: %m", fd);

	if (getsockname(fd, &a.sa, &a.len) < 0)
		return log_error_errno(errno, "Failed to get address of fd %d: %m", fd);

	*ret = (struct listener){ .fd = fd, .addr = a, .name = strdup(name) };
	if (!ret->name)
		return log_error_errno(ENOMEM, "Out of memory.");
	return 0;
}

int listeners_open(char **listen, size_t n_listen, const char *metrics_listen,
		   struct listener **ret, size_t *ret_n, struct listener *ret_metrics,
		   struct named_fd **ret_stored, size_t *ret_n_stored)
{
	struct listener *l = NULL, metrics = { .fd = -EBADF };
	struct named_fd *stored = NULL;
	char **names = NULL;
	size_t n = 0, n_stored = 0;
	int k, i = 0, n_metrics = 0, k_stored = 0, r = 0;

	k = sd_listen_fds_with_names(true, &names);
	if (k < 0)
		return log_error_errno(k, "Failed to read socket activation fds: %m");
	for (int j = 0; j < k; j++) {
		n_metrics += names && streq(names[j], SR_METRICS_FDNAME);
		k_stored += names && is_stored(names[j]);
	}
	if (n_metrics > 1) {
		r = log_error_errno(EINVAL, "More than one inherited socket is named '%s'.",
				    SR_METRICS_FDNAME);
		goto out;
	}

	if (k_stored > 0) {
		stored = calloc((size_t)k_stored, sizeof(*stored));
		if (!stored) {
			r = log_error_errno(ENOMEM, "Out of memory.");
			goto out;
		}
	}
	/* Stored fds and the metrics socket are no listeners: --listen applies without others. */
	if (k > n_metrics + k_stored) {
		if (n_listen > 0)
			log_notice("Ignoring --listen: %d socket(s) were inherited.",
				   k - n_metrics - k_stored);
		l = calloc((size_t)k, sizeof(*l));
		if (!l) {
			r = log_error_errno(ENOMEM, "Out of memory.");
			goto out;
		}
	}
	/* In order, so that on failure the fds from i on are the ones not taken yet. */
	for (; i < k; i++) {
		const char *name = names && names[i] ? names[i] : "unknown";
		bool is_metrics = streq(name, SR_METRICS_FDNAME);

		if (is_stored(name)) {
			r = stored_inherit(SD_LISTEN_FDS_START + i, name, &stored[n_stored]);
			if (r < 0)
				goto out;
			n_stored++;
			continue;
		}
		r = listener_inherit(SD_LISTEN_FDS_START + i, name, is_metrics ? &metrics : &l[n]);
		if (r < 0)
			goto out;
		n += !is_metrics;
	}
	if (n == 0) {
		if (n_listen == 0) {
			r = log_error_errno(EINVAL,
					    "No listening socket: run under socket activation "
					    "(a .socket unit or systemd-socket-activate) or pass "
					    "--listen ADDR.");
			goto out;
		}
		l = calloc(n_listen, sizeof(*l));
		if (!l) {
			r = log_error_errno(ENOMEM, "Out of memory.");
			goto out;
		}
		for (size_t j = 0; j < n_listen; j++) {
			r = listener_bind(listen[j], "--listen", &l[n]);
			if (r < 0)
				goto out;
			n++;
		}
	}
	if (metrics.fd >= 0 && metrics_listen)
		log_notice("Ignoring --metrics-listen: a socket named '%s' was inherited.",
			   SR_METRICS_FDNAME);
	else if (metrics_listen) {
		r = listener_bind(metrics_listen, "--metrics-listen", &metrics);
		if (r < 0)
			goto out;
	}

	*ret = TAKE_PTR(l);
	*ret_n = n;
	*ret_metrics = metrics;
	metrics = (struct listener){ .fd = -EBADF };
	n = 0;
	*ret_stored = TAKE_PTR(stored);
	*ret_n_stored = n_stored;
	n_stored = 0;
out:
	/* On failure, close what we opened; inherited fds we never took are closed too. */
	if (r < 0)
		for (; i < k; i++)
			safe_close(SD_LISTEN_FDS_START + i);
	listeners_free(l, n);
	listener_done(&metrics);
	named_fds_free(stored, n_stored);
	if (names)
		for (int i = 0; i < k; i++)
			free(names[i]);
	free(names);
	return r;
}
