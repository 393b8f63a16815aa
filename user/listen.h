/* SPDX-License-Identifier: GPL-2.0 */
/* Listening sockets: inherited through socket activation, or bound from --listen. */
#ifndef SR_LISTEN_H
#define SR_LISTEN_H

#include "address.h"

struct listener {
	int fd;
	char *name;		/* FileDescriptorName= for inherited fds, else the address */
	char *unlink_path;	/* a Unix socket path we created, removed on exit */
	struct sr_address addr; /* local address, for logs */
	void *event_source;	/* sd_event_source *, owned by the proxy */
	void *proxy;		/* struct proxy *, for the accept handler */
};

/* The inherited socket with this FileDescriptorName= serves /metrics, not clients. */
#define SR_METRICS_FDNAME "metrics"

/* An inherited fd that systemd kept in its fd store for us: not a listener, whatever it is. */
struct named_fd {
	int fd;
	char *name; /* its FDNAME=, starting with FDSTORE_PREFIX */
};

/* Close each fd and free the names and the array. */
void named_fds_free(struct named_fd *f, size_t n);

/*
 * Collect the inherited listening sockets (sd_listen_fds_with_names); if there are none, bind
 * the --listen addresses. Every inherited fd whose name starts with FDSTORE_PREFIX came from the
 * fd store: it goes to *ret_stored (close-on-exec, its other flags untouched; NULL and 0 if
 * none) and counts as no listener. Every other inherited fd must be a listening stream socket:
 * anything else is an error, never skipped. All listeners end up non-blocking and close-on-exec.
 * The one named SR_METRICS_FDNAME, or else metrics_listen bound, goes to *ret_metrics (fd
 * -EBADF: none).
 */
int listeners_open(char **listen, size_t n_listen, const char *metrics_listen,
		   struct listener **ret, size_t *ret_n, struct listener *ret_metrics,
		   struct named_fd **ret_stored, size_t *ret_n_stored);
/* Close one listener, removing a Unix socket path it created. */
void listener_done(struct listener *l);
/* How many clients wait in a TCP listener's accept queue; 0 for a Unix one, or on error. */
unsigned listener_queued(const struct listener *l);
void listeners_free(struct listener *l, size_t n);

#endif /* SR_LISTEN_H */
