// SPDX-License-Identifier: GPL-2.0
/*
 * Keeping connections across a restart or a crash, in systemd's fd store.
 *
 * Storing each connection's fds one by one costs PID 1 a kcmp() of every new fd against the whole
 * store: 3.0 s of PID 1's CPU for 1,000 connections, 16.5 s for 2,000 (bench/EXPERIMENTS.md). So
 * connections go into bags. A bag is an AF_UNIX datagram socket pair whose receive queue holds
 * the fds in flight (SCM_RIGHTS, up to 252 a message), and only its receiving end is stored: one
 * fd for PID 1 to compare, however many connections it carries. A tick makes one bag, of the
 * connections that have been open for KEEP_AGE since the last one, so a short connection costs
 * nothing, and a connection open for a second is kept.
 *
 * The state record is a memfd, stored too: a header, then one 64-bit word per slot, holding the
 * generation of the bag entry that is current for the connection in that slot (0: none). An entry
 * (struct keep_entry, in the bag next to the fds) says what the connection is; the record says
 * whether it still is. Every change is one aligned store, so the record is right at any instant
 * and a SIGKILL needs no warning:
 *  - a connection is kept once a bag with its entry is in the store: then its slot takes the
 *    entry's generation;
 *  - compaction stores a new bag with the connection, then switches the slot's generation;
 *  - closing shuts the sockets down (the bag's copies would otherwise keep the peers waiting),
 *    then clears the slot.
 * A bag whose connections all closed is removed from the store; one that holds mostly closed ones
 * is compacted into the next bag.
 *
 * The next process reads the bags with MSG_PEEK: what it has not yet taken over stays in the
 * store if it dies too. It adopts the records as they are and clears their slots as the
 * connections close; its new connections go into a record of its own.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "bpf-loader.h"
#include "fdstore.h"
#include "keep.h"
#include "listen.h"
#include "log.h"
#include "splice-path.h"
#include "stats.h"

#define KEEP_TICK (500 * USEC_PER_MSEC)
/* Kept at the first tick after this age: every connection open for a second is. */
#define KEEP_AGE     (500 * USEC_PER_MSEC)

#define KEEP_MAGIC   UINT64_C(0x73726b6565703031) /* "srkeep01" */
#define KEEP_VERSION 1
/* Slots of a record: the memfd is sparse, so only the pages of slots in use take memory. */
#define KEEP_SLOTS (1U << 20)
/*
 * Bags of one record. Past this, every bag is compacted into the next one, so a record never has
 * more than KEEP_BAGS_MAX + 1 stored; units/sockredir@.service sizes FileDescriptorStoreMax=
 * for 64 a process.
 */
#define KEEP_BAGS_MAX 48
/* A bag of at least this many entries, more than half of them closed, is compacted. */
#define KEEP_COMPACT_MIN   16
#define KEEP_FDS_PER_MSG   252 /* SCM_MAX_FD is 253 */
#define KEEP_ENTRY_FDS_MAX 6   /* client, backend, and two pipes (read and write ends) */

#define KEEP_STATE_PREFIX  FDSTORE_PREFIX "state."
#define KEEP_BAG_PREFIX	   FDSTORE_PREFIX "bag."

struct keep_header {
	uint64_t magic;
	uint32_t version;
	uint32_t n_slots;
	uint64_t bpf_abi;	  /* SR_BPF_ABI of the process that made the record */
	uint64_t next_generation; /* the record's maker's, for its entries */
	uint64_t reserved[4];
};

enum keep_kind {
	KEEP_RUN = 1,	/* moving bytes: its sockets and the pipes of its spliced flows */
	KEEP_FRESH = 2, /* still in setup: its client socket only, to set up again */
};

enum {
	KEEP_CLIENT_UNIX = 1 << 0,
	KEEP_BACKEND_UNIX = 1 << 1,
	KEEP_DOWN_KERNEL = 1 << 2,
	KEEP_UP_KERNEL = 1 << 3,
	KEEP_UP_PIPE = 1 << 4,
	KEEP_DOWN_PIPE = 1 << 5,
	/*
	 * Only at a restart: a kernel flow that is moving queued bytes by hand (see flow_settle())
	 * resumes that; the bytes it had read and not yet written follow in a memfd (HELD). With
	 * --kernel-upload the upload has not started yet meanwhile (UP_IDLE).
	 */
	KEEP_UP_SETTLING = 1 << 6,
	KEEP_DOWN_SETTLING = 1 << 7,
	KEEP_UP_HELD = 1 << 8,
	KEEP_DOWN_HELD = 1 << 9,
	KEEP_UP_IDLE = 1 << 10,
	/*
	 * Only at a restart: a flow on recv()/send(), with no pipe; what send() had not taken
	 * follows in a memfd (HELD). An older process's records have none.
	 */
	KEEP_UP_COPY = 1 << 11,
	KEEP_DOWN_COPY = 1 << 12,
};

/* One connection in a bag; its fds follow in the same message, in this order. */
struct keep_entry {
	uint64_t generation;
	uint64_t conn_id;
	uint64_t kernel_bytes[_SR_DIR_MAX];
	uint32_t slot;
	uint16_t kind;
	uint16_t flags;
	uint32_t n_fds;
	char listener[60]; /* KEEP_FRESH: the listener's name */
};

struct keep_bag {
	struct keep_record *rec;
	int fd; /* our copy of the receiving end */
	char name[96];
	unsigned n_entries, n_live;
	bool compact; /* move its connections to the next bag */
	struct keep_bag *next;
};

struct keep_record {
	struct keep *keep;
	char id[40];
	int fd;
	struct keep_header *hdr;
	volatile uint64_t *slots;
	size_t size;
	bool own; /* this process's: new connections go here */
	struct keep_bag *bags;
	unsigned n_bags, next_seq, n_live;
	/* own record only: free slots */
	uint32_t *free_slots;
	size_t n_free, cap_free;
	uint32_t next_slot;
	struct keep_record *next;
};

struct keep {
	struct fdstore *store;
	struct connections *cs;
	struct keep_record *own;
	struct keep_record *records; /* own first, then adopted ones */
	sd_event_source *tick;
	uint64_t failed_logged_at;
};

static struct sr_proxy_stats *keep_stats(struct keep *k)
{
	return k->cs->movers.stats;
}

static int record_map(struct keep_record *rec)
{
	struct stat st;
	void *p;

	if (fstat(rec->fd, &st) < 0)
		return negative_errno();
	if ((size_t)st.st_size < sizeof(struct keep_header))
		return -EBADMSG;
	p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, rec->fd, 0);
	if (p == MAP_FAILED)
		return negative_errno();
	rec->hdr = p;
	rec->size = (size_t)st.st_size;
	if (rec->hdr->magic != KEEP_MAGIC || rec->hdr->version != KEEP_VERSION ||
	    sizeof(struct keep_header) + (size_t)rec->hdr->n_slots * sizeof(uint64_t) > rec->size) {
		munmap(p, rec->size);
		rec->hdr = NULL;
		return -EBADMSG;
	}
	rec->slots = (volatile uint64_t *)(rec->hdr + 1);
	return 0;
}

static void bag_drop(struct keep_bag *b)
{
	struct keep_record *rec = b->rec;
	struct keep *k = rec->keep;
	struct keep_bag **pp;
	int r;

	r = fdstore_remove(k->store, b->name);
	if (r < 0)
		log_warning_errno(r, "Failed to remove %s from the fd store, ignoring: %m",
				  b->name);
	safe_close(b->fd);
	stat_dec(keep_stats(k)->store_fds);
	for (pp = &rec->bags; *pp != b; pp = &(*pp)->next)
		;
	*pp = b->next;
	rec->n_bags--;
	free(b);
}

static void record_free(struct keep_record *rec)
{
	while (rec->bags) {
		struct keep_bag *b = rec->bags;

		rec->bags = b->next;
		safe_close(b->fd);
		free(b);
	}
	if (rec->hdr)
		munmap(rec->hdr, rec->size);
	safe_close(rec->fd);
	free(rec->free_slots);
	free(rec);
}

/* An adopted record whose connections all closed: out of the store, bags first. */
static void record_drop(struct keep_record *rec)
{
	struct keep *k = rec->keep;
	char name[64];
	int r;

	while (rec->bags)
		bag_drop(rec->bags);
	snprintf(name, sizeof(name), KEEP_STATE_PREFIX "%s", rec->id);
	r = fdstore_remove(k->store, name);
	if (r < 0)
		log_warning_errno(r, "Failed to remove %s from the fd store, ignoring: %m", name);
	stat_dec(keep_stats(k)->store_fds);
	for (struct keep_record **pp = &k->records; *pp; pp = &(*pp)->next)
		if (*pp == rec) {
			*pp = rec->next;
			break;
		}
	record_free(rec);
}

static int slot_alloc(struct keep_record *rec, uint32_t *ret)
{
	if (rec->n_free > 0) {
		*ret = rec->free_slots[--rec->n_free];
		return 0;
	}
	if (rec->next_slot >= rec->hdr->n_slots)
		return -ENOSPC;
	*ret = rec->next_slot++;
	return 0;
}

static void slot_free(struct keep_record *rec, uint32_t slot)
{
	__atomic_store_n(&rec->slots[slot], 0, __ATOMIC_RELEASE);
	if (!rec->own)
		return;
	if (rec->n_free == rec->cap_free) {
		size_t cap = rec->cap_free ? rec->cap_free * 2 : 256;
		uint32_t *p = realloc(rec->free_slots, cap * sizeof(*p));

		if (!p)
			return; /* the slot is lost to reuse, nothing worse */
		rec->free_slots = p;
		rec->cap_free = cap;
	}
	rec->free_slots[rec->n_free++] = slot;
}

/* connections.kept_free: the connection's sockets are shut down; forget it. */
static void on_kept_free(struct connection *c)
{
	struct keep_bag *b = c->keep_bag;
	struct keep_record *rec = b->rec;
	struct keep *k = rec->keep;

	slot_free(rec, c->keep_slot);
	c->keep_bag = NULL;
	stat_dec(keep_stats(k)->kept);
	b->n_live--;
	rec->n_live--;
	if (!rec->own && rec->n_live == 0)
		record_drop(rec);
	else if (b->n_live == 0)
		bag_drop(b);
}

/* A kernel flow moving bytes by hand: settling, or reading the last ones at EOF. */
static bool flow_settling(const struct flow *f)
{
	return f->kernel && (f->state == FLOW_SETTLING || f->buf_len > f->buf_off);
}

/* The bytes a settling flow has read and not yet written, in a memfd; -EBADF if none. */
static int held_memfd(const struct flow *f)
{
	size_t len = f->buf_len - f->buf_off;
	int fd;

	if (len == 0)
		return -EBADF;
	fd = memfd_create("sockredir-held", MFD_CLOEXEC);
	if (fd < 0)
		return negative_errno();
	if (write(fd, f->buf + f->buf_off, len) != (ssize_t)len) {
		int r = errno ? negative_errno() : -EIO;

		safe_close(fd);
		return r;
	}
	return fd;
}

/*
 * May one more flow take a pipe of its own for the store? Sockets come first: kept pipes may use
 * what half of RLIMIT_NOFILE leaves after 2 fds per open connection, so that keeping connections
 * never takes the fds that serving them and accepting more need (seen: 5,000 connections under
 * a limit of 20,000, carried in userspace, ran out of fds for accept() and stopped).
 */
static bool keep_pipe_fits(struct keep *k)
{
	static rlim_t limit;
	struct rlimit rl;

	if (limit == 0)
		limit = getrlimit(RLIMIT_NOFILE, &rl) < 0 ? 1024 : rl.rlim_cur;
	if (limit == RLIM_INFINITY ||
	    2 * ((uint64_t)k->cs->n_open + k->cs->movers.kept_pipes + 1) <= limit / 2)
		return true;
	if (log_ratelimit(&k->failed_logged_at, 60 * USEC_PER_SEC))
		log_warning(
			"Not keeping more connections in systemd's fd store: their directions "
			"in userspace need a pipe each there, and %zu pipes for %u open "
			"connections are as many as half of RLIMIT_NOFILE (%llu) allows. The "
			"rest will not survive a crash or restart; raise LimitNOFILE= for more.",
			k->cs->movers.kept_pipes, k->cs->n_open, (unsigned long long)limit);
	return false;
}

/* Can c go into a bag now? all: for a hand-over, whatever its age, and those in setup too. */
static enum keep_kind keep_kind_of(struct keep *k, struct connection *c, bool all, uint64_t now)
{
	struct movers *m = &k->cs->movers;

	if (!all && now - c->accepted_at < KEEP_AGE)
		return 0;
	if (c->phase != PHASE_RUN)
		return all && strlen(c->listener_name ?: "") <
					       sizeof(((struct keep_entry){}).listener) ?
			       KEEP_FRESH :
			       0;
	/*
	 * Bytes read by hand while a download settles live only in this process, and change all
	 * the time: such a connection is kept only at a restart, when this process is done with
	 * them (the upload starts only after the download settled, with --kernel-upload).
	 */
	for (struct flow *f = &c->up; f; f = f == &c->up ? &c->down : NULL) {
		if (flow_settling(f) ||
		    (f->state == FLOW_IDLE && f == &c->up && flow_settling(&c->down))) {
			if (!all)
				return 0;
			continue;
		}
		if (f->state == FLOW_IDLE)
			return 0;
		if (f->kernel)
			continue;
		/*
		 * At a restart a copy flow goes as it is: this process is done with it, and what
		 * send() had not taken goes in a memfd, as held bytes do.
		 */
		if (f->copy && all)
			continue;
		/*
		 * Otherwise a flow in userspace needs a pipe of its own in the store, and splices
		 * through it from then on: bytes between recv() and send() would die with this
		 * process, and recv() with MSG_PEEK then taking what was sent off the source would
		 * send them twice after a crash in between (seen: a duplex transfer got a stretch
		 * of its download twice). What a copy flow had not sent yet goes out first.
		 */
		if (f->copy && f->buf_len > f->buf_off)
			return 0;
		if (!keep_pipe_fits(k) || splice_flow_keep_pipe(m, f) < 0)
			return 0;
		f->copy = false;
	}
	return KEEP_RUN;
}

/*
 * The bytes f read and has not yet written (a settling flow's, or what a copy flow's send() had
 * not taken), in a memfd after the entry's other fds, if there are any. 0 or negative errno.
 */
static int entry_add_held(const struct flow *f, struct keep_entry *e, int *fds, unsigned *n,
			  int *ret_made, unsigned *ret_n_made)
{
	int fd = held_memfd(f);

	if (fd == -EBADF)
		return 0;
	if (fd < 0)
		return fd;
	e->flags |= f->dir == SR_DIR_UP ? KEEP_UP_HELD : KEEP_DOWN_HELD;
	fds[(*n)++] = ret_made[(*ret_n_made)++] = fd;
	return 0;
}

/*
 * The entry and the fds of c. A memfd made for held bytes is also in ret_made, for the caller to
 * close once the message is sent. Returns how many fds, or negative errno.
 */
static int entry_fill(struct connection *c, enum keep_kind kind, struct keep_entry *e, int *fds,
		      int *ret_made, unsigned *ret_n_made)
{
	unsigned n = 0;
	int r;

	*e = (struct keep_entry){ .conn_id = c->id, .kind = kind };
	fds[n++] = c->client.fd;
	e->flags |= c->client.is_unix ? KEEP_CLIENT_UNIX : 0;
	if (kind == KEEP_FRESH) {
		snprintf(e->listener, sizeof(e->listener), "%s", c->listener_name ?: "");
		return e->n_fds = n;
	}
	fds[n++] = c->backend.fd;
	e->flags |= c->backend.is_unix ? KEEP_BACKEND_UNIX : 0;
	for (struct flow *f = &c->up; f; f = f == &c->up ? &c->down : NULL) {
		bool up = f == &c->up;

		if (f->state == FLOW_IDLE) {
			e->flags |= KEEP_UP_IDLE; /* only the upload waits (keep_kind_of()) */
			continue;
		}
		if (!f->kernel && f->copy) {
			e->flags |= up ? KEEP_UP_COPY : KEEP_DOWN_COPY;
			r = entry_add_held(f, e, fds, &n, ret_made, ret_n_made);
			if (r < 0)
				return r;
			continue;
		}
		if (!f->kernel) {
			e->flags |= up ? KEEP_UP_PIPE : KEEP_DOWN_PIPE;
			fds[n++] = f->pipe->fd[0];
			fds[n++] = f->pipe->fd[1];
			continue;
		}
		e->flags |= up ? KEEP_UP_KERNEL : KEEP_DOWN_KERNEL;
		e->kernel_bytes[f->dir] = f->bytes;
		if (!flow_settling(f))
			continue;
		e->flags |= up ? KEEP_UP_SETTLING : KEEP_DOWN_SETTLING;
		r = entry_add_held(f, e, fds, &n, ret_made, ret_n_made);
		if (r < 0)
			return r;
	}
	e->n_fds = n;
	return (int)n;
}

static int bag_send(int fd, const struct keep_entry *entries, size_t n_entries, const int *fds,
		    size_t n_fds)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * KEEP_FDS_PER_MSG)];
	} control;
	struct iovec iov = { .iov_base = (void *)entries, .iov_len = n_entries * sizeof(*entries) };
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds),
	};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
	memcpy(CMSG_DATA(cm), fds, sizeof(int) * n_fds);
	if (sendmsg(fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		return negative_errno();
	return 0;
}

struct keep_batch {
	struct connection **conns;
	uint8_t *kinds;
	size_t n, cap;
};

static int batch_add(struct keep_batch *b, struct connection *c, enum keep_kind kind)
{
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		struct connection **conns = realloc(b->conns, cap * sizeof(*conns));
		uint8_t *kinds;

		if (!conns)
			return -ENOMEM;
		b->conns = conns;
		kinds = realloc(b->kinds, cap);
		if (!kinds)
			return -ENOMEM;
		b->kinds = kinds;
		b->cap = cap;
	}
	b->conns[b->n] = c;
	b->kinds[b->n++] = kind;
	return 0;
}

static void keep_log_failure(struct keep *k, int r, const char *what)
{
	struct rlimit rl = {};

	if (!log_ratelimit(&k->failed_logged_at, 60 * USEC_PER_SEC))
		return;
	if (r == -ETOOMANYREFS) {
		/*
		 * too_many_unix_fds(): fds in flight in Unix sockets count per user, up to the
		 * sender's RLIMIT_NOFILE, and a kept connection has 2 to 6 of them in its bag.
		 */
		(void)getrlimit(RLIMIT_NOFILE, &rl);
		log_warning(
			"Failed to %s: the kernel lets a user have at most RLIMIT_NOFILE (%llu) "
			"fds in flight, and %" PRIu64 " kept connections hold that many. "
			"Connections beyond will not survive a crash or restart; raise "
			"LimitNOFILE= for more.",
			what, (unsigned long long)rl.rlim_cur,
			(uint64_t)__atomic_load_n(&keep_stats(k)->kept, __ATOMIC_RELAXED));
		return;
	}
	log_warning_errno(r,
			  "Failed to %s: connections opened since will not survive a crash or "
			  "restart (retrying): %m",
			  what);
}

/*
 * One bag: as many of the batch's connections as its socket buffer takes, stored, then made
 * current in the record. Returns how many went in, or negative errno.
 */
static int keep_bag_batch(struct keep *k, struct keep_batch *batch, size_t from)
{
	struct keep_record *rec = k->own;
	struct keep_entry entries[KEEP_FDS_PER_MSG / 2];
	int fds[KEEP_FDS_PER_MSG], made[KEEP_FDS_PER_MSG], pair[2], size = INT32_MAX;
	size_t n_entries = 0, n_fds = 0, i, sent = from, gen0;
	unsigned n_made = 0;
	struct keep_bag *b;
	int r;

	/*
	 * Messages keep their boundaries, and the next process walks them with MSG_PEEK and a
	 * peek offset (checked on 6.18 for datagram and seqpacket pairs alike). A connected pair
	 * has no queue length limit (unix_dgram_sendmsg() checks it only for an unconnected peer),
	 * only the sender's buffer.
	 */
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair) < 0)
		return negative_errno();
	/* The queue is charged to the sender: as much as net.core.wmem_max allows. */
	(void)setsockopt(pair[1], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));

	gen0 = rec->hdr->next_generation;
	for (i = from; i <= batch->n; i++) {
		struct keep_entry e;
		int efds[KEEP_ENTRY_FDS_MAX];
		unsigned n = 0;

		/* Send what is pending when the next entry might not fit, or at the end. */
		if (n_entries > 0 &&
		    (i == batch->n || n_fds + KEEP_ENTRY_FDS_MAX > KEEP_FDS_PER_MSG ||
		     n_entries == ELEMENTSOF(entries))) {
			r = bag_send(pair[1], entries, n_entries, fds, n_fds);
			while (n_made > 0)
				safe_close(made[--n_made]);
			if (r == -EAGAIN || r == -ENOBUFS)
				break; /* the bag is full: the rest go into the next one */
			if (r < 0) {
				safe_close(pair[0]);
				safe_close(pair[1]);
				return r;
			}
			sent = i;
			n_entries = n_fds = 0;
		}
		if (i < batch->n) {
			r = entry_fill(batch->conns[i], batch->kinds[i], &e, efds, made, &n_made);
			if (r < 0) {
				/* Stop here: what is before goes in, the rest waits. */
				if (n_entries > 0) {
					r = bag_send(pair[1], entries, n_entries, fds, n_fds);
					if (r >= 0)
						sent = i;
				}
				while (n_made > 0)
					safe_close(made[--n_made]);
				break;
			}
			n = (unsigned)r;
			e.generation = gen0 + (i - from);
			e.slot = batch->conns[i]->keep_slot;
		}
		if (i == batch->n)
			break;
		entries[n_entries++] = e;
		memcpy(fds + n_fds, efds, n * sizeof(int));
		n_fds += n;
	}
	pair[1] = safe_close(pair[1]);
	if (sent == from) {
		safe_close(pair[0]);
		return -ENOBUFS;
	}

	b = calloc(1, sizeof(*b));
	if (!b) {
		safe_close(pair[0]);
		return -ENOMEM;
	}
	*b = (struct keep_bag){ .rec = rec, .fd = pair[0], .n_entries = (unsigned)(sent - from) };
	snprintf(b->name, sizeof(b->name), KEEP_BAG_PREFIX "%s.%u", rec->id, rec->next_seq++);
	/* The receiving end alone: its queue outlives the sending end. It never polls. */
	r = fdstore_add(k->store, &b->fd, 1, b->name, false);
	if (r < 0) {
		safe_close(b->fd);
		free(b);
		return r;
	}
	rec->hdr->next_generation = gen0 + (sent - from);
	b->next = rec->bags;
	rec->bags = b;
	rec->n_bags++;
	stat_inc(keep_stats(k)->store_fds);

	/* Stored: each entry becomes the current one for its connection. */
	for (i = from; i < sent; i++) {
		struct connection *c = batch->conns[i];
		struct keep_bag *old = c->keep_bag;

		if (batch->kinds[i] == KEEP_FRESH)
			c->held_elsewhere = true;
		if (!old) {
			stat_inc(keep_stats(k)->kept);
			rec->n_live++;
		}
		__atomic_store_n(&rec->slots[c->keep_slot], gen0 + (i - from), __ATOMIC_RELEASE);
		c->keep_bag = b;
		b->n_live++;
		if (old) {
			old->n_live--;
			if (old->n_live == 0)
				bag_drop(old);
		}
	}
	return (int)(sent - from);
}

static int keep_pass(struct keep *k, bool all, unsigned *ret_kept)
{
	struct keep_record *rec = k->own;
	struct keep_batch batch = {};
	uint64_t now = now_usec();
	size_t done = 0;
	int r = 0;

	/* Compact bags that are mostly closed connections, or all of them if there are many. */
	for (struct keep_bag *b = rec->bags; b; b = b->next)
		b->compact = rec->n_bags > KEEP_BAGS_MAX ||
			     (b->n_entries >= KEEP_COMPACT_MIN && b->n_live * 2 < b->n_entries);

	for (struct connection *c = k->cs->list; c; c = c->next) {
		enum keep_kind kind;

		if (c->keep_bag && !(c->keep_bag->rec == rec && c->keep_bag->compact))
			continue;
		kind = keep_kind_of(k, c, all, now);
		if (kind == 0)
			continue;
		/* The entry names its slot, so a new connection takes one now. */
		if (!c->keep_bag) {
			r = slot_alloc(rec, &c->keep_slot);
			if (r < 0) {
				keep_log_failure(k, r, "find a slot in the state record");
				continue;
			}
		}
		r = batch_add(&batch, c, kind);
		if (r < 0) {
			if (!c->keep_bag)
				slot_free(rec, c->keep_slot);
			goto out;
		}
	}

	while (done < batch.n) {
		r = keep_bag_batch(k, &batch, done);
		if (r < 0) {
			keep_log_failure(k, r, "put connections in systemd's fd store");
			break;
		}
		done += (size_t)r;
		if (!all)
			break; /* the rest at the next tick */
	}
	r = 0;
out:
	/* Slots taken for connections that did not go in: free again. */
	for (size_t i = done; i < batch.n; i++)
		if (!batch.conns[i]->keep_bag)
			slot_free(rec, batch.conns[i]->keep_slot);
	if (ret_kept)
		*ret_kept = (unsigned)done;
	free(batch.conns);
	free(batch.kinds);
	return r;
}

static int on_keep_tick(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct keep *k = userdata;

	if (k->cs->list && !k->cs->handing_over)
		(void)keep_pass(k, false, NULL);
	return sd_event_source_set_time_relative(s, KEEP_TICK);
}

static int record_new(struct keep *k, struct keep_record **ret)
{
	size_t size = sizeof(struct keep_header) + (size_t)KEEP_SLOTS * sizeof(uint64_t);
	struct keep_record *rec;
	uint64_t id;
	char name[64];
	int r;

	rec = calloc(1, sizeof(*rec));
	if (!rec)
		return -ENOMEM;
	rec->keep = k;
	rec->own = true;
	if (getrandom(&id, sizeof(id), 0) != sizeof(id))
		id = now_usec() ^ ((uint64_t)getpid() << 32);
	snprintf(rec->id, sizeof(rec->id), "%016" PRIx64, id);

	rec->fd = memfd_create("sockredir-state", MFD_CLOEXEC);
	if (rec->fd < 0) {
		r = negative_errno();
		goto fail;
	}
	if (ftruncate(rec->fd, (off_t)size) < 0) {
		r = negative_errno();
		goto fail;
	}
	rec->hdr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, rec->fd, 0);
	if (rec->hdr == MAP_FAILED) {
		rec->hdr = NULL;
		r = negative_errno();
		goto fail;
	}
	rec->size = size;
	*rec->hdr = (struct keep_header){
		.magic = KEEP_MAGIC,
		.version = KEEP_VERSION,
		.n_slots = KEEP_SLOTS,
		.bpf_abi = k->cs->movers.bpf ? bpf_abi() : 0,
		.next_generation = 1,
	};
	rec->slots = (volatile uint64_t *)(rec->hdr + 1);

	snprintf(name, sizeof(name), KEEP_STATE_PREFIX "%s", rec->id);
	r = fdstore_add(k->store, &rec->fd, 1, name, false);
	if (r < 0)
		goto fail;
	stat_inc(keep_stats(k)->store_fds);
	*ret = rec;
	return 0;
fail:
	record_free(rec);
	return r;
}

int keep_new(struct fdstore *store, struct connections *cs, struct keep **ret)
{
	_cleanup_(keep_freep) struct keep *k = NULL;
	int r;

	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->store = store;
	k->cs = cs;
	r = record_new(k, &k->own);
	if (r < 0)
		return log_error_errno(r, "Failed to store the state record in the fd store: %m");
	k->records = k->own;
	r = sd_event_add_time_relative(cs->event, &k->tick, CLOCK_MONOTONIC, KEEP_TICK,
				       10 * USEC_PER_MSEC, on_keep_tick, k);
	/* A time source fires once unless turned ON: the tick re-arms itself. */
	if (r >= 0)
		r = sd_event_source_set_enabled(k->tick, SD_EVENT_ON);
	if (r < 0)
		return log_error_errno(r, "Failed to arm the keep timer: %m");
	cs->kept_free = on_kept_free;
	*ret = TAKE_PTR(k);
	return 0;
}

struct keep *keep_free(struct keep *k)
{
	if (!k)
		return NULL;
	k->tick = sd_event_source_disable_unref(k->tick);
	/* What is in the store stays there: systemd keeps it for a restart, or empties it on stop. */
	while (k->records) {
		struct keep_record *rec = k->records;

		k->records = rec->next;
		record_free(rec);
	}
	free(k);
	return NULL;
}

int keep_hand_over(struct keep *k, unsigned *ret_kept, unsigned *ret_left)
{
	unsigned kept = 0, left = 0;
	int r;

	r = keep_pass(k, true, NULL);
	for (struct connection *c = k->cs->list; c; c = c->next)
		if (c->keep_bag)
			kept++;
		else
			left++;
	k->cs->handing_over = true;
	*ret_kept = kept;
	*ret_left = left;
	return r;
}

/* Restoring. */

static bool name_has_prefix(const char *name, const char *prefix, const char **ret_rest)
{
	size_t n = strlen(prefix);

	if (strncmp(name, prefix, n) != 0)
		return false;
	*ret_rest = name + n;
	return true;
}

/* Is this the name of a bag of the record with this id? */
static bool bag_of(const char *name, const char *id)
{
	const char *rest;
	size_t n = strlen(id);

	return name_has_prefix(name, KEEP_BAG_PREFIX, &rest) && strncmp(rest, id, n) == 0 &&
	       rest[n] == '.';
}

void keep_inspect(const struct named_fd *fds, size_t n, struct keep_found *ret)
{
	struct keep_found found = {};

	for (size_t i = 0; i < n; i++) {
		struct keep_header h;
		const char *id;

		if (!name_has_prefix(fds[i].name, KEEP_STATE_PREFIX, &id))
			continue;
		found.n_records++;
		if (pread(fds[i].fd, &h, sizeof(h), 0) == sizeof(h) && h.magic == KEEP_MAGIC &&
		    h.bpf_abi != 0 && h.bpf_abi != bpf_abi())
			found.n_abi_mismatch++;
	}
	*ret = found;
}

struct restore_counts {
	unsigned restored, fresh, closed, stale;
	const char *why_closed;
};

static void close_fds(int *fds, unsigned n, bool shut)
{
	for (unsigned i = 0; i < n; i++) {
		/* A socket the connection used: FIN now, the store's copies can't keep it open. */
		if (shut)
			(void)shutdown(fds[i], SHUT_RDWR);
		safe_close(fds[i]);
	}
}

static int take_pipe(int *fds, unsigned *i, struct sr_pipe **ret)
{
	struct sr_pipe *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->fd[0] = fds[(*i)++];
	p->fd[1] = fds[(*i)++];
	*ret = p;
	return 0;
}

/* Held bytes of a settling flow, from their memfd, into a buffer the flow can read on into. */
static int take_held(int *fds, unsigned *i, uint8_t **ret, size_t *ret_len)
{
	_cleanup_close_ int fd = TAKE_FD(fds[*i]);
	struct stat st;
	uint8_t *buf;
	ssize_t n;

	(*i)++;
	if (fstat(fd, &st) < 0)
		return negative_errno();
	/* More than HELD_BUF_MAX only from a buffer grown for one large queue (held_room()). */
	if (st.st_size <= 0 || st.st_size > (off_t)1 << 30)
		return -EBADMSG;
	buf = malloc(MAX((size_t)st.st_size, (size_t)HELD_BUF_MAX));
	if (!buf)
		return -ENOMEM;
	n = pread(fd, buf, (size_t)st.st_size, 0);
	if (n != st.st_size) {
		free(buf);
		return n < 0 ? negative_errno() : -EIO;
	}
	*ret = buf;
	*ret_len = (size_t)n;
	return 0;
}

static void restore_entry(struct keep *k, struct keep_bag *b, const struct keep_entry *e, int *fds,
			  bool kernel_ok, keep_fresh_fn fresh, void *userdata,
			  struct restore_counts *counts)
{
	struct keep_record *rec = b->rec;
	struct connection_restore cr = {};
	struct connection *c;
	unsigned i = 0;
	uint64_t current;
	int r;

	current = e->slot < rec->hdr->n_slots ?
			  __atomic_load_n(&rec->slots[e->slot], __ATOMIC_ACQUIRE) :
			  0;
	if (current == 0 || current != e->generation) {
		/* Closed, or moved to a later bag: these are stale copies. */
		log_debug("Kept connection %" PRIu64 " in %s: slot %u is at generation %" PRIu64
			  ", the entry at %" PRIu64 ": skipped.",
			  e->conn_id, b->name, e->slot, current, e->generation);
		close_fds(fds, e->n_fds, false);
		counts->stale++;
		return;
	}

	if (e->kind == KEEP_FRESH) {
		/*
		 * Cleared before the event loop runs, so before any byte moves: if this process
		 * dies too, the next one does not set it up a second time.
		 */
		slot_free(rec, e->slot);
		k->cs->adopting = true;
		fresh(userdata, fds[0], e->listener);
		k->cs->adopting = false;
		counts->fresh++;
		return;
	}

	if ((e->flags & (KEEP_DOWN_KERNEL | KEEP_UP_KERNEL)) && !kernel_ok) {
		close_fds(fds, 2, true);
		close_fds(fds + 2, e->n_fds - 2, false);
		slot_free(rec, e->slot);
		counts->closed++;
		counts->why_closed =
			rec->hdr->bpf_abi != bpf_abi() ?
				"they moved bytes in the kernel under another BPF ABI "
				"(a new bpf/sockredir.h), whose maps this build can't use" :
				"they moved bytes in the kernel, and the previous maps could "
				"not be adopted";
		return;
	}

	cr.client_fd = fds[i++];
	cr.backend_fd = fds[i++];
	cr.client_is_unix = e->flags & KEEP_CLIENT_UNIX;
	cr.backend_is_unix = e->flags & KEEP_BACKEND_UNIX;
	cr.down_kernel = e->flags & KEEP_DOWN_KERNEL;
	cr.up_kernel = e->flags & KEEP_UP_KERNEL;
	memcpy(cr.kernel_bytes, e->kernel_bytes, sizeof(cr.kernel_bytes));
	cr.settling[SR_DIR_UP] = e->flags & KEEP_UP_SETTLING;
	cr.settling[SR_DIR_DOWN] = e->flags & KEEP_DOWN_SETTLING;
	cr.up_idle = e->flags & KEEP_UP_IDLE;
	cr.copy[SR_DIR_UP] = e->flags & KEEP_UP_COPY;
	cr.copy[SR_DIR_DOWN] = e->flags & KEEP_DOWN_COPY;
	/* In entry_fill()'s order: the upload's pipe or held bytes, then the download's. */
	r = 0;
	if (e->flags & KEEP_UP_PIPE)
		r = take_pipe(fds, &i, &cr.pipe[SR_DIR_UP]);
	if (r >= 0 && (e->flags & KEEP_UP_HELD))
		r = take_held(fds, &i, &cr.held[SR_DIR_UP], &cr.held_len[SR_DIR_UP]);
	if (r >= 0 && (e->flags & KEEP_DOWN_PIPE))
		r = take_pipe(fds, &i, &cr.pipe[SR_DIR_DOWN]);
	if (r >= 0 && (e->flags & KEEP_DOWN_HELD))
		r = take_held(fds, &i, &cr.held[SR_DIR_DOWN], &cr.held_len[SR_DIR_DOWN]);
	if (r >= 0)
		r = connection_restore(k->cs, &cr, &c);
	else {
		/* What connection_restore() would have taken over, and a clean close. */
		close_fds(fds, 2, true);
		close_fds(fds + i, e->n_fds - i, false);
		for (int d = 0; d < _SR_DIR_MAX; d++) {
			if (cr.pipe[d]) {
				safe_close(cr.pipe[d]->fd[0]);
				safe_close(cr.pipe[d]->fd[1]);
				free(cr.pipe[d]);
			}
			free(cr.held[d]);
		}
	}
	if (r < 0) {
		slot_free(rec, e->slot);
		counts->closed++;
		counts->why_closed = "their kernel-path entries were gone";
		log_debug_errno(r, "Kept connection %" PRIu64 " can't be restored: %m", e->conn_id);
		return;
	}
	c->keep_bag = b;
	c->keep_slot = e->slot;
	c->held_elsewhere = true;
	b->n_live++;
	rec->n_live++;
	stat_inc(keep_stats(k)->kept);
	stat_inc(keep_stats(k)->restored);
	counts->restored++;
	log_debug("Connection %" PRIu64 " restored (connection %" PRIu64 " before the restart).",
		  c->id, e->conn_id);
}

/* Read every message of a bag without taking it out of the queue, and restore its entries. */
static int restore_bag(struct keep *k, struct keep_bag *b, bool kernel_ok, keep_fresh_fn fresh,
		       void *userdata, struct restore_counts *counts)
{
	int zero = 0;

	/* With a peek offset, each MSG_PEEK reads the next message instead of the first again. */
	if (setsockopt(b->fd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)) < 0)
		return negative_errno();
	for (;;) {
		struct keep_entry entries[KEEP_FDS_PER_MSG / 2];
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(int) * (KEEP_FDS_PER_MSG + 1))];
		} control;
		struct iovec iov = { .iov_base = entries, .iov_len = sizeof(entries) };
		struct msghdr mh = { .msg_iov = &iov,
				     .msg_iovlen = 1,
				     .msg_control = control.buf,
				     .msg_controllen = sizeof(control.buf) };
		struct cmsghdr *cm;
		int fds[KEEP_FDS_PER_MSG + 1];
		size_t n_fds = 0, n_entries, used = 0;
		ssize_t n;

		n = recvmsg(b->fd, &mh, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : negative_errno();
		}
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
				size_t m = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

				memcpy(fds + n_fds, CMSG_DATA(cm), m * sizeof(int));
				n_fds += m;
			}
		n_entries = (size_t)n / sizeof(struct keep_entry);
		if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || n_entries == 0) {
			log_warning("A bag in the fd store (%s) holds a message that is not ours: "
				    "skipped.",
				    b->name);
			close_fds(fds, (unsigned)n_fds, false);
			continue;
		}
		for (size_t i = 0; i < n_entries; i++) {
			const struct keep_entry *e = &entries[i];

			if (e->n_fds == 0 || e->n_fds > KEEP_ENTRY_FDS_MAX ||
			    used + e->n_fds > n_fds)
				break;
			b->n_entries++;
			restore_entry(k, b, e, fds + used, kernel_ok, fresh, userdata, counts);
			used += e->n_fds;
		}
		close_fds(fds + used, (unsigned)(n_fds - used), false);
	}
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int restore_record(struct keep *k, struct named_fd *fds, size_t n, size_t i_rec,
			  bool kernel_ok, keep_fresh_fn fresh, void *userdata,
			  struct restore_counts *counts)
{
	struct keep_record *rec;
	const char *id = "";
	int r;

	rec = calloc(1, sizeof(*rec));
	if (!rec)
		return -ENOMEM;
	rec->keep = k;
	(void)name_has_prefix(fds[i_rec].name, KEEP_STATE_PREFIX, &id);
	snprintf(rec->id, sizeof(rec->id), "%s", id);
	rec->fd = TAKE_FD(fds[i_rec].fd);
	rec->next = k->records;
	k->records = rec;
	stat_inc(keep_stats(k)->store_fds);

	r = record_map(rec);
	if (r < 0)
		log_warning_errno(r,
				  "State record %s in the fd store is unreadable: its connections "
				  "are closed: %m",
				  fds[i_rec].name);

	for (size_t i = 0; i < n; i++) {
		struct keep_bag *b;

		if (fds[i].fd < 0 || !bag_of(fds[i].name, rec->id))
			continue;
		b = calloc(1, sizeof(*b));
		if (!b)
			return -ENOMEM;
		*b = (struct keep_bag){ .rec = rec, .fd = TAKE_FD(fds[i].fd), .next = rec->bags };
		snprintf(b->name, sizeof(b->name), "%s", fds[i].name);
		rec->bags = b;
		rec->n_bags++;
		stat_inc(keep_stats(k)->store_fds);
		if (!rec->hdr)
			continue;
		r = restore_bag(k, b, kernel_ok && rec->hdr->bpf_abi == bpf_abi(), fresh, userdata,
				counts);
		if (r < 0)
			log_warning_errno(r, "Failed to read %s: %m", b->name);
	}

	/* What nothing lives in any more leaves the store now. */
	if (rec->n_live == 0) {
		record_drop(rec);
		return 0;
	}
	for (struct keep_bag *b = rec->bags, *next; b; b = next) {
		next = b->next;
		if (b->n_live == 0)
			bag_drop(b);
	}
	return 0;
}

int keep_restore(struct keep *k, struct named_fd *fds, size_t n, unsigned share, unsigned n_shares,
		 bool kernel_ok, keep_fresh_fn fresh, void *userdata)
{
	struct restore_counts counts = {};
	const char **names;
	size_t n_records = 0;
	int r = 0;

	names = calloc(n + 1, sizeof(*names));
	if (!names)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const char *id;

		if (fds[i].fd >= 0 && name_has_prefix(fds[i].name, KEEP_STATE_PREFIX, &id))
			names[n_records++] = fds[i].name;
	}
	qsort(names, n_records, sizeof(*names), cmp_names);

	for (size_t j = share; j < n_records; j += n_shares)
		for (size_t i = 0; i < n; i++)
			if (fds[i].fd >= 0 && streq(fds[i].name, names[j])) {
				r = restore_record(k, fds, n, i, kernel_ok, fresh, userdata,
						   &counts);
				if (r < 0)
					goto out;
				break;
			}

	if (counts.restored + counts.fresh + counts.closed > 0)
		log_info("Restored %u connection(s) kept by the previous process; %u in setup "
			 "started again; %u closed with a FIN%s%s.",
			 counts.restored, counts.fresh, counts.closed, counts.closed ? ": " : "",
			 counts.closed ? counts.why_closed : "");
	stat_add(keep_stats(k)->restore_closed, counts.closed);

	/* Only now, with every restored connection counted, do they run. */
	for (struct connection *c = k->cs->list, *next; c; c = next) {
		next = c->next;
		if (c->keep_bag && c->keep_bag->rec != k->own)
			connection_resume(c);
	}
	r = (int)counts.restored;
out:
	free(names);
	return r;
}
