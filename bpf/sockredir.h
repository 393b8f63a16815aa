/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The ABI between sockredir.bpf.c and the user side: map keys and values, counters and limits.
 * Both sides include this file, so it uses only fixed-width kernel types.
 */
#ifndef SOCKREDIR_H
#define SOCKREDIR_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Default number of entries in each map; --map-entries overrides it before load. */
#define SR_MAP_ENTRIES_DEFAULT 65536

/*
 * Names of the maps and programs as bpftool shows them. The kernel cuts object names at 15
 * characters, so every name here fits whole. They are also the file names of the pins.
 */
#define SR_MAP_VERDICT	   "sr_verdict"	    /* sockets whose receive path runs the verdict */
#define SR_MAP_TARGETS	   "sr_targets"	    /* sockets that redirected bytes are sent on */
#define SR_MAP_PEERS	   "sr_peers"	    /* receiving socket cookie -> where its bytes go */
#define SR_MAP_KSTATS	   "sr_kstats"	    /* per-CPU data-path counters, written by BPF */
#define SR_MAP_PROXY_STATS "sr_proxy_stats" /* connection counters, written by the proxy */
#define SR_PROG_VERDICT	   "sr_redirect"
#define SR_PROG_PROBE	   "sr_drain_probe"

/* Which way a socket's received bytes travel. */
enum sr_direction {
	SR_DIR_DOWN = 0, /* backend -> client */
	SR_DIR_UP = 1,	 /* client -> backend */
	_SR_DIR_MAX,
};

/*
 * Value of sr_peers, keyed by the cookie of the socket the bytes arrive on (the proxy's own
 * socket, never the backend's end of a Unix pair).
 */
struct sr_peer {
	__u64 peer_cookie; /* key in sr_targets of the socket to send on */
	__u64 bytes;	   /* bytes redirected for this socket, for idle checks and stats */
	__u32 dir;	   /* enum sr_direction */
	__u32 flags;	   /* SR_PEER_* */
};

/*
 * Keep this Unix socket's bytes on the socket (SK_PASS) instead of redirecting them, so that
 * recv() reads them in order. The proxy sets it while it moves bytes that were queued before
 * the socket entered sr_verdict: see "Backend speaks first" in README.md.
 */
#define SR_PEER_HOLD (1U << 0)
/*
 * This socket is also a redirect target (--kernel-upload), so its psock backlog carries bytes
 * on their way out and says nothing about bytes held on the way in.
 */
#define SR_PEER_TARGET (1U << 1)

/* Value of sr_kstats (BPF_MAP_TYPE_PERCPU_ARRAY, one entry): what the verdict program did. */
struct sr_kstats {
	__u64 bytes[_SR_DIR_MAX]; /* bytes redirected, per direction */
	__u64 skbs[_SR_DIR_MAX];  /* skbs redirected, per direction */
	__u64 redirect_failed;	  /* target socket no longer in sr_targets */
	__u64 peer_missing;	  /* no sr_peers entry for the receiving socket */
	__u64 empty_dropped;	  /* zero-length skbs (a bare FIN) dropped on purpose */
	__u64 held;		  /* skbs kept on their socket (SR_PEER_HOLD or queued) */
};

/* Why a connection was carried on the userspace path instead of the kernel path. */
enum sr_fallback_reason {
	SR_FALLBACK_NONE = 0,
	SR_FALLBACK_MODE,	   /* --mode splice, or BPF unavailable at start-up */
	SR_FALLBACK_CLIENT_STATE,  /* client socket refused (already half-closed: CLOSE_WAIT) */
	SR_FALLBACK_BACKEND_STATE, /* backend socket refused */
	SR_FALLBACK_MAP_FULL,	   /* a map was full (E2BIG/ENOMEM) */
	SR_FALLBACK_OTHER,	   /* any other insert error */
	/*
	 * The client is a Unix socket: its shutdown() would take our socket out of the sockmaps
	 * (unix_shutdown() -> sock_map_unhash()) and lose the bytes its psock backlog held.
	 * Appended, so that the older reasons keep their index in fallback[].
	 */
	SR_FALLBACK_CLIENT_UNIX,
	/*
	 * The backend had sent bytes before its socket could join sr_verdict. They would be settled
	 * by hand under SR_PEER_HOLD, where a backend that goes on sending keeps adding held bytes,
	 * and its shutdown() takes our socket out of the maps and frees the held ones (measured:
	 * pushes of 64 MiB then shutdown() arrived cut short in 2 of 10 runs).
	 */
	SR_FALLBACK_BACKEND_FIRST,
	_SR_FALLBACK_MAX,
};

/*
 * The movers a flow can be on. A flow in userspace starts on recv()/send() (copy) and moves to
 * splice once it carries bulk; a flow on the kernel path is there from its first byte.
 */
enum sr_mover {
	SR_MOVER_COPY = 0, /* recv()/send() through a small buffer */
	SR_MOVER_SPLICE,   /* splice() through a pipe */
	SR_MOVER_KERNEL,   /* sr_redirect, in the kernel */
	_SR_MOVER_MAX,
};

/*
 * Value of sr_proxy_stats (BPF_MAP_TYPE_ARRAY, one entry, mmapable). Only the proxy writes it, by
 * plain stores through its mmap, so counting costs no syscall. Readers use a map lookup.
 */
struct sr_proxy_stats {
	__u64 accepted;			  /* client connections accepted */
	__u64 open;			  /* connections open now */
	__u64 kernel;			  /* connections whose download moved in the kernel */
	__u64 kernel_upload;		  /* ... and whose upload did too */
	__u64 fallback[_SR_FALLBACK_MAX]; /* connections carried by splice, per reason */
	__u64 connect_failed;		  /* backend connect failures */
	__u64 spliced_bytes[_SR_DIR_MAX]; /* bytes moved by the userspace path, per direction */
	__u64 flushed_bytes;		  /* kernel path, backend->client bytes moved by hand:
					   * queued before insertion, or held while settling */
	__u64 drain_checks;		  /* psock backlog checks run before shutdown or close */
	__u64 peek_failed;		  /* no valid Host or SNI (malformed, too long, timeout) */
	__u64 idle_closed;		  /* closed by --idle-timeout */
	__u64 reloads;			  /* successful SIGHUP reloads */
	/* Written once at start-up, so that readers can show how this instance dispatches. */
	__u32 workers;		/* processes serving connections (--workers) */
	__u32 upload_kernel;	/* 1: client->backend moves in the kernel too (--kernel-upload) */
	__u64 reloads_failed;	/* SIGHUP reloads refused (the old configuration stayed) */
	__u32 main_pid;		/* the process to send SIGHUP to (`sockredir reload`) */
	__u32 mode;		/* --mode as given: 0 auto, 1 bpf, 2 splice (enum sr_mode) */
	__u64 flushed_bytes_up; /* the same, client->backend (--kernel-upload) */
	/* Restarts without dropping connections, through systemd's fd store (user/keep.c). */
	__u64 kept;	      /* connections whose fds are in the store now */
	__u64 restored;	      /* connections taken over from the previous process */
	__u64 restore_closed; /* kept connections that could not be taken over: closed with a FIN */
	__u64 store_fds;      /* fds sockredir holds in the store now: bags, records, BPF maps */
	/* Adaptive dispatch (user/splice-path.c, user/connection.c). */
	__u64 copied_bytes[_SR_DIR_MAX];    /* bytes moved by recv()/send(), per direction */
	__u64 promoted_splice[_SR_DIR_MAX]; /* flows moved from recv()/send() to splice() */
	__u64 carried[_SR_MOVER_MAX];	    /* closed connections, by the fastest mover they used */
	__u64 promoted_kernel; /* spliced downloads moved to the kernel at a request boundary */
};

/*
 * The drain probe's input and output travel in the __sk_buff.cb[] of its BPF_PROG_TEST_RUN, never
 * in a global: worker processes probe at the same time, and each run has its own context.
 *   in:  cb[SR_PROBE_CB_COOKIE_LO], cb[SR_PROBE_CB_COOKIE_HI]: key of the socket to check;
 *        cb[SR_PROBE_CB_MAP]: 0 = look it up in sr_targets, 1 = in sr_verdict
 *   out: struct sr_probe, one __u32 per cb[] slot, in order
 */
enum {
	SR_PROBE_CB_COOKIE_LO = 0,
	SR_PROBE_CB_COOKIE_HI = 1,
	SR_PROBE_CB_MAP = 2,
};

struct sr_probe {
	__s32 status;  /* 0, or -ENOENT (not in the map), -EOPNOTSUPP (fields unknown) */
	__u32 queued;  /* skbs waiting in the socket's psock backlog */
	__u32 partial; /* bytes of a partly sent skb the backlog worker will retry */
	__u32 held;    /* bytes kept on the socket by SK_PASS, not yet read (ingress_msg) */
	__u32 broken;  /* the psock stopped sending after a hard error; queued bytes are lost */
};

#endif /* SOCKREDIR_H */
