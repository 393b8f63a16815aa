/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Loading, attaching and pinning the BPF object, and the calls that touch its maps. This is the
 * only file that includes the generated skeleton.
 */
#ifndef SR_BPF_LOADER_H
#define SR_BPF_LOADER_H

#include "../bpf/sockredir.h"
#include "util.h"

struct bpf_state;

/*
 * The ABI of bpf/sockredir.h (keys, values, counters) as one number: the Makefile passes it to
 * every object as -DSR_BPF_ABI, the first 16 hex digits of the header's sha256. Maps of an
 * earlier instance are safe to adopt only under the same ABI: the loader checks their type,
 * sizes, flags and max_entries, but a value whose fields moved keeps its size.
 */
uint64_t bpf_abi(void);

struct bpf_load_options {
	const char *pin_path;
	uint32_t map_entries;
	/*
	 * Maps of an earlier instance to adopt instead of creating new ones, by bpftool name
	 * (SR_MAP_*), e.g. from systemd's fd store after a restart. NULL/0: create. Every map of
	 * the object must be given, or -ENOENT; names that are no map of the object (SR_PROG_*)
	 * are ignored, so that what bpf_state_fds() gave can be passed back whole. The fds stay
	 * the caller's: the loader keeps duplicates. Nothing in an adopted map is reset.
	 */
	const int *reuse_fds;
	const char *const *reuse_names;
	size_t n_reuse;
	/*
	 * The programs too (SR_PROG_VERDICT and SR_PROG_PROBE among the reuse names): only when
	 * they came from this very build (bpf_object_hash()). Nothing is then loaded or attached.
	 */
	bool adopt_programs;
};

/* A hash of the BPF object this build carries: programs with the same one are the same code. */
uint64_t bpf_object_hash(void);

/*
 * Open and load the object, attach sr_redirect to sr_verdict, and pin everything under
 * pin_path (stale pins of a dead instance are replaced). Errors come back as negative errno,
 * logged at debug level only: the caller decides whether this is fatal (--mode bpf) or a reason
 * to fall back (--mode auto).
 *
 * With maps to adopt, the programs are loaded anew against them, and attaching sr_redirect to
 * the adopted sr_verdict replaces the earlier instance's program for sockets inserted from now
 * on; sockets already in the map keep the program they were inserted under, which uses the same
 * maps. A map that does not fit (another build, another --map-entries, or an fd that is not
 * that map) fails with -EINVAL and nothing is created or pinned.
 */
int bpf_state_load(const struct bpf_load_options *o, struct bpf_state **ret, const char **ret_what);
/*
 * The maps and programs that must outlive the process with its connections, for systemd's fd
 * store: *ret_n entries, names are the bpftool names. The fds stay owned by s.
 */
int bpf_state_fds(struct bpf_state *s, const int **ret_fds, const char *const **ret_names,
		  size_t *ret_n);
/* Remove the pins. Called on a clean exit; a crashed instance's pins are replaced on restart. */
void bpf_state_unpin(struct bpf_state *s);
struct bpf_state *bpf_state_free(struct bpf_state *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct bpf_state *, bpf_state_free);

/* The proxy's counters, mapped from sr_proxy_stats. */
struct sr_proxy_stats *bpf_state_proxy_stats(struct bpf_state *s);
/* Sum of sr_kstats over all CPUs. */
int bpf_state_read_kstats(struct bpf_state *s, struct sr_kstats *ret);

/* Map operations. All return 0 or negative errno. */
int bpf_sock_insert(struct bpf_state *s, bool verdict_map, uint64_t cookie, int fd);
int bpf_sock_remove(struct bpf_state *s, bool verdict_map, uint64_t cookie);
/* A new socket's entry, in one syscall. */
int bpf_peer_add(struct bpf_state *s, uint64_t cookie, uint64_t peer_cookie, enum sr_direction dir,
		 uint32_t flags);
/* Change an entry's peer, direction or flags, keeping its byte count (a lookup, then an update). */
int bpf_peer_set(struct bpf_state *s, uint64_t cookie, uint64_t peer_cookie, enum sr_direction dir,
		 uint32_t flags);
int bpf_peer_get(struct bpf_state *s, uint64_t cookie, struct sr_peer *ret);
int bpf_peer_remove(struct bpf_state *s, uint64_t cookie);

/*
 * Run sr_drain_probe for the socket with this cookie, looked up in sr_targets (verdict_map
 * false) or sr_verdict, and return what it read of the socket's psock. -ENOENT if the socket is
 * not in the map, -EOPNOTSUPP if this kernel's psock is not one we know how to read.
 */
int bpf_probe_psock(struct bpf_state *s, uint64_t cookie, bool verdict_map, struct sr_probe *ret);

#endif /* SR_BPF_LOADER_H */
