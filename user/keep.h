/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Keeping connections across a restart or a crash, in systemd's fd store (keep.c): the state
 * record, the bags of fds, and taking them over in the next process.
 */
#ifndef SR_KEEP_H
#define SR_KEEP_H

#include "connection.h"

struct fdstore;
struct named_fd;
struct keep;

/* Names in the store: "sr.state.ID" (a record), "sr.bag.ID.SEQ" (its bags), "sr.bpf.MAP". */
#define KEEP_BPF_PREFIX "sr.bpf."

/* What earlier processes left in the store, read before the BPF object is loaded. */
struct keep_found {
	unsigned n_records;
	unsigned n_abi_mismatch; /* records written under another BPF ABI (bpf/sockredir.h) */
};
void keep_inspect(const struct named_fd *fds, size_t n, struct keep_found *ret);

/*
 * Keep this process's connections in store from now on: a state record of its own, stored at
 * once, and a tick that puts connections open for KEEP_AGE into a new bag.
 */
int keep_new(struct fdstore *store, struct connections *cs, struct keep **ret);
struct keep *keep_free(struct keep *k);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct keep *, keep_free);

/*
 * A kept client socket that was still being set up (peek or connect): the callee sets it up
 * again from the start, as if just accepted on the listener of that name. It owns fd.
 */
typedef void (*keep_fresh_fn)(void *userdata, int fd, const char *listener);

/*
 * Take over the records, and their bags, that earlier processes left: those of share `share` of
 * n_shares (records sorted by name, the k-th goes to share k % n_shares), so that workers split
 * them. kernel_ok: the maps of the record's BPF ABI were adopted, so connections on the kernel
 * path can resume; otherwise they are closed with a FIN. Fds of other shares are left alone.
 * Logs what it did. Returns how many connections were restored, or negative errno.
 */
int keep_restore(struct keep *k, struct named_fd *fds, size_t n, unsigned share, unsigned n_shares,
		 bool kernel_ok, keep_fresh_fn fresh, void *userdata);

/*
 * Exiting for a restart: keep every connection now, those in setup as client sockets to set up
 * again, and a download being settled by hand with the bytes it holds; then mark the set as
 * handing over (see struct connections). *ret_left: connections that could not be kept (the
 * store refused, out of memory or fds), which close on exit.
 */
int keep_hand_over(struct keep *k, unsigned *ret_kept, unsigned *ret_left);

#endif /* SR_KEEP_H */
