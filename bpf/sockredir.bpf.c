// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel side of sockredir: one sk_skb verdict program that moves the bytes a socket receives
 * to its peer's egress, and one tc program run with BPF_PROG_TEST_RUN that tells the proxy whether
 * a socket's psock backlog has drained. See ../README.md, "How the kernel path works".
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "sockredir.h"

/* vmlinux.h carries no #defines, and the kernel's uapi headers must not be mixed with it. */
#define AF_UNIX	   1
#define ENOENT	   2
#define EOPNOTSUPP 95

/*
 * The low bits of sk_user_data are flags (SK_USER_DATA_NOCOPY, _BPF, _PSOCK); the psock pointer is
 * the rest.
 */
#define SK_USER_DATA_PTRMASK (~7UL)
/* Bit of psock->state (enum sk_psock_state_bits): cleared after a hard send error. */
#define SK_PSOCK_TX_ENABLED 0

/*
 * Sockets whose received bytes the verdict program moves: the backend socket, and with
 * --kernel-upload the client socket too. Written by the proxy (insert), read by the kernel,
 * which runs sr_redirect on every skb these sockets receive. A socket leaves by itself on close.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, SR_MAP_ENTRIES_DEFAULT);
	__type(key, __u64); /* socket cookie */
	__type(value, __u64);
} sr_verdict SEC(".maps");

/*
 * Sockets that redirected bytes are sent on. No program is attached here: the map only gives
 * sr_redirect a reference to the target. Written by the proxy, read by sr_redirect and the probe.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, SR_MAP_ENTRIES_DEFAULT);
	__type(key, __u64); /* socket cookie */
	__type(value, __u64);
} sr_targets SEC(".maps");

/*
 * Receiving socket -> target socket. Written by the proxy before the receiving socket enters
 * sr_verdict and deleted after it is closed (closing does not clean this map). Read by
 * sr_redirect, which also adds to the byte count.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SR_MAP_ENTRIES_DEFAULT);
	__type(key, __u64); /* cookie of the proxy's receiving socket */
	__type(value, struct sr_peer);
} sr_peers SEC(".maps");

/* Data-path counters. Written by sr_redirect, read by the proxy and `sockredir stats`. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sr_kstats);
} sr_kstats SEC(".maps");

/*
 * Connection counters. Written only by the proxy, through an mmap, so that counting costs no
 * syscall; read by `sockredir stats` and bpftool. No program touches it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct sr_proxy_stats);
} sr_proxy_stats SEC(".maps");

static __always_inline struct sk_psock *sock_psock(struct sock *sk)
{
	unsigned long user_data = (unsigned long)BPF_CORE_READ(sk, sk_user_data);

	return (struct sk_psock *)(user_data & SK_USER_DATA_PTRMASK);
}

/*
 * The proxy socket that received this skb.
 *
 * For TCP, skb->sk is the receiving socket. For AF_UNIX it is not: a Unix skb is owned by the
 * socket that sent it, which is the backend's end of the pair, and its cookie would miss every
 * lookup. The proxy's socket is that sender's peer.
 */
static __always_inline struct sock *receiving_sock(struct bpf_sock *sk)
{
	struct unix_sock *sender;
	struct tcp_sock *tsk;

	if (sk->family == AF_UNIX) {
		sender = bpf_skc_to_unix_sock(sk);
		return sender ? BPF_CORE_READ(sender, peer) : NULL;
	}
	tsk = bpf_skc_to_tcp_sock(sk);
	return tsk ? (struct sock *)tsk : NULL;
}

/*
 * Must this Unix skb stay on its socket to keep the stream in order? Yes while the proxy holds
 * the connection (it is reading bytes that were queued before the socket entered the map), and
 * while earlier bytes kept that way are still unread: a redirect now would overtake them.
 */
static __always_inline bool must_hold(struct sock *receiver, const struct sr_peer *peer)
{
	struct sk_psock *psock = NULL;

	if (peer->flags & SR_PEER_HOLD)
		return true;
	if (!bpf_core_field_exists(psock->msg_tot_len))
		return false;
	psock = sock_psock(receiver);
	if (!psock)
		return false;
	if (BPF_CORE_READ(psock, msg_tot_len) > 0)
		return true;
	/* Held skbs wait here when the socket's receive buffer was full at the time. */
	return !(peer->flags & SR_PEER_TARGET) && BPF_CORE_READ(psock, ingress_skb.qlen) > 0;
}

SEC("sk_skb/stream_verdict")
int sr_redirect(struct __sk_buff *skb)
{
	struct sock *receiver;
	struct bpf_sock *sk;
	struct sr_kstats *ks;
	struct sr_peer *peer;
	__u32 zero = 0;
	__u64 cookie;
	bool is_unix;
	long verdict;

	ks = bpf_map_lookup_elem(&sr_kstats, &zero);
	if (!ks)
		return SK_DROP;

	/*
	 * A bare FIN reaches us as an empty skb. Redirecting it makes the target's send return 0,
	 * which the backlog worker takes as a hard error: it disables sending on the target for
	 * good and the rest of the stream is lost. The socket has already recorded the FIN, so
	 * dropping the skb still lets the proxy see EOF.
	 */
	if (skb->len == 0) {
		ks->empty_dropped++;
		return SK_DROP;
	}

	sk = skb->sk;
	if (!sk)
		return SK_DROP;
	is_unix = sk->family == AF_UNIX;
	receiver = receiving_sock(sk);
	if (!receiver)
		return SK_DROP;
	/* The proxy read SO_COOKIE before inserting the socket, so the cookie is set. */
	cookie = BPF_CORE_READ(receiver, __sk_common.skc_cookie.counter);

	peer = bpf_map_lookup_elem(&sr_peers, &cookie);
	if (!peer) {
		ks->peer_missing++;
		/*
		 * The proxy writes the peer entry before the socket enters sr_verdict and deletes
		 * it only after closing the socket, so this should not happen. A Unix skb is then
		 * kept where recv() finds it. A TCP skb must never get SK_PASS here: splice() can't
		 * see the psock queue and the data was seen duplicated, so it is dropped.
		 */
		return is_unix ? SK_PASS : SK_DROP;
	}

	if (is_unix && must_hold(receiver, peer)) {
		ks->held++;
		return SK_PASS;
	}

	/*
	 * Why this only ever reaches the client that the proxy paired with this socket:
	 *  - the program runs only for sockets the proxy put in sr_verdict;
	 *  - the receiving socket is found from the skb by the kernel (skb->sk, or its Unix
	 *    peer), never from data the sender controls;
	 *  - its cookie keys sr_peers, which only the proxy writes, and cookies are unique for the
	 *    life of the system, never reused, so a stale entry can't name a new socket;
	 *  - the target is looked up in sr_targets, which holds only sockets the proxy inserted;
	 *    a target that has closed is gone from it, and the redirect fails (SK_DROP).
	 * The maps are pinned 0600: no other user can write them.
	 */
	verdict = bpf_sk_redirect_hash(skb, &sr_targets, &peer->peer_cookie, 0);
	if (verdict != SK_PASS) {
		ks->redirect_failed++;
		return SK_DROP;
	}

	__sync_fetch_and_add(&peer->bytes, skb->len);
	if (peer->dir < _SR_DIR_MAX) {
		ks->bytes[peer->dir] += skb->len;
		ks->skbs[peer->dir]++;
	}
	return SK_PASS;
}

/*
 * Read a socket's psock queues: the skbs sr_redirect queued for it that the kernel worker
 * (sk_psock_backlog) has not sent yet, and the bytes held on it for recv(). The proxy waits for
 * an empty backlog before shutdown() or close(), or those bytes are lost. Run with
 * BPF_PROG_TEST_RUN on a dummy packet; it costs one lookup, whatever the number of connections.
 *
 * struct sk_psock is kernel-internal, so its fields are read with CO-RE and checked to exist.
 */
SEC("tc")
int sr_drain_probe(struct __sk_buff *ctx)
{
	__u64 key = (__u64)ctx->cb[SR_PROBE_CB_COOKIE_HI] << 32 | ctx->cb[SR_PROBE_CB_COOKIE_LO];
	bool verdict_map = ctx->cb[SR_PROBE_CB_MAP];
	struct sr_probe out = {};
	struct sk_psock *psock = NULL;
	struct unix_sock *usk;
	struct tcp_sock *tsk;
	struct bpf_sock *sk;
	struct sock *s;

	if (!bpf_core_field_exists(psock->ingress_skb) ||
	    !bpf_core_field_exists(psock->work_state.len)) {
		out.status = -EOPNOTSUPP;
		goto done;
	}

	sk = bpf_map_lookup_elem(verdict_map ? (void *)&sr_verdict : (void *)&sr_targets, &key);
	if (!sk) {
		out.status = -ENOENT;
		goto done;
	}

	tsk = bpf_skc_to_tcp_sock(sk);
	if (tsk) {
		s = (struct sock *)tsk;
	} else {
		usk = bpf_skc_to_unix_sock(sk);
		s = usk ? (struct sock *)usk : NULL;
	}
	if (s)
		psock = sock_psock(s);
	bpf_sk_release(sk);
	if (!s) {
		out.status = -EOPNOTSUPP;
		goto done;
	}

	if (psock) {
		out.queued = BPF_CORE_READ(psock, ingress_skb.qlen);
		out.partial = BPF_CORE_READ(psock, work_state.len);
		if (bpf_core_field_exists(psock->msg_tot_len))
			out.held = BPF_CORE_READ(psock, msg_tot_len);
		if (bpf_core_field_exists(psock->state))
			out.broken = !(BPF_CORE_READ(psock, state) & (1UL << SK_PSOCK_TX_ENABLED));
	}
done:
	ctx->cb[0] = out.status;
	ctx->cb[1] = out.queued;
	ctx->cb[2] = out.partial;
	ctx->cb[3] = out.held;
	ctx->cb[4] = out.broken;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
