// SPDX-License-Identifier: GPL-2.0
/*
 * The kernel path. The layout, measured in KERNEL-NOTES "Second round":
 *
 *   sr_verdict (sr_redirect attached): the backend socket; with --kernel-upload the client too.
 *   sr_targets (no program):           the client socket; with --kernel-upload the backend too.
 *   sr_peers:                          receiving socket cookie -> target cookie.
 *
 * Backend->client bytes are redirected to the client's egress by sr_redirect and sent by the
 * kernel's psock worker. Client->backend bytes stay on the TCP receive path and are spliced,
 * so TCP flow control bounds the memory one client can pin.
 */
#include <linux/sockios.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_received */
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "bpf-loader.h"
#include "kernel-path.h"
#include "log.h"
#include "stats.h"

static int sock_cookie(int fd, uint64_t *ret)
{
	socklen_t len = sizeof(*ret);
	uint64_t v;

	if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &v, &len) < 0)
		return negative_errno();
	*ret = v;
	return 0;
}

static int sock_inq(int fd, uint64_t *ret)
{
	int v;

	if (ioctl(fd, SIOCINQ, &v) < 0)
		return negative_errno();
	*ret = v > 0 ? (uint64_t)v : 0;
	return 0;
}

static int reason_from_errno(int r, bool client)
{
	switch (-r) {
	case EOPNOTSUPP:
		/* sockmap takes TCP only in ESTABLISHED (or LISTEN): the peer already sent FIN. */
		return client ? SR_FALLBACK_CLIENT_STATE : SR_FALLBACK_BACKEND_STATE;
	case E2BIG:
	case ENOMEM:
	case ENOSPC:
		return SR_FALLBACK_MAP_FULL;
	default:
		return SR_FALLBACK_OTHER;
	}
}

/*
 * Data that reached a socket before it joined sr_verdict does not run the verdict by itself.
 * TCP has a kick: setting SO_RCVLOWAT calls sk_data_ready, and the verdict takes the queued
 * bytes in order. A Unix socket has none (no set_rcvlowat; each sk_data_ready moves one skb, so
 * k queued skbs would become a permanent lag of k): the caller settles it by hand instead.
 * Returns true if a Unix socket has bytes to settle.
 */
static bool kick_queued(struct end *e)
{
	uint64_t inq = 0;
	int one = 1;

	if (!e->is_unix) {
		if (setsockopt(e->fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one)) < 0)
			log_debug_errno(errno, "Failed to set SO_RCVLOWAT, ignoring: %m");
		return false;
	}
	return sock_inq(e->fd, &inq) >= 0 && inq > 0;
}

static int insert(struct bpf_state *bpf, struct end *e, bool verdict)
{
	int r;

	r = bpf_sock_insert(bpf, verdict, e->cookie, e->fd);
	if (r < 0)
		return r;
	if (verdict)
		e->in_verdict = true;
	else
		e->in_targets = true;
	return 0;
}

/*
 * Remove a socket that no verdict has redirected through yet. Only safe before the receiving
 * side is live: a delete racing with the verdict on another CPU drops an skb.
 */
static void undo_insert(struct bpf_state *bpf, struct end *e, bool verdict)
{
	if (verdict ? !e->in_verdict : !e->in_targets)
		return;
	if (bpf_sock_remove(bpf, verdict, e->cookie) < 0)
		log_debug_errno(errno, "Failed to remove socket from map, ignoring: %m");
	if (verdict)
		e->in_verdict = false;
	else
		e->in_targets = false;
}

int kernel_path_attach(struct movers *m, struct end *client, struct end *backend, bool *ret_settle)
{
	struct bpf_state *bpf = m->bpf;
	uint32_t flags = m->kernel_upload ? SR_PEER_TARGET : 0;
	uint64_t inq = 0;
	int reason = 0, r = 0;

	/*
	 * A Unix client stays out of the maps, both ways. When it calls shutdown(), in any mode
	 * (SHUT_WR after its request, as socat or nc -N do), unix_shutdown() calls our socket's
	 * sk_prot->unhash: with a psock that is sock_map_unhash() (unix_stream_bpf_rebuild_protos()),
	 * which removes it from every sockmap, and sk_psock_drop() / sk_psock_destroy() free what its
	 * backlog still held. Reply bytes already redirected are lost, and sr_redirect drops the
	 * later ones (redirect_failed). With --kernel-upload it would be in sr_verdict too, and the
	 * same unhash would cut the upload. Its close() doesn't do this, but which one a client
	 * will call can't be known in advance. See README.md, "Known limits".
	 */
	if (client->is_unix)
		return SR_FALLBACK_CLIENT_UNIX;

	r = sock_cookie(client->fd, &client->cookie);
	if (r >= 0)
		r = sock_cookie(backend->fd, &backend->cookie);
	if (r < 0)
		return log_debug_errno(r, "Failed to read SO_COOKIE: %m"), SR_FALLBACK_OTHER;

	/*
	 * The target first: if the client is already half-closed (CLOSE_WAIT) the insert fails,
	 * and nothing else has been done yet, so the whole connection simply uses splice.
	 */
	r = insert(bpf, client, false);
	if (r < 0)
		return reason_from_errno(r, true);

	r = bpf_peer_add(bpf, backend->cookie, client->cookie, SR_DIR_DOWN, flags);
	if (r < 0) {
		undo_insert(bpf, client, false);
		return reason_from_errno(r, false);
	}
	backend->has_peer = true;

	if (m->kernel_upload) {
		r = insert(bpf, backend, false);
		if (r < 0)
			goto undo;
	}

	/*
	 * A Unix backend that has already sent something stays in userspace. Its queued bytes
	 * don't run the verdict by themselves (see kick_queued()), and settling them by hand
	 * holds what it sends meanwhile on our socket, where its shutdown() frees them
	 * (unix_shutdown() unhashes our socket; the psock goes, and its ingress_msg with it). So
	 * the check is the last thing before the insert; bytes that still arrive in between are
	 * settled (flow.c), as before.
	 */
	if (backend->is_unix && sock_inq(backend->fd, &inq) == 0 && inq > 0) {
		reason = SR_FALLBACK_BACKEND_FIRST;
		goto undo;
	}
	if (m->debug_insert_delay)
		usleep((useconds_t)m->debug_insert_delay);
	/* From this insert on, every skb the backend sends runs sr_redirect. */
	r = insert(bpf, backend, true);
	if (r < 0)
		goto undo;

	*ret_settle = kick_queued(backend);
	return 0;
undo:
	undo_insert(bpf, backend, false);
	undo_insert(bpf, client, false);
	(void)bpf_peer_remove(bpf, backend->cookie);
	backend->has_peer = false;
	return reason ?: reason_from_errno(r, false);
}

int kernel_path_attach_upload(struct movers *m, struct end *client, struct end *backend,
			      bool *ret_settle)
{
	struct bpf_state *bpf = m->bpf;
	int r, size;

	if (!backend->in_targets)
		return SR_FALLBACK_OTHER;

	r = bpf_peer_add(bpf, client->cookie, backend->cookie, SR_DIR_UP, SR_PEER_TARGET);
	if (r < 0)
		return reason_from_errno(r, true);
	client->has_peer = true;

	/*
	 * The psock worker retries a send that would block one jiffy later, so upload speed is
	 * about one send buffer per tick: it takes a large one (KERNEL-NOTES: 128 MiB effective
	 * reached 0.89x direct). SO_SNDBUFFORCE passes the wmem_max cap; the kernel doubles it.
	 */
	if (backend->is_unix) {
		size = (int)MIN(m->upload_sndbuf, (uint64_t)INT32_MAX / 2);
		if (setsockopt(backend->fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0 &&
		    setsockopt(backend->fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size)) < 0)
			log_debug_errno(errno,
					"Failed to size the backend send buffer, ignoring: %m");
	}

	r = insert(bpf, client, true);
	if (r < 0)
		return reason_from_errno(r, true); /* the peer entry goes with the connection */

	*ret_settle = kick_queued(client);
	return 0;
}

void kernel_path_forget(struct movers *m, struct end *client, struct end *backend)
{
	struct bpf_state *bpf = m->bpf;

	if (backend->has_peer && bpf_peer_remove(bpf, backend->cookie) < 0)
		log_debug_errno(errno, "Failed to remove peer entry, ignoring: %m");
	if (client->has_peer && bpf_peer_remove(bpf, client->cookie) < 0)
		log_debug_errno(errno, "Failed to remove peer entry, ignoring: %m");
	backend->has_peer = client->has_peer = false;
}

int kernel_path_adopt(struct movers *m, struct end *client, struct end *backend, bool down, bool up,
		      bool *ret_hold_down, bool *ret_hold_up)
{
	struct sr_peer peer;
	int r;

	r = sock_cookie(client->fd, &client->cookie);
	if (r >= 0)
		r = sock_cookie(backend->fd, &backend->cookie);
	if (r < 0)
		return r;

	/*
	 * Only this process removes sr_peers entries, so they tell whether the sockets are still
	 * the pair that was kept. The sockets themselves may have left the sockhashes meanwhile (the
	 * kernel takes a Unix socket out when its peer calls shutdown()): the flows see that as an
	 * EOF, and flow_upload_cut() checks the map after it.
	 */
	if (down) {
		r = bpf_peer_get(m->bpf, backend->cookie, &peer);
		if (r < 0)
			return r;
		if (peer.peer_cookie != client->cookie || peer.dir != SR_DIR_DOWN)
			return -ESTALE;
		backend->has_peer = backend->in_verdict = client->in_targets = true;
		*ret_hold_down = peer.flags & SR_PEER_HOLD;
	}
	if (up) {
		r = bpf_peer_get(m->bpf, client->cookie, &peer);
		if (r < 0)
			return r;
		if (!down || peer.peer_cookie != backend->cookie || peer.dir != SR_DIR_UP)
			return -ESTALE;
		client->has_peer = client->in_verdict = backend->in_targets = true;
		*ret_hold_up = peer.flags & SR_PEER_HOLD;
	}
	return 0;
}

void kernel_path_leave(struct movers *m, struct end *client, struct end *backend)
{
	struct end *ends[] = { client, backend };

	for (size_t i = 0; i < ELEMENTSOF(ends); i++) {
		undo_insert(m->bpf, ends[i], true);
		undo_insert(m->bpf, ends[i], false);
	}
}

int kernel_flow_hold(struct movers *m, struct flow *f, bool hold)
{
	uint32_t flags = (hold ? SR_PEER_HOLD : 0) | (f->src->in_targets ? SR_PEER_TARGET : 0);
	int r;

	if (f->holding == hold)
		return 0;
	r = bpf_peer_set(m->bpf, f->src->cookie, f->dst->cookie, f->dir, flags);
	if (r < 0)
		return r;
	f->holding = hold;
	return 0;
}

int kernel_flow_src_pending(struct movers *m, struct flow *f, uint64_t *ret)
{
	struct bpf_state *bpf = m->bpf;
	uint64_t inq = 0, held = 0;
	int r;

	r = sock_inq(f->src->fd, &inq);
	if (r < 0)
		return r;

	if (f->src->is_unix) {
		struct sr_probe probe;

		/*
		 * Held bytes sit in the psock's ingress_msg, or in its backlog while the receive
		 * buffer is full. A socket that is also a redirect target has outgoing bytes in that
		 * backlog too, which are not ours to count.
		 */
		r = bpf_probe_psock(bpf, f->src->cookie, true, &probe);
		if (r == -ENOENT)
			/* When its peer calls shutdown(), the kernel takes a Unix socket out. */
			probe = (struct sr_probe){};
		else if (r < 0)
			return r;
		held = probe.held + (f->src->in_targets ? 0 : probe.queued);
		*ret = inq + held;
		return 0;
	}

	/*
	 * tcp_read_skb() advances copied_seq before it runs the verdict, so SIOCINQ can read 0
	 * while the last skb is still on its way to the target's queue. The verdict's byte count
	 * catches up only after the redirect, so compare it with what TCP received.
	 */
	if (inq == 0) {
		struct tcp_info ti = {};
		socklen_t len = sizeof(ti);
		struct sr_peer peer;
		uint64_t received;

		if (getsockopt(f->src->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
			return negative_errno();
		r = bpf_peer_get(bpf, f->src->cookie, &peer);
		if (r < 0)
			return r;
		/* A FIN takes a sequence number, and bytes_received counts it. */
		received =
			ti.tcpi_bytes_received - (f->src->rdhup && ti.tcpi_bytes_received ? 1 : 0);
		if (received > peer.bytes + f->bytes)
			inq = received - peer.bytes - f->bytes;
	}
	*ret = inq;
	return 0;
}

int kernel_flow_dst_pending(struct movers *m, struct flow *f, uint64_t *ret)
{
	struct sr_probe probe;
	int r;

	stat_inc(m->stats->drain_checks);
	r = bpf_probe_psock(m->bpf, f->dst->cookie, false, &probe);
	if (r == -ENOENT) {
		/*
		 * The target left the map: a TCP one was reset or closed; a Unix one's peer called
		 * shutdown() (an upload still running then is ended by flow_upload_cut()).
		 */
		*ret = 0;
		return 0;
	}
	if (r < 0)
		return r;
	if (probe.broken && (probe.queued || probe.partial))
		return -EPIPE;
	*ret = (uint64_t)probe.queued + probe.partial;
	return 0;
}

/*
 * A Unix socket in a sockmap leaves it as soon as its peer calls shutdown(), whatever the mode,
 * while the peer's close() leaves it in: unix_shutdown() calls the peer's sk_prot->unhash, which
 * is sock_map_unhash() for a socket in a map (unix_stream_bpf_rebuild_protos()). That removes
 * every link, and with the last one sk_psock_drop() stops the psock and sk_psock_destroy() frees
 * what its backlog still held. From then on sr_redirect can't find the socket in sr_targets and
 * drops what it would have sent there (redirect_failed).
 */
int kernel_flow_dst_mapped(struct movers *m, const struct flow *f)
{
	struct sr_probe probe;
	int r;

	r = bpf_probe_psock(m->bpf, f->dst->cookie, false, &probe);
	if (r == -ENOENT)
		return 0;
	return r < 0 ? r : 1;
}

/*
 * The largest skb a Unix stream socket queues: unix_stream_sendmsg() caps an skb at
 * SKB_MAX_HEAD(0) + UNIX_SKB_FRAGS_SZ (32 KiB), about 36 KiB with 4 KiB pages. With room for this
 * much, a read can't end inside an skb that arrives between SIOCINQ and recv().
 */
#define UNIX_SKB_MAX (64 * 1024)

/*
 * Room for want more bytes in f->buf. A buffer with bytes in it is written out first (0); an
 * empty one grows past HELD_BUF_MAX only for a queue larger than that, which a backend with a
 * send buffer of over 1 MiB can leave. 1 when there is room, <0 on ENOMEM.
 */
static int held_room(struct flow *f, size_t want)
{
	uint8_t *p;

	if (!f->buf) {
		f->buf = malloc(HELD_BUF_MAX);
		if (!f->buf)
			return -ENOMEM;
		f->buf_cap = HELD_BUF_MAX;
	}
	if (f->buf_cap - f->buf_len >= want)
		return 1;
	if (f->buf_len > 0)
		return 0;
	p = realloc(f->buf, want);
	if (!p)
		return -ENOMEM;
	f->buf = p;
	f->buf_cap = want;
	return 1;
}

int kernel_flow_read_held(struct movers *m, struct flow *f, bool *ret_eof, bool *ret_full)
{
	size_t total = 0;
	int r;

	*ret_eof = *ret_full = false;
	for (;;) {
		uint64_t inq = 0;
		size_t want;
		ssize_t n;

		/*
		 * Whole skbs only. unix_stream_read_skb() gives the verdict the head skb whole,
		 * with the bytes recv() already took from it: an skb read in part and left on the
		 * queue would go out twice, once a new skb from the backend runs the verdict (read
		 * in net/unix/af_unix.c; UNIXCB(skb).consumed is not looked at there). SIOCINQ
		 * counts the receive queue, which ends on an skb boundary, so recv() of that many
		 * ends on one too. Bytes kept by SK_PASS (ingress_msg) are read first; they are
		 * an sk_msg queue, which keeps its own offsets, so any part of them is safe.
		 */
		r = sock_inq(f->src->fd, &inq);
		if (r < 0)
			return r;
		want = inq > 0 ? (size_t)inq : UNIX_SKB_MAX;
		r = held_room(f, want);
		if (r < 0)
			return r;
		if (r == 0) {
			*ret_full = true;
			break;
		}
		/*
		 * While the socket is in sr_verdict, recv() goes through unix_bpf_recvmsg(): it
		 * reads bytes kept by SK_PASS first, then the receive queue, in stream order.
		 */
		n = recv(f->src->fd, f->buf + f->buf_len, want, MSG_DONTWAIT);
		if (n == 0) {
			*ret_eof = true;
			break;
		}
		if (n < 0) {
			if (errno == EAGAIN)
				break;
			if (errno == EINTR)
				continue;
			if (errno == ECONNRESET || errno == EPIPE) {
				*ret_eof = true;
				break;
			}
			return negative_errno();
		}
		f->buf_len += (size_t)n;
		total += (size_t)n;
	}
	if (f->dir == SR_DIR_UP)
		stat_add(m->stats->flushed_bytes_up, total);
	else
		stat_add(m->stats->flushed_bytes, total);
	return 0;
}

int kernel_flow_write_held(struct flow *f)
{
	ssize_t r = flow_send_buf(f);

	if (r < 0)
		return (int)r;
	if (f->buf_off < f->buf_len)
		return 0;
	f->buf_off = f->buf_len = 0;
	return 1;
}

int kernel_flow_moved(struct movers *m, const struct flow *f, uint64_t *ret)
{
	struct sr_peer peer;
	int r;

	if (!f->src->has_peer) {
		*ret = 0;
		return 0;
	}
	r = bpf_peer_get(m->bpf, f->src->cookie, &peer);
	if (r < 0)
		return r;
	*ret = peer.bytes;
	return 0;
}
