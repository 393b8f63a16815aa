/* SPDX-License-Identifier: GPL-2.0 */
/* Connecting to the backend. */
#ifndef SR_BACKEND_H
#define SR_BACKEND_H

#include "address.h"

/*
 * Start a non-blocking connect to a. On success *ret_fd is the socket and the return value says
 * how far it got: 1 connected, 0 in progress (wait for EPOLLOUT, then backend_connect_finish()).
 * -EAGAIN means a Unix listener's backlog is full: nothing is in progress, retry later.
 */
int backend_connect(const struct sr_address *a, int *ret_fd);
/* The result of an in-progress connect: 0 or the negative errno it failed with. */
int backend_connect_finish(int fd);
/*
 * What a connect() to a Unix path backend will meet, looked at without connecting: 0 (a socket
 * this process may write to), -ENOENT (no socket there yet; *ret_dir_missing is set when its
 * directory is missing too), -EACCES (a directory on the way, or the socket, refuses us), or
 * -ENOTSOCK (something else is there). Any other address: 0.
 */
int backend_check_path(const struct sr_address *a, bool *ret_dir_missing);

#endif /* SR_BACKEND_H */
