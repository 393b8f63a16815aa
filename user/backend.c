// SPDX-License-Identifier: GPL-2.0
/* Non-blocking connects to the backend. */
#include "backend.h"

int backend_connect(const struct sr_address *a, int *ret_fd)
{
	_cleanup_close_ int fd = -EBADF;
	int r;

	fd = socket(a->sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return negative_errno();

	r = connect(fd, &a->sa, a->len);
	if (r < 0 && errno != EINPROGRESS)
		return negative_errno();

	*ret_fd = TAKE_FD(fd);
	return r == 0;
}

int backend_connect_finish(int fd)
{
	socklen_t len = sizeof(int);
	int error = 0;

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
		return negative_errno();
	return -error;
}
