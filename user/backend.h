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

#endif /* SR_BACKEND_H */
