// SPDX-License-Identifier: GPL-2.0
/*
 * systemd's fd store. Storing is a datagram to NOTIFY_SOCKET with the fds in SCM_RIGHTS, as
 * sd_pid_notify_with_fds() sends it, but to an address saved at start-up: workers drop
 * NOTIFY_SOCKET from their environment so that their sd_notify() calls are no-ops, yet they store
 * their own connections. PID 1 sets SO_PASSCRED on its end, so the kernel adds our credentials;
 * the unit needs NotifyAccess=all for a worker's pid to count.
 *
 * What the environment of systemd 252 doesn't say (FileDescriptorStoreMax=, and the pending job
 * when SIGTERM comes) is read over the system bus. The connection lives for one question, so no
 * bus fd stays open to be inherited by workers or to break after a fork.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <systemd/sd-bus.h>

#include "fdstore.h"
#include "log.h"

/* The kernel takes at most this many fds in one SCM_RIGHTS message (SCM_MAX_FD). */
#define FDSTORE_FDS_PER_MSG 253
/* systemd's FDNAME_MAX: longer names are refused (fdname_is_valid()). */
#define FDSTORE_NAME_MAX 255
/*
 * How long a bus question may take, connecting and authenticating included. At start-up
 * dbus.service may still be starting (sockets.target orders only its socket before us), so
 * waiting a little costs nothing; on a stop signal the drain is waiting, and an answer that
 * comes late is worth less than a prompt drain.
 */
#define BUS_OPEN_TIMEOUT (5 * USEC_PER_SEC)
#define BUS_STOP_TIMEOUT (1 * USEC_PER_SEC)

#define SD_DESTINATION	 "org.freedesktop.systemd1"

struct fdstore {
	struct sockaddr_un addr;
	socklen_t addr_len;
	unsigned max;
	bool notify_all;
};

/*
 * NOTIFY_SOCKET as sd-daemon reads it: a path, or an abstract name written with a leading '@'.
 * (Later systemd versions also take vsock: addresses, which 252 never sets.)
 */
static int notify_address(const char *e, struct sockaddr_un *ret, socklen_t *ret_len)
{
	size_t l = strlen(e);
	bool abstract = e[0] == '@';

	if (e[0] != '/' && !abstract)
		return -EAFNOSUPPORT;
	/* A path needs room for its NUL; an abstract name is counted by the length alone. */
	if (l < 2 || l > sizeof(ret->sun_path) - !abstract)
		return -EINVAL;

	*ret = (struct sockaddr_un){ .sun_family = AF_UNIX };
	memcpy(ret->sun_path, e, l);
	if (abstract)
		ret->sun_path[0] = '\0';
	*ret_len = offsetof(struct sockaddr_un, sun_path) + l + !abstract;
	return 0;
}

static int bus_reply_cb(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
	sd_bus_message **reply = userdata;

	*reply = sd_bus_message_ref(m);
	return 1;
}

/*
 * sd_bus_call() bounded by deadline (CLOCK_MONOTONIC µs), which sd_bus_call() is not: before its
 * own timeout starts it waits without bound until the connection is authenticated, so a bus
 * daemon that accepts but never answers would hold a stopping sockredir until systemd kills it.
 */
static int bus_call(sd_bus *bus, sd_bus_message *m, uint64_t deadline, sd_bus_message **ret_reply)
{
	_cleanup_(sd_bus_slot_unrefp) sd_bus_slot *slot = NULL;
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	uint64_t now = now_usec();
	int r;

	if (now >= deadline)
		return -ETIMEDOUT;
	r = sd_bus_call_async(bus, &slot, m, bus_reply_cb, &reply, deadline - now);
	if (r < 0)
		return r;

	while (!reply) {
		now = now_usec();
		if (now >= deadline)
			return -ETIMEDOUT;
		r = sd_bus_process(bus, NULL);
		if (r < 0)
			return r;
		if (r > 0)
			continue;
		r = sd_bus_wait(bus, deadline - now);
		if (r < 0 && r != -EINTR)
			return r;
	}

	/* An error reply, a timeout or a lost connection: sd-bus maps each to an errno. */
	r = sd_bus_message_get_errno(reply);
	if (r > 0)
		return -r;
	*ret_reply = TAKE_PTR(reply);
	return 0;
}

/* The reply to Properties.Get, positioned inside its variant, which must hold type. */
static int bus_get_property(sd_bus *bus, const char *path, const char *interface,
			    const char *property, const char *type, uint64_t deadline,
			    sd_bus_message **ret_reply)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
	int r;

	r = sd_bus_message_new_method_call(bus, &m, SD_DESTINATION, path,
					   "org.freedesktop.DBus.Properties", "Get");
	if (r < 0)
		return r;
	r = sd_bus_message_append(m, "ss", interface, property);
	if (r < 0)
		return r;
	r = bus_call(bus, m, deadline, &reply);
	if (r < 0)
		return r;
	r = sd_bus_message_enter_container(reply, 'v', type);
	if (r < 0)
		return r;
	*ret_reply = TAKE_PTR(reply);
	return 0;
}

/* Our unit's object path: systemd finds the unit by the sender's pid (0: the caller's). */
static int bus_own_unit(sd_bus *bus, uint64_t deadline, char **ret_path)
{
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
	const char *path;
	char *p;
	int r;

	r = sd_bus_message_new_method_call(bus, &m, SD_DESTINATION, "/org/freedesktop/systemd1",
					   "org.freedesktop.systemd1.Manager", "GetUnitByPID");
	if (r < 0)
		return r;
	r = sd_bus_message_append(m, "u", (uint32_t)0);
	if (r < 0)
		return r;
	r = bus_call(bus, m, deadline, &reply);
	if (r < 0)
		return r;
	r = sd_bus_message_read(reply, "o", &path);
	if (r < 0)
		return r;
	p = strdup(path);
	if (!p)
		return -ENOMEM;
	*ret_path = p;
	return 0;
}

/* The system bus, and our unit's object path on it; both the caller's, logged at debug level. */
static int bus_open_own_unit(uint64_t deadline, sd_bus **ret_bus, char **ret_unit)
{
	_cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
	int r;

	r = sd_bus_open_system(&bus);
	if (r < 0)
		return log_debug_errno(r, "Failed to connect to the system bus: %m");
	r = bus_own_unit(bus, deadline, ret_unit);
	if (r < 0)
		return log_debug_errno(r, "Failed to look up our unit: %m");
	*ret_bus = TAKE_PTR(bus);
	return 0;
}

static int read_fd_store_max(uint64_t timeout, unsigned *ret_max, bool *ret_notify_all)
{
	_cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL, *access_reply = NULL;
	_cleanup_free_ char *unit = NULL;
	uint64_t deadline = now_usec() + timeout;
	const char *access;
	uint32_t max;
	int r;

	r = bus_open_own_unit(deadline, &bus, &unit);
	if (r < 0)
		return r;
	r = bus_get_property(bus, unit, "org.freedesktop.systemd1.Service",
			     "FileDescriptorStoreMax", "u", deadline, &reply);
	if (r < 0)
		return log_debug_errno(r, "Failed to read FileDescriptorStoreMax of %s: %m", unit);
	r = sd_bus_message_read(reply, "u", &max);
	if (r < 0)
		return log_debug_errno(r, "Failed to parse FileDescriptorStoreMax of %s: %m", unit);
	/* Workers store their own connections: systemd takes that only with NotifyAccess=all. */
	r = bus_get_property(bus, unit, "org.freedesktop.systemd1.Service", "NotifyAccess", "s",
			     deadline, &access_reply);
	if (r < 0)
		return log_debug_errno(r, "Failed to read NotifyAccess of %s: %m", unit);
	r = sd_bus_message_read(access_reply, "s", &access);
	if (r < 0)
		return log_debug_errno(r, "Failed to parse NotifyAccess of %s: %m", unit);
	*ret_max = max;
	*ret_notify_all = streq(access, "all");
	return 0;
}

int fdstore_open(struct fdstore **ret, const char **ret_why)
{
	/* Only for the reason returned: start-up is single-threaded, and the text is read once. */
	static char why[64];
	struct fdstore *s;
	struct sockaddr_un addr;
	socklen_t addr_len;
	const char *e;
	unsigned max = 0;
	bool notify_all = false;
	int r;

	e = getenv("NOTIFY_SOCKET");
	if (!e) {
		*ret = NULL;
		*ret_why = "not started by systemd (no NOTIFY_SOCKET)";
		return 0;
	}
	r = notify_address(e, &addr, &addr_len);
	if (r < 0) {
		log_debug_errno(r, "Unusable NOTIFY_SOCKET=%s: %m", e);
		*ret = NULL;
		*ret_why = "NOTIFY_SOCKET is not a Unix socket address";
		return 0;
	}

	r = read_fd_store_max(BUS_OPEN_TIMEOUT, &max, &notify_all);
	if (r == -ENOMEM)
		return r;
	if (r < 0) {
		snprintf(why, sizeof(why), "cannot ask systemd: %s", strerror(-r));
		*ret = NULL;
		*ret_why = why;
		return 0;
	}
	if (max == 0) {
		*ret = NULL;
		*ret_why = "FileDescriptorStoreMax=0";
		return 0;
	}

	s = malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	*s = (struct fdstore){
		.addr = addr, .addr_len = addr_len, .max = max, .notify_all = notify_all
	};
	*ret = s;
	*ret_why = NULL;
	return 1;
}

unsigned fdstore_max(const struct fdstore *s)
{
	return s->max;
}

bool fdstore_notify_access_all(const struct fdstore *s)
{
	return s->notify_all;
}

struct fdstore *fdstore_free(struct fdstore *s)
{
	return mfree(s);
}

/*
 * systemd's fdname_is_valid(): the names come back ':'-separated in LISTEN_FDNAMES. Ours must
 * also start with FDSTORE_PREFIX, or the fd would come back looking like a listener, and the
 * next start would fail on it.
 */
static bool fdstore_name_is_valid(const char *name)
{
	size_t l = strlen(name);

	if (strncmp(name, FDSTORE_PREFIX, strlen(FDSTORE_PREFIX)) != 0 || l > FDSTORE_NAME_MAX)
		return false;
	for (size_t i = 0; i < l; i++) {
		unsigned char c = name[i];

		if (c < ' ' || c > '~' || c == ':')
			return false;
	}
	return true;
}

/* One datagram to the saved NOTIFY_SOCKET: state, and fds in SCM_RIGHTS if n > 0. */
static int notify_send(const struct fdstore *s, const char *state, const int *fds, size_t n)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * FDSTORE_FDS_PER_MSG)];
	} control = {};
	struct iovec iov = { .iov_base = (char *)state, .iov_len = strlen(state) };
	struct msghdr mh = {
		.msg_name = (struct sockaddr_un *)&s->addr,
		.msg_namelen = s->addr_len,
		.msg_iov = &iov,
		.msg_iovlen = 1,
	};
	_cleanup_close_ int fd = -EBADF;
	ssize_t k;

	if (n > FDSTORE_FDS_PER_MSG)
		return -E2BIG;
	if (n > 0) {
		struct cmsghdr *c;

		mh.msg_control = &control;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	}

	/* A socket per message, as sd_notify() does: nothing to share between workers or to leak. */
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return negative_errno();
	k = sendmsg(fd, &mh, MSG_NOSIGNAL);
	if (k < 0)
		return negative_errno();
	/* A datagram goes whole or not at all; anything else is not a message systemd can read. */
	if ((size_t)k != iov.iov_len)
		return -EIO;
	return 0;
}

int fdstore_add(struct fdstore *s, const int *fds, size_t n, const char *name, bool poll)
{
	char state[sizeof("FDSTORE=1\nFDPOLL=0\nFDNAME=") + FDSTORE_NAME_MAX];
	int r;

	if (n == 0 || !fdstore_name_is_valid(name))
		return -EINVAL;
	snprintf(state, sizeof(state), "FDSTORE=1\n%sFDNAME=%s", poll ? "" : "FDPOLL=0\n", name);

	for (size_t i = 0; i < n; i += FDSTORE_FDS_PER_MSG) {
		r = notify_send(s, state, fds + i, MIN(n - i, (size_t)FDSTORE_FDS_PER_MSG));
		if (r < 0)
			return log_debug_errno(r, "Failed to store %zu fds as %s: %m", n, name);
	}
	return 0;
}

int fdstore_remove(struct fdstore *s, const char *name)
{
	char state[sizeof("FDSTOREREMOVE=1\nFDNAME=") + FDSTORE_NAME_MAX];
	int r;

	if (!fdstore_name_is_valid(name))
		return -EINVAL;
	snprintf(state, sizeof(state), "FDSTOREREMOVE=1\nFDNAME=%s", name);

	r = notify_send(s, state, NULL, 0);
	if (r < 0)
		return log_debug_errno(r, "Failed to remove the stored fds %s: %m", name);
	return 0;
}

int fdstore_stop_is_restart(void)
{
	_cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
	_cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
	_cleanup_free_ char *unit = NULL, *job = NULL;
	uint64_t deadline = now_usec() + BUS_STOP_TIMEOUT;
	const char *path, *type;
	uint32_t id;
	int r;

	r = bus_open_own_unit(deadline, &bus, &unit);
	if (r < 0)
		return r;
	r = bus_get_property(bus, unit, "org.freedesktop.systemd1.Unit", "Job", "(uo)", deadline,
			     &reply);
	if (r < 0)
		return log_debug_errno(r, "Failed to read the job of %s: %m", unit);
	r = sd_bus_message_read(reply, "(uo)", &id, &path);
	if (r < 0)
		return log_debug_errno(r, "Failed to parse the job of %s: %m", unit);
	/* (0, "/"): no job, so the signal came from `systemctl kill` or from outside systemd. */
	if (id == 0)
		return 0;
	job = strdup(path);
	if (!job)
		return -ENOMEM;

	reply = sd_bus_message_unref(reply);
	r = bus_get_property(bus, job, "org.freedesktop.systemd1.Job", "JobType", "s", deadline,
			     &reply);
	if (r < 0)
		return log_debug_errno(r, "Failed to read the type of job %s: %m", job);
	r = sd_bus_message_read(reply, "s", &type);
	if (r < 0)
		return log_debug_errno(r, "Failed to parse the type of job %s: %m", job);
	log_debug("Stopping for job %" PRIu32 " (%s).", id, type);
	/* A restart job keeps its type while its stop half runs, then becomes a start job. */
	return streq(type, "restart") || streq(type, "try-restart");
}
