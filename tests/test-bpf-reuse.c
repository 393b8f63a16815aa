// SPDX-License-Identifier: GPL-2.0
/*
 * A second bpf_state adopts the maps of a first one, as a restarted sockredir adopts those of
 * the instance before it from systemd's fd store (user/bpf-loader.c, bpf_load_options.reuse_*):
 * connections inserted through the first keep moving in the kernel after it is gone, every
 * byte checked, and so do new ones; sr_peers entries and counters carry over; maps that don't
 * fit are refused with a clear reason.
 *
 * Real sockets, in the layout of user/kernel-path.c with --kernel-upload: the proxy's Unix end
 * (backend side) in sr_verdict and sr_targets, its TCP end (client side) in sr_targets and
 * sr_verdict, an sr_peers entry each way. Nothing reads the proxy's ends, so a byte reaches the
 * other side only through sr_redirect.
 *
 * Needs root: it makes its own network and mount namespaces, with a bpffs on a temporary
 * directory for the pins. Exits 77 when it can't.
 */
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "../user/bpf-loader.h"
#include "../user/log.h"

#include "check.h"

#define ENTRIES	   1024
#define CHUNK	   (64 * 1024)
#define TIMEOUT_MS 10000

/* One proxied connection: the outside ends (client, backend) and the proxy's (pc, pb). */
struct conn {
	int client, pc;	 /* TCP over loopback */
	int backend, pb; /* AF_UNIX stream pair */
	uint64_t pc_cookie, pb_cookie;
	uint64_t down, up; /* bytes moved so far, each way */
};
#define CONN_NULL ((struct conn){ .client = -1, .pc = -1, .backend = -1, .pb = -1 })

static char bpffs[] = "/tmp/sockredir-bpf-reuse.XXXXXX";

static uint8_t pattern(uint64_t off, uint32_t seed)
{
	uint32_t x = (uint32_t)off * 2654435761u ^ seed;

	x ^= x >> 15;
	x *= 0x2c1b3c6d;
	return (uint8_t)(x ^ x >> 12);
}

/*
 * Send n bytes of a pattern that goes on from offset off on from, and read them on to, every
 * byte checked; then nothing more arrives. Both ends nonblocking, so that neither side's buffer
 * can stall the other.
 */
static bool transfer(const char *what, int from, int to, uint64_t off, size_t n, uint32_t seed)
{
	static uint8_t buf[CHUNK];
	size_t sent = 0, got = 0;
	int waited = 0;
	ssize_t k;

	while (got < n) {
		struct pollfd p[2] = {
			{ .fd = from, .events = sent < n ? POLLOUT : 0 },
			{ .fd = to, .events = POLLIN },
		};

		if (poll(p, 2, 100) == 0 && (waited += 100) > TIMEOUT_MS)
			return CHECK(false, "%s: timed out, %zu of %zu bytes sent, %zu received",
				     what, sent, n, got);
		if (sent < n && (p[0].revents & POLLOUT)) {
			size_t len = MIN(sizeof(buf), n - sent);

			for (size_t i = 0; i < len; i++)
				buf[i] = pattern(off + sent + i, seed);
			k = send(from, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (k < 0 && errno != EAGAIN)
				return CHECK(false, "%s: send: %m", what);
			if (k > 0)
				sent += (size_t)k;
		}
		if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			k = recv(to, buf, sizeof(buf), MSG_DONTWAIT);
			if (k < 0 && errno == EAGAIN)
				continue;
			if (!CHECK(k > 0, "%s: recv: %s after %zu bytes", what,
				   k == 0 ? "EOF" : strerror(errno), got))
				return false;
			if (!CHECK(got + (size_t)k <= n, "%s: %zd bytes more than sent", what,
				   got + (size_t)k - n))
				return false;
			for (ssize_t i = 0; i < k; i++)
				if (buf[i] != pattern(off + got + (size_t)i, seed))
					return CHECK(false, "%s: byte %zu is 0x%02x, want 0x%02x",
						     what, got + (size_t)i, buf[i],
						     pattern(off + got + (size_t)i, seed));
			got += (size_t)k;
		}
	}
	/* Nothing after them: no duplicate skb, no byte from elsewhere. */
	if (poll(&(struct pollfd){ .fd = to, .events = POLLIN }, 1, 50) > 0)
		return CHECK(false, "%s: more bytes than sent", what);
	return CHECK(true, "%s", what);
}

/* Both directions, 256 KiB each. */
static bool move_both(const char *what, struct conn *c, uint32_t seed)
{
	char down[128], up[128];
	bool ok;

	snprintf(down, sizeof(down), "%s: backend -> client", what);
	snprintf(up, sizeof(up), "%s: client -> backend", what);
	ok = transfer(down, c->backend, c->client, c->down, 4 * CHUNK, seed);
	ok = transfer(up, c->client, c->backend, c->up, 4 * CHUNK, ~seed) && ok;
	c->down += 4 * CHUNK;
	c->up += 4 * CHUNK;
	return ok;
}

static int cookie_of(int fd, uint64_t *ret)
{
	socklen_t len = sizeof(*ret);

	return getsockopt(fd, SOL_SOCKET, SO_COOKIE, ret, &len) < 0 ? -errno : 0;
}

/* A TCP connection over loopback and a Unix pair, both connected. */
static int conn_open(struct conn *c)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int sv[2], l, r = 0;

	*c = CONN_NULL;
	l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &len) < 0)
		r = -errno;
	if (r == 0) {
		c->client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c->client < 0 || connect(c->client, (struct sockaddr *)&a, sizeof(a)) < 0)
			r = -errno;
	}
	if (r == 0 && (c->pc = accept4(l, NULL, NULL, SOCK_CLOEXEC)) < 0)
		r = -errno;
	if (l >= 0)
		close(l);
	if (r == 0 && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		r = -errno;
	if (r == 0) {
		c->backend = sv[0];
		c->pb = sv[1];
		r = cookie_of(c->pc, &c->pc_cookie);
	}
	if (r == 0)
		r = cookie_of(c->pb, &c->pb_cookie);
	return r;
}

static void conn_close(struct conn *c)
{
	int *fds[] = { &c->client, &c->pc, &c->backend, &c->pb };

	for (size_t i = 0; i < ELEMENTSOF(fds); i++)
		*fds[i] = safe_close(*fds[i]);
}

/* kernel_path_attach() and kernel_path_attach_upload() with --kernel-upload, in their order. */
static bool conn_insert(struct bpf_state *s, const struct conn *c, const char *what)
{
	int r;

	r = bpf_sock_insert(s, false, c->pc_cookie, c->pc);
	if (!CHECK(r == 0, "%s: insert the client into " SR_MAP_TARGETS ": %s", what, strerror(-r)))
		return false;
	r = bpf_peer_add(s, c->pb_cookie, c->pc_cookie, SR_DIR_DOWN, SR_PEER_TARGET);
	if (!CHECK(r == 0, "%s: peer entry down: %s", what, strerror(-r)))
		return false;
	r = bpf_sock_insert(s, false, c->pb_cookie, c->pb);
	if (!CHECK(r == 0, "%s: insert the backend into " SR_MAP_TARGETS ": %s", what,
		   strerror(-r)))
		return false;
	r = bpf_sock_insert(s, true, c->pb_cookie, c->pb);
	if (!CHECK(r == 0, "%s: insert the backend into " SR_MAP_VERDICT ": %s", what,
		   strerror(-r)))
		return false;
	r = bpf_peer_add(s, c->pc_cookie, c->pb_cookie, SR_DIR_UP, SR_PEER_TARGET);
	if (!CHECK(r == 0, "%s: peer entry up: %s", what, strerror(-r)))
		return false;
	r = bpf_sock_insert(s, true, c->pc_cookie, c->pc);
	return CHECK(r == 0, "%s: insert the client into " SR_MAP_VERDICT ": %s", what,
		     strerror(-r));
}

static uint32_t obj_id(int fd)
{
	struct bpf_prog_info info = {}; /* the id comes first in map and program info alike */
	__u32 len = sizeof(info);

	return bpf_obj_get_info_by_fd(fd, &info, &len) < 0 ? 0 : info.id;
}

/* The id of the program attached to sr_verdict now. */
static uint32_t attached_id(int map_fd)
{
	__u32 ids[1] = {}, n = 1;

	if (bpf_prog_query(map_fd, BPF_SK_SKB_STREAM_VERDICT, 0, NULL, ids, &n) < 0 || n != 1)
		return 0;
	return ids[0];
}

static int find_fd(const int *fds, const char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (streq(names[i], name))
			return fds[i];
	return -EBADF;
}

static int load_adopting(const char *pin, uint32_t entries, const int *fds,
			 const char *const *names, size_t n, bool programs, struct bpf_state **ret,
			 const char **ret_what)
{
	char path[128];
	struct bpf_load_options o = {
		.pin_path = path,
		.map_entries = entries,
		.reuse_fds = fds,
		.reuse_names = names,
		.n_reuse = n,
		.adopt_programs = programs,
	};

	snprintf(path, sizeof(path), "%s/%s", bpffs, pin);
	*ret_what = "";
	return bpf_state_load(&o, ret, ret_what);
}

static int load(const char *pin, uint32_t entries, const int *fds, const char *const *names,
		size_t n, struct bpf_state **ret, const char **ret_what)
{
	return load_adopting(pin, entries, fds, names, n, false, ret, ret_what);
}

/* What bpf_state_fds() gives: every map and both programs, once each. */
static void test_state_fds(struct bpf_state *s)
{
	static const char *const want[] = {
		SR_MAP_VERDICT,	    SR_MAP_TARGETS,  SR_MAP_PEERS,  SR_MAP_KSTATS,
		SR_MAP_PROXY_STATS, SR_PROG_VERDICT, SR_PROG_PROBE,
	};
	const char *const *names;
	const int *fds;
	size_t n;
	int r;

	r = bpf_state_fds(s, &fds, &names, &n);
	if (!CHECK(r == 0, "bpf_state_fds: %s", strerror(-r)))
		return;
	CHECK(n == ELEMENTSOF(want), "bpf_state_fds: %zu entries, want %zu", n, ELEMENTSOF(want));
	for (size_t i = 0; i < ELEMENTSOF(want); i++) {
		int fd = find_fd(fds, names, n, want[i]);

		CHECK(fd >= 0 && obj_id(fd) != 0, "bpf_state_fds: no valid fd for %s", want[i]);
	}
}

/* Maps that don't fit are refused before anything is loaded, attached or pinned. */
static void test_refused(const int *fds, const char *const *names, size_t n)
{
	const char *some[8], *what;
	struct bpf_state *s = NULL;
	char path[128];
	int some_fds[8];
	size_t k = 0;
	int r;

	r = load("refused", ENTRIES * 2, fds, names, n, &s, &what);
	CHECK(r == -EINVAL && strstr(what, "previous instance") && strstr(what, "--map-entries"),
	      "another --map-entries: %d (%s), want -EINVAL and a reason naming --map-entries", r,
	      what);
	s = bpf_state_free(s);

	if (!CHECK(n <= ELEMENTSOF(some), "%zu fds", n))
		return;
	for (size_t i = 0; i < n; i++)
		if (!streq(names[i], SR_MAP_PEERS)) {
			some[k] = names[i];
			some_fds[k++] = fds[i];
		}
	r = load("refused", ENTRIES, some_fds, some, k, &s, &what);
	CHECK(r == -ENOENT && strstr(what, "previous instance"),
	      "sr_peers missing: %d (%s), want -ENOENT", r, what);
	s = bpf_state_free(s);

	/* sr_verdict and sr_targets have the same shape: only their names tell them apart. */
	for (size_t i = 0; i < n; i++)
		some[i] = streq(names[i], SR_MAP_VERDICT) ? SR_MAP_TARGETS :
			  streq(names[i], SR_MAP_TARGETS) ? SR_MAP_VERDICT :
							    names[i];
	r = load("refused", ENTRIES, fds, some, n, &s, &what);
	CHECK(r == -EINVAL && strstr(what, "another map"),
	      "sr_verdict and sr_targets swapped: %d (%s), want -EINVAL", r, what);
	s = bpf_state_free(s);

	snprintf(path, sizeof(path), "%s/refused", bpffs);
	CHECK(access(path, F_OK) < 0, "%s exists after refused loads", path);
}

static void test_adopt(void)
{
	struct bpf_state *first = NULL, *second = NULL;
	struct conn old = CONN_NULL, new = CONN_NULL, third_conn = CONN_NULL;
	struct bpf_state *third = NULL;
	uint32_t old_prog, new_prog, verdict_map;
	const char *const *names, *what;
	struct sr_kstats ks = {};
	struct sr_peer peer = {};
	const int *fds;
	int r, fd;
	size_t n;

	r = load("first", ENTRIES, NULL, NULL, 0, &first, &what);
	if (!CHECK(r == 0, "load the first state: failed to %s: %s", what, strerror(-r)))
		return;
	bpf_state_proxy_stats(first)->accepted = 4242;
	bpf_state_proxy_stats(first)->reloads = 7;

	r = conn_open(&old);
	if (!CHECK(r == 0, "open the first connection: %s", strerror(-r)))
		goto out;
	if (!conn_insert(first, &old, "first connection") ||
	    !move_both("first connection, first state", &old, 1))
		goto out;

	test_state_fds(first);
	r = bpf_state_fds(first, &fds, &names, &n);
	if (!CHECK(r == 0, "bpf_state_fds: %s", strerror(-r)))
		goto out;
	test_refused(fds, names, n);

	fd = find_fd(fds, names, n, SR_MAP_VERDICT);
	verdict_map = obj_id(fd);
	old_prog = attached_id(fd);
	CHECK(old_prog != 0 && old_prog == obj_id(find_fd(fds, names, n, SR_PROG_VERDICT)),
	      "the first sr_redirect (id %u) is attached to sr_verdict", old_prog);

	/* The restart: the second state adopts, then the first goes away (the old process). */
	r = load("second", ENTRIES, fds, names, n, &second, &what);
	if (!CHECK(r == 0, "load the second state adopting the first's maps: failed to %s: %s",
		   what, strerror(-r)))
		goto out;
	bpf_state_unpin(first);
	first = bpf_state_free(first);

	r = bpf_state_fds(second, &fds, &names, &n);
	if (!CHECK(r == 0, "bpf_state_fds of the second state: %s", strerror(-r)))
		goto out;
	fd = find_fd(fds, names, n, SR_MAP_VERDICT);
	CHECK(obj_id(fd) == verdict_map, "the second state's sr_verdict is map %u, want %u",
	      obj_id(fd), verdict_map);
	new_prog = attached_id(fd);
	CHECK(new_prog != 0 && new_prog != old_prog &&
		      new_prog == obj_id(find_fd(fds, names, n, SR_PROG_VERDICT)),
	      "attached to sr_verdict: program %u, want the second sr_redirect (not %u)", new_prog,
	      old_prog);
	{
		char path[128];
		int pin;

		snprintf(path, sizeof(path), "%s/second/" SR_MAP_VERDICT, bpffs);
		pin = bpf_obj_get(path);
		CHECK(pin >= 0 && obj_id(pin) == verdict_map, "pin %s is map %u, want %u", path,
		      pin >= 0 ? obj_id(pin) : 0, verdict_map);
		safe_close(pin);
	}

	/* The connection of the first state, still under the first sr_redirect. */
	move_both("first connection, second state", &old, 2);
	r = bpf_peer_get(second, old.pb_cookie, &peer);
	CHECK(r == 0 && peer.peer_cookie == old.pc_cookie && peer.dir == SR_DIR_DOWN &&
		      peer.bytes == old.down,
	      "sr_peers entry of the first connection through the second state: %s, peer %llu "
	      "bytes %llu, want peer %llu bytes %llu",
	      strerror(-r), (unsigned long long)peer.peer_cookie, (unsigned long long)peer.bytes,
	      (unsigned long long)old.pc_cookie, (unsigned long long)old.down);

	/* A connection of the second state, under the second sr_redirect. */
	r = conn_open(&new);
	if (!CHECK(r == 0, "open the second connection: %s", strerror(-r)))
		goto out;
	if (conn_insert(second, &new, "second connection"))
		move_both("second connection", &new, 3);
	move_both("first connection, beside the second", &old, 4);

	CHECK(bpf_state_proxy_stats(second)->accepted == 4242 &&
		      bpf_state_proxy_stats(second)->reloads == 7,
	      "sr_proxy_stats through the second state: accepted %llu, reloads %llu; want 4242, 7",
	      (unsigned long long)bpf_state_proxy_stats(second)->accepted,
	      (unsigned long long)bpf_state_proxy_stats(second)->reloads);
	r = bpf_state_read_kstats(second, &ks);
	CHECK(r == 0 && ks.bytes[SR_DIR_DOWN] == old.down + new.down &&ks.bytes[SR_DIR_UP] ==
				old.up + new.up,
	      "sr_kstats: down %llu up %llu, want %llu and %llu",
	      (unsigned long long)ks.bytes[SR_DIR_DOWN], (unsigned long long)ks.bytes[SR_DIR_UP],
	      (unsigned long long)(old.down + new.down), (unsigned long long)(old.up + new.up));

	/*
	 * A restart of the same build: the third state adopts the programs too. Nothing is loaded
	 * or attached: sr_verdict keeps the second sr_redirect, and every connection still moves.
	 */
	r = bpf_state_fds(second, &fds, &names, &n);
	if (!CHECK(r == 0, "bpf_state_fds of the second state: %s", strerror(-r)))
		goto out;
	r = load_adopting("third", ENTRIES, fds, names, n, true, &third, &what);
	if (!CHECK(r == 0, "load the third state adopting maps and programs: failed to %s: %s",
		   what, strerror(-r)))
		goto out;
	bpf_state_unpin(second);
	second = bpf_state_free(second);
	r = bpf_state_fds(third, &fds, &names, &n);
	if (!CHECK(r == 0, "bpf_state_fds of the third state: %s", strerror(-r)))
		goto out;
	fd = find_fd(fds, names, n, SR_MAP_VERDICT);
	CHECK(obj_id(fd) == verdict_map && attached_id(fd) == new_prog &&
		      obj_id(find_fd(fds, names, n, SR_PROG_VERDICT)) == new_prog,
	      "third state: sr_verdict is map %u with program %u attached, want map %u and the "
	      "second sr_redirect %u",
	      obj_id(fd), attached_id(fd), verdict_map, new_prog);
	move_both("first connection, third state", &old, 5);
	move_both("second connection, third state", &new, 6);
	r = conn_open(&third_conn);
	if (!CHECK(r == 0, "open the third connection: %s", strerror(-r)))
		goto out;
	if (conn_insert(third, &third_conn, "third connection"))
		move_both("third connection", &third_conn, 7);
	CHECK(bpf_state_proxy_stats(third)->accepted == 4242,
	      "sr_proxy_stats through the third state: accepted %llu, want 4242",
	      (unsigned long long)bpf_state_proxy_stats(third)->accepted);
out:
	conn_close(&old);
	conn_close(&new);
	conn_close(&third_conn);
	bpf_state_unpin(third);
	bpf_state_free(third);
	bpf_state_unpin(first);
	bpf_state_free(first);
	bpf_state_unpin(second);
	bpf_state_free(second);
}

/* Own network namespace with loopback up, own mount namespace with a bpffs for the pins. */
static int setup(void)
{
	struct ifreq ifr = { .ifr_name = "lo" };
	int fd;

	if (geteuid() != 0) {
		printf("SKIP: needs root (BPF, namespaces, bpffs)\n");
		return 77;
	}
	if (unshare(CLONE_NEWNET | CLONE_NEWNS) < 0) {
		printf("SKIP: unshare(CLONE_NEWNET | CLONE_NEWNS): %m\n");
		return 77;
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK) < 0) {
		printf("SKIP: no kernel BTF at /sys/kernel/btf/vmlinux\n");
		return 77;
	}
	/* The bpffs must not show in the parent namespace. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 || !mkdtemp(bpffs) ||
	    mount("bpf", bpffs, "bpf", 0, "mode=0700") < 0) {
		fprintf(stderr, "FAIL: a bpffs on %s: %m\n", bpffs);
		return 1;
	}
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0 ||
	    (ifr.ifr_flags |= IFF_UP, ioctl(fd, SIOCSIFFLAGS, &ifr)) < 0) {
		fprintf(stderr, "FAIL: bring lo up: %m\n");
		return 1;
	}
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	int r;

	log_open();
	if (argc > 1 && streq(argv[1], "-v"))
		log_set_max_level(LOG_DEBUG);
	log_bridge_libbpf(true);

	r = setup();
	if (r != 0)
		return r;
	test_adopt();

	if (umount2(bpffs, MNT_DETACH) < 0 || rmdir(bpffs) < 0)
		fprintf(stderr, "Failed to remove %s, ignoring: %m\n", bpffs);
	return CHECK_REPORT("test-bpf-reuse");
}
