/* SPDX-License-Identifier: GPL-2.0 */
/*
 * systemd's file descriptor store (FDSTORE=1): fds that systemd holds for the service while it
 * restarts or after it crashed, and passes back in LISTEN_FDS with their names. Whether it is a
 * restart, not a stop, is asked over the system bus.
 */
#ifndef SR_FDSTORE_H
#define SR_FDSTORE_H

#include "util.h"

/*
 * Names of the fds sockredir stores start with this; an inherited fd whose name does is a stored
 * one, never a listener.
 */
#define FDSTORE_PREFIX "sr."

struct fdstore;

/*
 * Whether systemd keeps fds for this service: NOTIFY_SOCKET is set and the unit's
 * FileDescriptorStoreMax is > 0 (read over the system bus: GetUnitByPID(0) on
 * org.freedesktop.systemd1.Manager, then the org.freedesktop.systemd1.Service property
 * FileDescriptorStoreMax of that unit; systemd 252 has no $FDSTORE variable). Returns 1 with
 * *ret set; 0 with *ret NULL and *ret_why a short human reason ("not started by systemd (no
 * NOTIFY_SOCKET)", "FileDescriptorStoreMax=0", "cannot ask systemd: <strerror>", "NOTIFY_SOCKET
 * is not a Unix socket address"; valid until the next call); <0 only on OOM. The object keeps
 * its own copy of the notify socket address, so it keeps working in forked worker processes
 * after they unsetenv("NOTIFY_SOCKET") (workers.c does that so that only the supervisor's
 * sd_notify calls count). Call it before forking. The bus question takes at most 5 s.
 */
int fdstore_open(struct fdstore **ret, const char **ret_why);
unsigned fdstore_max(const struct fdstore *s);
/* NotifyAccess=all: processes other than the main one (workers) may store fds too. */
bool fdstore_notify_access_all(const struct fdstore *s);
/*
 * Store n fds under name (FDSTORE=1, FDNAME=name), at most 253 per datagram (SCM_MAX_FD; more
 * go in several datagrams under the same name); poll false adds FDPOLL=0 (systemd 252 then does
 * not drop the fd on EPOLLHUP/EPOLLERR). name must start with FDSTORE_PREFIX and be a valid
 * FDNAME= (printable ASCII, no ':', at most 255 bytes): -EINVAL otherwise. 0 or negative errno;
 * after a failure some datagrams may have been stored already: fdstore_remove(name) drops them.
 * systemd closes silently what exceeds FileDescriptorStoreMax.
 */
int fdstore_add(struct fdstore *s, const int *fds, size_t n, const char *name, bool poll);
/* FDSTOREREMOVE=1 with FDNAME=name: systemd closes every fd stored under that name. */
int fdstore_remove(struct fdstore *s, const char *name);
struct fdstore *fdstore_free(struct fdstore *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct fdstore *, fdstore_free);

/*
 * On a stop signal, is this a `systemctl restart`? Reads this unit's Job property over the
 * system bus and that job's JobType. 1: "restart" (also "try-restart"; systemd 252 collapses
 * try-restart and reload-or-restart into restart or reload before a job exists); 0: a stop, or no
 * job (`systemctl kill`, a signal from elsewhere); <0: could not tell (no bus, timeout): callers
 * treat that as a stop. Returns within about 1 s whatever happens, connecting included.
 */
int fdstore_stop_is_restart(void);

#endif /* SR_FDSTORE_H */
