/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A client connection, from accept to close, and the set of a process's connections. The same
 * state machine drives both data paths: each of the two flows (flow.c) is moved by the kernel or
 * by splice, and only the mover's primitives differ.
 *
 * This layer knows nothing of how a connection came to be, or who owns the set. The layers
 * above tell it what to call, in struct connections: setup.c, for events before the flows run;
 * the set's owner (proxy.c), when a connection closes and when fds run out.
 */
#ifndef SR_CONNECTION_H
#define SR_CONNECTION_H

#include <systemd/sd-event.h>

#include "movers.h"

struct connection;
struct keep_bag;
struct route;
struct backend;
struct sr_backend_metrics;

struct connections {
	struct movers movers;
	sd_event *event;
	/*
	 * Connection sockets are in an epoll set of our own, drained in batches from one sd-event
	 * source: sd-event dispatches one source per loop iteration and polls epoll again for each,
	 * which costs O(ready sockets) per event and collapsed at 1,000 busy connections.
	 */
	int epoll_fd;
	sd_event_source *epoll_source;

	struct connection *list;
	unsigned n_open; /* the length of list; movers.stats->open counts every worker's */
	uint64_t next_id;
	bool dispatching; /* inside a batch: freed connections go to dead */
	struct connection *dead;

	/* setup.c's: an event for a connection not running yet (e NULL: its timer), and what
	 * setup holds to release when a connection is freed. */
	void (*setup_event)(struct connection *c, struct end *e, uint32_t revents);
	void (*setup_free)(struct connection *c);
	/* The owner's: a connection was freed; fds ran out (error is -EMFILE or -ENFILE). */
	void (*closed)(struct connections *cs);
	void (*out_of_fds)(struct connections *cs, int error);
	/* keep.c's: a connection in systemd's fd store (keep_bag set) is being freed. */
	void (*kept_free)(struct connection *c);
	/*
	 * Exiting for a restart: kept connections are left as they are, for the next process to
	 * take over (no shutdown(), no map cleanup); the others close as usual.
	 */
	bool handing_over;
	/* keep.c is handing a kept client socket to setup: connections made now are held_elsewhere. */
	bool adopting;
};

/* A connection first chooses and reaches its backend (setup.c), then moves bytes. */
enum connection_phase {
	PHASE_PEEK,    /* reading the client's Host or SNI to choose a route */
	PHASE_CONNECT, /* connecting to a backend of the route, with failover */
	PHASE_RUN,     /* both flows running */
};

struct connection {
	struct connections *set;
	uint64_t id;
	enum connection_phase phase;
	struct end client, backend;
	struct flow up, down; /* up: client -> backend; down: backend -> client */
	sd_event_source *timer;
	uint64_t timer_at;

	/* setup.c's */
	const char *listener_name; /* borrowed from the listener, which outlives us */
	uint64_t deadline;	   /* of the peek, then of the whole connect attempt */
	struct route *route;	   /* chosen route, referenced until connected */
	struct backend *target;	   /* the backend connected to (referenced; active count) */
	uint64_t tried;		   /* route backends tried in this pass (bitmask) */
	unsigned passes;	   /* rounds over the route's backends */
	int last_error;		   /* the last connect error, for the log */
	uint64_t connect_started;  /* when the connect to the route's backends began */
	struct sr_backend_metrics *backend_metrics; /* counts this connection as open */
	bool waiting_fd;			    /* out of fds for the backend socket */

	uint64_t accepted_at; /* CLOCK_MONOTONIC µs; for a restored connection, when restored */

	/*
	 * keep.c's: the bag in systemd's fd store that holds this connection's fds, and its slot in
	 * the state record. Its sockets then outlive our close(): closing means shutdown().
	 */
	struct keep_bag *keep_bag;
	uint32_t keep_slot;
	bool held_elsewhere; /* an earlier process's bag has copies of its fds */

	/* --idle-timeout: the byte count last seen and when it last changed */
	uint64_t last_bytes;
	uint64_t last_active;

	enum sr_fallback_reason fallback;
	bool dead;	    /* freed during an event batch: the memory goes after the batch */
	bool promote_tried; /* its spliced download was offered the kernel path (promote_download()) */
	unsigned queued_behind; /* clients queued on its listener when it was accepted */
	/*
	 * The flows' byte counts at the last event, and how much the download has moved since the
	 * upload last did: a response (promote_download()).
	 */
	uint64_t up_bytes_seen, down_bytes_seen, down_run;
	struct connection *prev, *next;
};

/* The epoll set, the pipe pool and grace periods; cs->movers is the caller's to fill. */
int connections_init(struct connections *cs, sd_event *e);
/* Close every connection, and free what connections_init() set up. */
void connections_done(struct connections *cs);
/* Close every connection at once (a second stop signal, the drain timeout). */
void connections_abort_all(struct connections *cs);
/* --idle-timeout: close the connections whose byte counts did not move for timeout. */
void connections_close_idle(struct connections *cs, uint64_t timeout);

/* A connection for an accepted client socket, which it owns from now on (closed on error). */
int connection_new(struct connections *cs, int client_fd, bool client_is_unix,
		   struct connection **ret);
/* What an earlier process kept of a connection that was moving bytes (keep.c). */
struct connection_restore {
	int client_fd, backend_fd; /* taken over by connection_restore(), even on error */
	bool client_is_unix, backend_is_unix;
	bool down_kernel, up_kernel;	    /* which flows moved in the kernel */
	uint64_t kernel_bytes[_SR_DIR_MAX]; /* a kernel flow's bytes moved by hand (flow.bytes) */
	struct sr_pipe *pipe[_SR_DIR_MAX];  /* a spliced flow's own pipe, bytes in it, or NULL */
	/*
	 * A kernel flow that was settling (moving queued bytes by hand) resumes that, with the
	 * bytes it had read and not yet written (held, at least HELD_BUF_MAX bytes of malloc()ed buffer,
	 * taken over). With --kernel-upload the upload then waits, not started (up_idle).
	 */
	bool settling[_SR_DIR_MAX];
	uint8_t *held[_SR_DIR_MAX];
	size_t held_len[_SR_DIR_MAX];
	bool up_idle;
	/* A flow on recv()/send() at a restart: it resumes so, after the held bytes (what send()
	 * had not taken) if any. */
	bool copy[_SR_DIR_MAX];
};

/*
 * Take a kept connection back and run its flows. Each flow resumes as OPEN: a source that had
 * reached EOF reports it again, and a shutdown() already done is harmless to repeat. -ENOENT or
 * -ESTALE if its kernel-path entries are gone (the fds are then closed).
 */
int connection_restore(struct connections *cs, struct connection_restore *r,
		       struct connection **ret);
/* Start watching a restored connection's sockets (once the caller has noted it as kept). */
void connection_resume(struct connection *c);

/* Close at once, whatever is in flight (drain timeout, shutdown, idle timeout, failed setup). */
void connection_abort(struct connection *c);
/*
 * Whether connection_start() could put a new connection on the kernel path (--mode auto with no
 * more open than CPUs): then setup notes how many clients queue behind it (queued_behind).
 */
bool connection_may_start_in_kernel(const struct movers *m);
/* Connected, with any PROXY header sent: put it on a data path and start both flows. */
void connection_start(struct connection *c);

/* For setup.c: watch a socket (0 stops watching), and arm the connection's timer (0: off). */
int connection_watch(struct end *e, uint32_t events);
int connection_arm_timer(struct connection *c, uint64_t at);

#endif /* SR_CONNECTION_H */
