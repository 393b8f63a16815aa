/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The kernel path: putting a connection's sockets in the BPF maps, and the checks that make
 * every byte arrive before a shutdown(). See README.md, "How the kernel path works".
 */
#ifndef SR_KERNEL_PATH_H
#define SR_KERNEL_PATH_H

#include "movers.h"

/*
 * Make the download (backend -> client) move in the kernel. Returns 0 on success, or a positive
 * enum sr_fallback_reason after undoing its inserts: this connection then uses splice. A Unix
 * client is never inserted (SR_FALLBACK_CLIENT_UNIX): its shutdown() would unhash our socket.
 * *ret_settle is set when bytes were already queued on a Unix source (see kernel_flow_settle).
 */
int kernel_path_attach(struct movers *m, struct end *client, struct end *backend, bool *ret_settle);
/* --kernel-upload: the client's socket joins sr_verdict. Same returns; the upload stays spliced. */
int kernel_path_attach_upload(struct movers *m, struct end *client, struct end *backend,
			      bool *ret_settle);
/* After the sockets are closed (which takes them out of the sockhashes): drop the peer entries. */
void kernel_path_forget(struct movers *m, struct end *client, struct end *backend);
/*
 * A connection an earlier process kept (keep.c): read the cookies, check that its sr_peers
 * entries still pair these two sockets (down: the download moves in the kernel, up: the upload
 * too), and mark the ends as in the maps. -ENOENT or -ESTALE if the entries are gone or another
 * pair's. *ret_hold_*: SR_PEER_HOLD is set (the flow was settling), written only for that flow.
 */
int kernel_path_adopt(struct movers *m, struct end *client, struct end *backend, bool down, bool up,
		      bool *ret_hold_down, bool *ret_hold_up);
/*
 * Take a closed connection's sockets out of the sockhashes. Needed only when something else
 * (systemd's fd store) holds them open, which would keep them in the maps; their flows are over,
 * so no skb can be racing the delete.
 */
void kernel_path_leave(struct movers *m, struct end *client, struct end *backend);

/* Switch SR_PEER_HOLD on a kernel flow's source. */
int kernel_flow_hold(struct movers *m, struct flow *f, bool hold);
/*
 * Bytes the verdict program has not dealt with yet on the flow's source: for TCP, received bytes
 * it has not taken (SIOCINQ, and the byte count against TCP_INFO); for Unix, bytes left on the
 * socket (SIOCINQ, and those held for recv()). 0 means nothing.
 */
int kernel_flow_src_pending(struct movers *m, struct flow *f, uint64_t *ret);
/*
 * What is still queued in the destination's psock backlog: skbs plus bytes of a partly sent one.
 * 0 means drained. -EPIPE if the backlog worker gave up on the destination after an error.
 */
int kernel_flow_dst_pending(struct movers *m, struct flow *f, uint64_t *ret);
/*
 * Is the flow's destination still in sr_targets? 1 yes, 0 no, or negative errno. A Unix socket
 * leaves every sockmap when its peer calls shutdown(), in any mode (see the function); after
 * that the kernel can't deliver another byte of this flow.
 */
int kernel_flow_dst_mapped(struct movers *m, const struct flow *f);
/*
 * recv() what is on a Unix source into f->buf, until it would block, ends (*ret_eof), or the
 * buffer is full (*ret_full). Returns 0 or negative errno.
 */
int kernel_flow_read_held(struct movers *m, struct flow *f, bool *ret_eof, bool *ret_full);
/* Write f->buf to the destination. 1 when empty, 0 if it would block, negative errno. */
int kernel_flow_write_held(struct flow *f);
/* Bytes sr_redirect moved from the flow's source so far (its sr_peers count): for idleness. */
int kernel_flow_moved(struct movers *m, const struct flow *f, uint64_t *ret);

#endif /* SR_KERNEL_PATH_H */
