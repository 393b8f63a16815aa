// SPDX-License-Identifier: GPL-2.0
/* Non-blocking connects to the backend. */
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>

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

int backend_check_path(const struct sr_address *a, bool *ret_dir_missing)
{
	char path[sizeof(a->un.sun_path) + 1], *dir;
	struct stat st;

	*ret_dir_missing = false;
	if (!address_is_unix_path(a))
		return 0;
	memcpy(path, a->un.sun_path, sizeof(a->un.sun_path));
	path[sizeof(a->un.sun_path)] = 0;

	if (stat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -ENOTSOCK;
		/* connect() needs write permission on the socket file, for our effective ids. */
		return faccessat(AT_FDCWD, path, W_OK, AT_EACCESS) < 0 ? negative_errno() : 0;
	}
	if (errno != ENOENT)
		return negative_errno();
	dir = dirname(path);
	if (stat(dir, &st) < 0) {
		if (errno != ENOENT)
			return negative_errno();
		*ret_dir_missing = true;
	}
	return -ENOENT;
}
