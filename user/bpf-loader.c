// SPDX-License-Identifier: GPL-2.0
/* The BPF loader: the only file that includes the skeleton. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf-loader.h"
#include "log.h"
#include "sockredir.skel.h"

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif
#define BPF_FS_ROOT "/sys/fs/bpf"

#ifndef SR_BPF_ABI
#error "SR_BPF_ABI is not defined: the Makefile passes it, a hash of bpf/sockredir.h"
#endif

/* Room for what bpf_state_fds() hands out: every map (5 today), and the verdict program. */
#define STORE_MAX 9

struct bpf_state {
	struct sockredir *skel;
	char *pin_path;
	bool pinned;
	int lock_fd; /* the pin directory, flock()ed for the lifetime of the instance */
	int fd_verdict, fd_targets, fd_peers, fd_kstats, fd_probe, fd_proxy_stats, fd_redirect;
	/*
	 * Whole adoption (maps and programs of an earlier instance, nothing loaded): the fds above
	 * are duplicates of the caller's, ours to close. Otherwise the skeleton owns them.
	 */
	bool owns_fds;
	struct sr_proxy_stats *proxy_stats;
	size_t proxy_stats_size;
	/* For bpf_state_fds(): fds and names owned by skel. */
	int store_fds[STORE_MAX];
	const char *store_names[STORE_MAX];
	size_t n_store;
};

uint64_t bpf_abi(void)
{
	return SR_BPF_ABI;
}

/* Everything that gets pinned, by its bpftool name. */
static const char *const pin_names[] = {
	SR_MAP_VERDICT,	    SR_MAP_TARGETS,  SR_MAP_PEERS,  SR_MAP_KSTATS,
	SR_MAP_PROXY_STATS, SR_PROG_VERDICT, SR_PROG_PROBE,
};

static int mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return negative_errno();
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return negative_errno();
	return 0;
}

/* bpftool mounts bpffs the first time it pins; do the same, so pins work on a bare system. */
static int ensure_bpffs(const char *pin_path)
{
	struct statfs st;

	if (strncmp(pin_path, BPF_FS_ROOT "/", strlen(BPF_FS_ROOT) + 1) != 0)
		return 0; /* a custom path: checked when we pin into it */
	if (statfs(BPF_FS_ROOT, &st) < 0)
		return negative_errno();
	if ((unsigned long)st.f_type == BPF_FS_MAGIC)
		return 0;
	if (mount("bpf", BPF_FS_ROOT, "bpf", 0, "mode=0700") < 0)
		return negative_errno();
	log_info("Mounted bpffs on " BPF_FS_ROOT ".");
	return 0;
}

static int pin_file(char *buf, size_t size, const char *dir, const char *name)
{
	int n = snprintf(buf, size, "%s/%s", dir, name);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static void unlink_pins(const char *dir)
{
	char path[PATH_MAX];

	for (size_t i = 0; i < ELEMENTSOF(pin_names); i++)
		if (pin_file(path, sizeof(path), dir, pin_names[i]) == 0)
			(void)unlink(path);
}

static int pin_all(struct bpf_state *s, const char **ret_what)
{
	struct statfs st;
	char path[PATH_MAX];
	int r;

	r = ensure_bpffs(s->pin_path);
	if (r < 0) {
		*ret_what = "mount bpffs on " BPF_FS_ROOT;
		return r;
	}
	r = mkdir_p(s->pin_path, 0755);
	if (r < 0) {
		*ret_what = "create the pin directory";
		return r;
	}
	if (statfs(s->pin_path, &st) < 0 || (unsigned long)st.f_type != BPF_FS_MAGIC) {
		*ret_what = "pin: the pin path is not on a bpf filesystem";
		return -ENOTDIR;
	}

	/*
	 * Two instances with the same name would fight over the pins. The lock on the directory
	 * goes away with the process, even on kill -9, so a crashed instance never blocks a new
	 * one; its stale pins are simply replaced.
	 */
	s->lock_fd = open(s->pin_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->lock_fd < 0) {
		*ret_what = "open the pin directory";
		return negative_errno();
	}
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		*ret_what = "lock the pin directory (another instance with this --name is running)";
		return errno == EWOULDBLOCK ? -EBUSY : negative_errno();
	}
	unlink_pins(s->pin_path);

	struct {
		const char *name;
		int fd;
	} objs[] = {
		{ SR_MAP_VERDICT, s->fd_verdict },
		{ SR_MAP_TARGETS, s->fd_targets },
		{ SR_MAP_PEERS, s->fd_peers },
		{ SR_MAP_KSTATS, s->fd_kstats },
		{ SR_MAP_PROXY_STATS, s->fd_proxy_stats },
		{ SR_PROG_VERDICT, s->fd_redirect },
		{ SR_PROG_PROBE, s->fd_probe },
	};
	s->pinned = true;
	for (size_t i = 0; i < ELEMENTSOF(objs); i++) {
		r = pin_file(path, sizeof(path), s->pin_path, objs[i].name);
		if (r < 0 || bpf_obj_pin(objs[i].fd, path) < 0) {
			*ret_what = "pin maps and programs";
			return r < 0 ? r : negative_errno();
		}
	}
	return 0;
}

void bpf_state_unpin(struct bpf_state *s)
{
	if (!s || !s->pinned)
		return;
	unlink_pins(s->pin_path);
	if (rmdir(s->pin_path) < 0 && errno != ENOENT)
		log_debug_errno(errno, "Failed to remove %s, ignoring: %m", s->pin_path);
	/* The parent of the default path is shared by all instances: remove it once empty. */
	(void)rmdir(BPF_FS_ROOT "/sockredir");
	s->pinned = false;
}

struct bpf_state *bpf_state_free(struct bpf_state *s)
{
	if (!s)
		return NULL;
	if (s->proxy_stats)
		munmap(s->proxy_stats, s->proxy_stats_size);
	if (s->owns_fds) {
		int *fds[] = { &s->fd_verdict, &s->fd_targets,	   &s->fd_peers,   &s->fd_kstats,
			       &s->fd_probe,   &s->fd_proxy_stats, &s->fd_redirect };

		for (size_t i = 0; i < ELEMENTSOF(fds); i++)
			*fds[i] = safe_close(*fds[i]);
	}
	sockredir__destroy(s->skel);
	safe_close(s->lock_fd);
	free(s->pin_path);
	free(s);
	return NULL;
}

/*
 * Whether fd is this map of an earlier instance, made by the same build with the same
 * --map-entries. bpf_map__reuse_fd() compares nothing: it copies type, sizes, flags and
 * max_entries from the fd over what the object declares (libbpf 1.1 compares only maps it reuses
 * through a pin path, in map_is_reuse_compat()). A mismatch that reached load would be a
 * verifier error at best, and another max_entries none at all. The name counts too: sr_verdict
 * and sr_targets have the same shape, and swapping them would attach the verdict to the wrong
 * map.
 */
static int map_fits(struct bpf_map *map, int fd, const char **ret_what)
{
	const char *name = bpf_map__name(map);
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);

	if (bpf_obj_get_info_by_fd(fd, &info, &len) < 0) {
		*ret_what = "adopt the maps of the previous instance (an fd is no BPF map)";
		return log_debug_errno(errno, "Failed to read the map info of %s, fd %d: %m", name,
				       fd);
	}
	log_debug("Adopting %s: fd %d is map %u \"%s\", type %u, key %u, value %u, flags 0x%x, "
		  "%u entries.",
		  name, fd, info.id, info.name, info.type, info.key_size, info.value_size,
		  info.map_flags, info.max_entries);
	if (strncmp(info.name, name, BPF_OBJ_NAME_LEN - 1) != 0 ||
	    info.type != bpf_map__type(map) || info.key_size != bpf_map__key_size(map) ||
	    info.value_size != bpf_map__value_size(map) ||
	    info.map_flags != bpf_map__map_flags(map)) {
		*ret_what =
			"adopt the maps of the previous instance (another map, or another build "
			"of sockredir: name, type, sizes or flags differ)";
		return log_debug_errno(EINVAL,
				       "Map %s: want that name, type %u, key %u, value %u, flags "
				       "0x%x.",
				       name, bpf_map__type(map), bpf_map__key_size(map),
				       bpf_map__value_size(map), bpf_map__map_flags(map));
	}
	if (info.max_entries != bpf_map__max_entries(map)) {
		*ret_what = "adopt the maps of the previous instance (it ran with another "
			    "--map-entries)";
		return log_debug_errno(EINVAL, "Map %s has %u entries, want %u.", name,
				       info.max_entries, bpf_map__max_entries(map));
	}
	return 0;
}

/* Point every map of the object at the map of an earlier instance, before load. */
static int adopt_maps(struct bpf_state *s, const struct bpf_load_options *o, const char **ret_what)
{
	struct bpf_object *obj = s->skel->obj;
	int r;

	for (struct bpf_map *map = bpf_object__next_map(obj, NULL); map;
	     map = bpf_object__next_map(obj, map)) {
		const char *name = bpf_map__name(map);
		int fd = -EBADF;

		for (size_t i = 0; i < o->n_reuse && fd < 0; i++)
			if (streq(o->reuse_names[i], name))
				fd = o->reuse_fds[i];
		if (fd < 0) {
			*ret_what = "adopt the maps of the previous instance (one is missing)";
			return log_debug_errno(ENOENT, "No fd given for map %s.", name);
		}

		r = map_fits(map, fd, ret_what);
		if (r < 0)
			return r;

		/* libbpf keeps a duplicate, and at load neither creates nor fills this map. */
		r = bpf_map__reuse_fd(map, fd);
		if (r < 0) {
			*ret_what = "adopt the maps of the previous instance";
			return log_debug_errno(r, "Failed to reuse fd %d for map %s: %m", fd, name);
		}
	}
	return 0;
}

uint64_t bpf_object_hash(void)
{
	const uint8_t *p;
	uint64_t h = UINT64_C(0xcbf29ce484222325); /* FNV-1a */
	size_t n;

	p = sockredir__elf_bytes(&n);
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * UINT64_C(0x100000001b3);
	return h;
}

static int reuse_fd(const struct bpf_load_options *o, const char *name)
{
	for (size_t i = 0; i < o->n_reuse; i++)
		if (streq(o->reuse_names[i], name))
			return o->reuse_fds[i];
	return -EBADF;
}

/* The fd of one of the object's maps, by name, wherever it came from. */
static int map_fd(const struct bpf_state *s, const char *name)
{
	return streq(name, SR_MAP_VERDICT)     ? s->fd_verdict :
	       streq(name, SR_MAP_TARGETS)     ? s->fd_targets :
	       streq(name, SR_MAP_PEERS)       ? s->fd_peers :
	       streq(name, SR_MAP_KSTATS)      ? s->fd_kstats :
	       streq(name, SR_MAP_PROXY_STATS) ? s->fd_proxy_stats :
						 -EBADF;
}

/*
 * Maps and programs both of an earlier instance of this very build (the caller checked
 * bpf_object_hash()): nothing is loaded, so nothing is verified again, which under load took
 * 1.4 s of a restart. sr_redirect stays attached to sr_verdict: the map keeps it.
 */
static int adopt_whole(struct bpf_state *s, const struct bpf_load_options *o, const char **ret_what)
{
	struct {
		const char *name;
		int *fd;
	} objs[] = {
		{ SR_MAP_VERDICT, &s->fd_verdict },
		{ SR_MAP_TARGETS, &s->fd_targets },
		{ SR_MAP_PEERS, &s->fd_peers },
		{ SR_MAP_KSTATS, &s->fd_kstats },
		{ SR_MAP_PROXY_STATS, &s->fd_proxy_stats },
		{ SR_PROG_VERDICT, &s->fd_redirect },
		{ SR_PROG_PROBE, &s->fd_probe },
	};

	s->owns_fds = true;
	for (size_t i = 0; i < ELEMENTSOF(objs); i++)
		*objs[i].fd = -EBADF;
	for (size_t i = 0; i < ELEMENTSOF(objs); i++) {
		int fd = reuse_fd(o, objs[i].name);

		if (fd < 0) {
			*ret_what = "adopt the programs of the previous instance (one is missing)";
			return -ENOENT;
		}
		*objs[i].fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
		if (*objs[i].fd < 0) {
			*ret_what = "adopt the programs of the previous instance";
			return negative_errno();
		}
	}
	return 0;
}

int bpf_state_load(const struct bpf_load_options *o, struct bpf_state **ret, const char **ret_what)
{
	_cleanup_(bpf_state_freep) struct bpf_state *s = NULL;
	const char *what = "open the BPF object";
	struct bpf_map *map;
	void *mem;
	long page;
	int r;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->lock_fd = -EBADF;
	s->pin_path = strdup(o->pin_path);
	if (!s->pin_path)
		return -ENOMEM;

	s->skel = sockredir__open();
	if (!s->skel) {
		r = negative_errno();
		goto fail;
	}

	what = "size the maps";
	r = bpf_map__set_max_entries(s->skel->maps.sr_verdict, o->map_entries);
	if (r >= 0)
		r = bpf_map__set_max_entries(s->skel->maps.sr_targets, o->map_entries);
	if (r >= 0)
		r = bpf_map__set_max_entries(s->skel->maps.sr_peers, o->map_entries);
	if (r < 0)
		goto fail;

	if (o->n_reuse > 0) {
		r = adopt_maps(s, o, &what);
		if (r < 0)
			goto fail;
	}

	if (o->adopt_programs) {
		r = adopt_whole(s, o, &what);
		if (r < 0)
			goto fail;
		goto loaded;
	}

	what = "load the BPF programs";
	r = sockredir__load(s->skel);
	if (r < 0)
		goto fail;

	s->fd_verdict = bpf_map__fd(s->skel->maps.sr_verdict);
	s->fd_targets = bpf_map__fd(s->skel->maps.sr_targets);
	s->fd_peers = bpf_map__fd(s->skel->maps.sr_peers);
	s->fd_kstats = bpf_map__fd(s->skel->maps.sr_kstats);
	s->fd_probe = bpf_program__fd(s->skel->progs.sr_drain_probe);
	s->fd_proxy_stats = bpf_map__fd(s->skel->maps.sr_proxy_stats);
	s->fd_redirect = bpf_program__fd(s->skel->progs.sr_redirect);

	/*
	 * libbpf 1.1's skeleton attach leaves sk_skb programs alone, and it has no
	 * bpf_program__attach_sockmap(): attach the verdict to the map by hand. It stays attached
	 * as long as the map has a user (an fd or a pin). On an adopted map this replaces the
	 * earlier instance's program (sock_map_prog_update() -> psock_set_prog(), a plain xchg
	 * unless a bpf_link holds the slot) for sockets inserted from now on; each socket already
	 * in the map keeps the program its psock took at insert.
	 */
	what = "attach the verdict program to " SR_MAP_VERDICT;
	if (bpf_prog_attach(s->fd_redirect, s->fd_verdict, BPF_SK_SKB_STREAM_VERDICT, 0) < 0) {
		r = negative_errno();
		goto fail;
	}

loaded:
	/* The proxy counts by plain stores into this mapping: no syscall per event. */
	what = "map the proxy counters";
	page = sysconf(_SC_PAGESIZE);
	s->proxy_stats_size = (sizeof(struct sr_proxy_stats) + (size_t)page - 1) &
			      ~((size_t)page - 1);
	mem = mmap(NULL, s->proxy_stats_size, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd_proxy_stats,
		   0);
	if (mem == MAP_FAILED) {
		r = negative_errno();
		goto fail;
	}
	s->proxy_stats = mem;

	/* A first probe tells whether this kernel's psock layout is one we can read. */
	what = "read psock state (drain probe)";
	r = bpf_probe_psock(s, 0, false, &(struct sr_probe){});
	if (r == -EOPNOTSUPP)
		goto fail;

	/*
	 * For bpf_state_fds(): every map of the object, taken from the object so that a map added
	 * to it later is stored (and so required on adoption) too, and the verdict program.
	 */
	what = "list the maps to keep across a restart";
	for (map = bpf_object__next_map(s->skel->obj, NULL); map;
	     map = bpf_object__next_map(s->skel->obj, map)) {
		if (s->n_store >= STORE_MAX - 2) {
			r = -E2BIG;
			goto fail;
		}
		s->store_names[s->n_store] = bpf_map__name(map);
		s->store_fds[s->n_store++] = map_fd(s, bpf_map__name(map));
	}
	s->store_names[s->n_store] = SR_PROG_VERDICT;
	s->store_fds[s->n_store++] = s->fd_redirect;
	s->store_names[s->n_store] = SR_PROG_PROBE;
	s->store_fds[s->n_store++] = s->fd_probe;

	r = pin_all(s, &what);
	if (r < 0)
		goto fail;

	*ret = TAKE_PTR(s);
	return 0;
fail:
	if (s->pinned)
		bpf_state_unpin(s);
	if (ret_what)
		*ret_what = what;
	return log_debug_errno(r, "Failed to %s: %m", what);
}

int bpf_state_fds(struct bpf_state *s, const int **ret_fds, const char *const **ret_names,
		  size_t *ret_n)
{
	if (!s || s->n_store == 0)
		return -EINVAL;
	*ret_fds = s->store_fds;
	*ret_names = s->store_names;
	*ret_n = s->n_store;
	return 0;
}

struct sr_proxy_stats *bpf_state_proxy_stats(struct bpf_state *s)
{
	return s->proxy_stats;
}

int bpf_state_read_kstats(struct bpf_state *s, struct sr_kstats *ret)
{
	int ncpu = libbpf_num_possible_cpus();
	struct sr_kstats *v, sum = {};
	__u32 zero = 0;

	if (ncpu <= 0)
		return ncpu < 0 ? ncpu : -EINVAL;
	v = calloc((size_t)ncpu, sizeof(*v));
	if (!v)
		return -ENOMEM;
	if (bpf_map_lookup_elem(s->fd_kstats, &zero, v) < 0) {
		int r = negative_errno();

		free(v);
		return r;
	}
	for (int i = 0; i < ncpu; i++) {
		for (int d = 0; d < _SR_DIR_MAX; d++) {
			sum.bytes[d] += v[i].bytes[d];
			sum.skbs[d] += v[i].skbs[d];
		}
		sum.redirect_failed += v[i].redirect_failed;
		sum.peer_missing += v[i].peer_missing;
		sum.empty_dropped += v[i].empty_dropped;
		sum.held += v[i].held;
	}
	free(v);
	*ret = sum;
	return 0;
}

int bpf_sock_insert(struct bpf_state *s, bool verdict_map, uint64_t cookie, int fd)
{
	__u64 value = (__u64)fd;

	if (bpf_map_update_elem(verdict_map ? s->fd_verdict : s->fd_targets, &cookie, &value,
				BPF_NOEXIST) < 0)
		return negative_errno();
	return 0;
}

int bpf_sock_remove(struct bpf_state *s, bool verdict_map, uint64_t cookie)
{
	if (bpf_map_delete_elem(verdict_map ? s->fd_verdict : s->fd_targets, &cookie) < 0)
		return negative_errno();
	return 0;
}

int bpf_peer_add(struct bpf_state *s, uint64_t cookie, uint64_t peer_cookie, enum sr_direction dir,
		 uint32_t flags)
{
	struct sr_peer v = { .peer_cookie = peer_cookie, .dir = dir, .flags = flags };

	/* Cookies are unique for the boot, so a new socket has no entry to keep a count from. */
	if (bpf_map_update_elem(s->fd_peers, &cookie, &v, BPF_NOEXIST) < 0)
		return negative_errno();
	return 0;
}

int bpf_peer_set(struct bpf_state *s, uint64_t cookie, uint64_t peer_cookie, enum sr_direction dir,
		 uint32_t flags)
{
	struct sr_peer old = {}, v = {
		.peer_cookie = peer_cookie,
		.dir = dir,
		.flags = flags,
	};

	/* Keep the byte count across flag changes (an update writes the whole value). */
	if (bpf_map_lookup_elem(s->fd_peers, &cookie, &old) == 0)
		v.bytes = old.bytes;
	if (bpf_map_update_elem(s->fd_peers, &cookie, &v, BPF_ANY) < 0)
		return negative_errno();
	return 0;
}

int bpf_peer_get(struct bpf_state *s, uint64_t cookie, struct sr_peer *ret)
{
	struct sr_peer v;

	if (bpf_map_lookup_elem(s->fd_peers, &cookie, &v) < 0)
		return negative_errno();
	*ret = v;
	return 0;
}

int bpf_peer_remove(struct bpf_state *s, uint64_t cookie)
{
	if (bpf_map_delete_elem(s->fd_peers, &cookie) < 0)
		return negative_errno();
	return 0;
}

int bpf_probe_psock(struct bpf_state *s, uint64_t cookie, bool verdict_map, struct sr_probe *ret)
{
	/* A tc program needs at least an Ethernet header of input; its content is unused. */
	unsigned char pkt[64] = {};
	struct __sk_buff ctx = {};
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt, .data_size_in = sizeof(pkt),
		    .ctx_in = &ctx, .ctx_size_in = sizeof(ctx), .ctx_out = &ctx,
		    .ctx_size_out = sizeof(ctx), .repeat = 1);
	struct sr_probe out;

	_Static_assert(sizeof(out) == sizeof(ctx.cb), "struct sr_probe must fill __sk_buff.cb");
	ctx.cb[SR_PROBE_CB_COOKIE_LO] = (uint32_t)cookie;
	ctx.cb[SR_PROBE_CB_COOKIE_HI] = (uint32_t)(cookie >> 32);
	ctx.cb[SR_PROBE_CB_MAP] = verdict_map;
	if (bpf_prog_test_run_opts(s->fd_probe, &opts) < 0)
		return negative_errno();
	memcpy(&out, ctx.cb, sizeof(out));
	if (out.status < 0)
		return out.status;
	*ret = out;
	return 0;
}
