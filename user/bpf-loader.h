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

struct bpf_load_options {
	const char *pin_path;
	uint32_t map_entries;
};

/*
 * Open and load the object, attach sr_redirect to sr_verdict, and pin everything under
 * pin_path (stale pins of a dead instance are replaced). Errors come back as negative errno,
 * logged at debug level only: the caller decides whether this is fatal (--mode bpf) or a reason
 * to fall back (--mode auto).
 */
int bpf_state_load(const struct bpf_load_options *o, struct bpf_state **ret, const char **ret_what);
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
