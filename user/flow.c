// SPDX-License-Identifier: GPL-2.0
/*
 * One flow's state machine, the same on both movers:
 *
 *   IDLE -> [SETTLING ->] OPEN -> DRAINING -> DONE
 *                           \-> DISCARD -> DONE      (destination gone: drop the rest)
 *
 * A flow reaches DONE when it has shut down its destination's write side, after the last byte:
 * that is how half-close travels. Its connection (connection.c) starts it, turns what it waits
 * for into epoll events and a timer, and ends when both flows are DONE.
 */
#include <inttypes.h>
#include <sys/socket.h>

#include "flow.h"
#include "grace.h"
#include "kernel-path.h"
#include "log.h"
#include "splice-path.h"

/* Polling the drain probe: first check at once, then back off to this. */
#define DRAIN_POLL_MIN 20 /* µs */
#define DRAIN_POLL_MAX (10 * USEC_PER_MSEC)
/* After the backend is gone and the reply is out, how long the client may take to close. */
#define LINGER_TIMEOUT (5 * USEC_PER_SEC)
/* A destination backlog that does not shrink for this long belongs to a client that left. */
#define DRAIN_STALL_TIMEOUT (60 * USEC_PER_SEC)

static const char *flow_name(const struct flow *f)
{
	return f->dir == SR_DIR_UP ? "client->backend" : "backend->client";
}

static const char *const flow_state_table[] = {
	[FLOW_IDLE] = "idle",	      [FLOW_SETTLING] = "settling", [FLOW_OPEN] = "open",
	[FLOW_DRAINING] = "draining", [FLOW_DISCARD] = "discard",   [FLOW_DONE] = "done",
};

void flow_set_state(struct flow *f, enum flow_state state)
{
	log_debug("Connection %" PRIu64 ": %s %s%s -> %s.", f->conn_id, flow_name(f),
		  f->kernel ? "(kernel) " : "", flow_state_table[f->state],
		  flow_state_table[state]);
	f->state = state;
}

static void flow_wait_timer(struct flow *f)
{
	f->backoff = f->backoff ? MIN(f->backoff * 2, DRAIN_POLL_MAX) : DRAIN_POLL_MIN;
	f->wake_at = now_usec() + f->backoff;
	f->waits |= WAIT_TIMER;
}

static int flow_shutdown_dst(struct flow *f)
{
	/* The peer may be gone already; its EOF is then implied. */
	if (shutdown(f->dst->fd, SHUT_WR) < 0 && errno != ENOTCONN)
		log_debug_errno(errno, "Connection %" PRIu64 ": shutdown(%s) failed, ignoring: %m",
				f->conn_id, flow_name(f));
	flow_set_state(f, FLOW_DONE);
	f->waits = 0;
	f->deadline = 0;
	return 0;
}

void flow_discard_rest(struct flow *f)
{
	/* On the kernel path the verdict drops what it can't redirect: the close stays clean. */
	flow_set_state(f, f->kernel ? FLOW_DONE : FLOW_DISCARD);
	f->waits = 0;
	f->deadline = f->kernel ? 0 : now_usec() + LINGER_TIMEOUT;
}

/* The destination refuses bytes: nothing more can be delivered in this direction. */
static int flow_dst_gone(struct movers *m, struct flow *f)
{
	splice_flow_release(m, f);
	f->buf_len = f->buf_off = 0;
	f->dst->hup = true;
	if (f->dir == SR_DIR_DOWN)
		return -ECONNRESET; /* the client is gone: abort the whole connection */

	/* The backend is gone. Keep reading the client, so its close is a clean FIN. */
	log_debug("Connection %" PRIu64 ": backend gone, discarding client bytes.", f->conn_id);
	flow_discard_rest(f);
	return 0;
}

/*
 * --kernel-upload to a Unix backend that called shutdown(), in any mode: the kernel took our
 * backend socket out of the sockmaps (see kernel_flow_dst_mapped()) and freed what its psock
 * backlog still held, and sr_redirect now drops whatever the client sends. Nothing more of the
 * upload can arrive and some of it may be lost already, so the upload ends as if the backend
 * were gone: the connection closes once the download is out, and a client that goes on sending
 * is reset. Without this, the drain waited for ever for bytes the verdict had dropped.
 * 1 if the upload was ended, 0 if the destination is still in the map, <0 error.
 */
static int flow_upload_cut(struct movers *m, struct flow *f)
{
	int r;

	if (!f->kernel || f->dir != SR_DIR_UP || !f->dst->is_unix)
		return 0;
	r = kernel_flow_dst_mapped(m, f);
	if (r != 0)
		return r < 0 ? r : 0;

	if (!m->said_upload_cut) {
		m->said_upload_cut = true;
		log_warning("Connection %" PRIu64 ": the backend shut down its socket while the "
			    "client was still uploading; the kernel took the socket out of the "
			    "sockmap, so the rest of the upload can't be delivered: closing. See "
			    "README.md, \"Known limits\". Further ones are logged at debug level.",
			    f->conn_id);
	} else
		log_debug("Connection %" PRIu64 ": backend shut down mid-upload (kernel upload): "
			  "closing.",
			  f->conn_id);
	r = flow_dst_gone(m, f);
	return r < 0 ? r : 1;
}

/* Write what was read by hand. 1 when done, 0 waiting for EPOLLOUT, <0 error. */
static int flow_write_held(struct flow *f)
{
	int r = kernel_flow_write_held(f);

	if (r == 0)
		f->waits |= WAIT_DST_OUT;
	return r;
}

/*
 * Is the destination's psock backlog empty? 1 yes, 0 not yet (a poll is scheduled), <0 error.
 * A backlog that makes no progress for DRAIN_STALL_TIMEOUT (a client that stopped reading)
 * ends the connection.
 */
static int flow_dst_drained(struct movers *m, struct flow *f)
{
	uint64_t pending;
	int r;

	r = kernel_flow_dst_pending(m, f, &pending);
	if (r < 0)
		return r;
	if (pending == 0) {
		f->backoff = 0;
		f->deadline = 0;
		return 1;
	}
	if (pending != f->last_pending || f->deadline == 0) {
		log_debug("Connection %" PRIu64 ": %s: %" PRIu64 " queued for the destination.",
			  f->conn_id, flow_name(f), pending);
		f->last_pending = pending;
		f->deadline = now_usec() + DRAIN_STALL_TIMEOUT;
	}
	flow_wait_timer(f);
	return 0;
}

/* Read by hand, wait for the backlog, write. 1 when all is out, 0 waiting, <0 error. */
static int flow_move_held(struct movers *m, struct flow *f, bool *ret_eof)
{
	bool full;
	int r;

	for (;;) {
		r = kernel_flow_read_held(m, f, ret_eof, &full);
		if (r < 0)
			return r;
		if (f->buf_len == 0)
			return 1;
		/* What we read came after every skb already redirected: let those go first. */
		r = flow_dst_drained(m, f);
		if (r <= 0)
			return r;
		r = flow_write_held(f);
		if (r <= 0)
			return r;
		if (!full || *ret_eof)
			return 1;
	}
}

/*
 * The source reached EOF, on the kernel path. Every byte it sent must be out before
 * shutdown(), or the kernel throws it away:
 *  1. the verdict must have taken all of the source's bytes; a Unix source's bytes that it never
 *     took (queued before insertion, or held) are read by hand;
 *  2. the destination's psock backlog must be empty (the drain probe);
 *  3. then the bytes read by hand go out, and then the FIN.
 */
static int flow_drain(struct movers *m, struct flow *f)
{
	uint64_t pending = 0;
	bool eof = false;
	int r;

	f->waits = 0;
	if (f->dst->hup && f->dir == SR_DIR_UP)
		return flow_dst_gone(m, f);

	r = kernel_flow_src_pending(m, f, &pending);
	if (r < 0)
		goto out;
	if (f->src->is_unix && (pending > 0 || f->buf_len > 0)) {
		/* Usually nothing is left: only then is a buffer allocated and read into. */
		r = flow_move_held(m, f, &eof);
		if (r <= 0)
			goto out;
		r = kernel_flow_src_pending(m, f, &pending);
		if (r < 0)
			goto out;
	}
	if (pending > 0) {
		/*
		 * The verdict has yet to see them (TCP), or held bytes are on their way (Unix).
		 * Bytes it dropped never arrive: a destination that left the map ends the flow,
		 * and anything else that stops the count for DRAIN_STALL_TIMEOUT ends it too.
		 */
		r = flow_upload_cut(m, f);
		if (r != 0)
			return r < 0 ? r : 0;
		if (pending != f->last_src_pending || f->deadline == 0) {
			log_debug("Connection %" PRIu64 ": %s: waiting for %" PRIu64
				  " source bytes.",
				  f->conn_id, flow_name(f), pending);
			f->last_src_pending = pending;
			f->deadline = now_usec() + DRAIN_STALL_TIMEOUT;
		}
		flow_wait_timer(f);
		return 0;
	}
	if (f->last_src_pending) {
		/* The source wait is over: the destination's wait gets a deadline of its own. */
		f->last_src_pending = 0;
		f->deadline = 0;
	}
	r = flow_dst_drained(m, f);
	if (r <= 0)
		goto out;
	return flow_shutdown_dst(f);
out:
	if (r == -EPIPE || r == -ECONNRESET)
		return flow_dst_gone(m, f);
	return r;
}

/*
 * A Unix source had bytes queued before it joined sr_verdict. The verdict would see them only
 * one skb per later send (each sk_data_ready moves one skb), so they are moved by hand:
 *
 *  1. With SR_PEER_HOLD set, sr_redirect keeps every new skb on the socket instead of
 *     redirecting it, so nothing can overtake what we read. Wait an RCU grace period first: a
 *     verdict that read the entry before the hold may still be redirecting the head skb, and
 *     until it has queued it on the destination the drain probe can't see it.
 *  2. Read everything, wait until the destination's backlog is empty (skbs redirected before
 *     the hold), write what we read.
 *  3. Clear the hold, wait an RCU grace period (every verdict that saw the hold has finished),
 *     and check the socket is empty. sr_redirect keeps holding while held bytes remain unread,
 *     so a late one can't be overtaken either. If something is left, go back to 1.
 *
 * A backend that never pauses keeps this going, and the flow keeps trying. It must not give up
 * and stay held: a held byte lives in our socket's psock, which the backend's shutdown() frees
 * (unix_shutdown() unhashes our socket), and a flow held for good lost the last bytes of every
 * such stream (bench/experiments/settle-stream.sh with SOCKREDIR_DEBUG_SETTLE_ROUNDS=0, when
 * that made it give up). Each round holds for about two grace periods. What is bounded is how
 * long the connection's upload waits: settle_rounds_max rounds (FLOW_NOT_SETTLED).
 *
 * What the hold can't cover: unix_stream_read_skb() takes the head skb off the queue under the
 * socket's iolock but runs the verdict after dropping it, so an skb the backend sends while step
 * 2 reads can push a queued skb through the verdict, and recv() can take the one behind it
 * first. Only skbs queued before the insert are exposed (any later one has its own
 * sk_data_ready coming, and a sender's send() returns only after it ran), so only the first
 * round, and only a backend that sends by itself: the upload waits until this flow is done
 * (connection_start_upload()), so nothing the client sends can make the backend answer now.
 */
static int flow_settle(struct movers *m, struct flow *f)
{
	uint64_t pending;
	bool eof = false;
	int r, ev = 0;

	f->waits = 0;
	if (f->grace_ticket) {
		if (!grace_passed(m->grace, f->grace_ticket)) {
			f->waits = WAIT_GRACE;
			return 0;
		}
		f->grace_ticket = 0;
		if (!f->holding) {
			/* Step 3: the grace period after the hold was cleared. */
			r = kernel_flow_src_pending(m, f, &pending);
			if (r < 0)
				return r;
			if (pending == 0) {
				log_debug("Connection %" PRIu64 ": %s settled after %u round(s).",
					  f->conn_id, flow_name(f), f->settle_rounds + 1);
				flow_set_state(f, FLOW_OPEN);
				f->waits = WAIT_SRC_RDHUP;
				return FLOW_SETTLED;
			}
			/*
			 * A backend that hardly pauses: the upload has waited long enough (its
			 * bytes could only make the backend send more), and starts outside the
			 * kernel; the connection ignores a second start.
			 */
			if (++f->settle_rounds >= m->settle_rounds_max)
				ev = FLOW_NOT_SETTLED;
			if (f->settle_rounds == MAX(m->settle_rounds_max, 1))
				log_debug("Connection %" PRIu64 ": %s not settled after %u "
					  "round(s): the upload starts outside the kernel.",
					  f->conn_id, flow_name(f), f->settle_rounds);
		}
	}
	if (!f->holding) {
		/* Step 1: hold, and let every verdict that ran without the hold finish. */
		r = kernel_flow_hold(m, f, true);
		if (r < 0)
			return r;
		f->grace_ticket = grace_request(m->grace);
		f->waits = WAIT_GRACE;
		return ev;
	}

	r = flow_move_held(m, f, &eof);
	if (r < 0)
		return r == -EPIPE || r == -ECONNRESET ? flow_dst_gone(m, f) : r;
	if (r == 0)
		return 0;
	if (eof || f->src->rdhup) {
		flow_set_state(f, FLOW_DRAINING);
		r = flow_drain(m, f);
		return r < 0 ? r : FLOW_NOT_SETTLED;
	}

	r = kernel_flow_hold(m, f, false);
	if (r < 0)
		return r;
	f->grace_ticket = grace_request(m->grace);
	f->waits = WAIT_GRACE;
	return 0;
}

int flow_run(struct movers *m, struct flow *f)
{
	int r;

	if (f->deadline && now_usec() >= f->deadline) {
		log_debug("Connection %" PRIu64 ": %s timed out in state %s.", f->conn_id,
			  flow_name(f), flow_state_table[f->state]);
		return -ETIMEDOUT;
	}

	/* The first event after the backend shut down: did that cut a kernel upload? */
	if (f->dst->rdhup && !f->dst_checked &&
	    (f->state == FLOW_OPEN || f->state == FLOW_DRAINING)) {
		f->dst_checked = true;
		r = flow_upload_cut(m, f);
		if (r != 0)
			return r < 0 ? r : 0;
	}

	switch (f->state) {
	case FLOW_IDLE:
	case FLOW_DONE:
		f->waits = 0;
		return 0;

	case FLOW_SETTLING:
		return flow_settle(m, f);

	case FLOW_OPEN:
		if (f->kernel) {
			if (f->src->rdhup) {
				flow_set_state(f, FLOW_DRAINING);
				f->backoff = 0;
				return flow_drain(m, f);
			}
			f->waits = WAIT_SRC_RDHUP;
			return 0;
		}
		r = splice_flow_move(m, f);
		if (r == SPLICE_BLOCKED)
			return 0;
		if (r == -EMFILE || r == -ENFILE) {
			/* No fd for a pipe: wait for connections to give some back. */
			f->waits = WAIT_TIMER;
			f->wake_at = now_usec() + FD_RETRY;
			return r;
		}
		if (r == SPLICE_YIELD) {
			f->waits = flow_holds_bytes(f) ? WAIT_DST_OUT : WAIT_SRC_IN;
			return 0;
		}
		if (r == SPLICE_EOF)
			return flow_shutdown_dst(f);
		if (r == SPLICE_DST_GONE)
			return flow_dst_gone(m, f);
		/* A source error: a reset client aborts; a reset backend ends like EOF. */
		if (f->dir == SR_DIR_UP)
			return r;
		splice_flow_release(m, f);
		return flow_shutdown_dst(f);

	case FLOW_DRAINING:
		return flow_drain(m, f);

	case FLOW_DISCARD:
		r = splice_flow_discard(f);
		if (r < 0 || r == SPLICE_EOF) {
			flow_set_state(f, FLOW_DONE);
			f->waits = 0;
			f->deadline = 0;
			return 0;
		}
		if (r == SPLICE_YIELD)
			f->waits = WAIT_SRC_IN;
		return 0;
	}
	return 0;
}
