/* SPDX-License-Identifier: GPL-2.0 */
/* Small helpers in the manner of systemd's src/basic: cleanup attributes and fd ownership. */
#ifndef SR_UTIL_H
#define SR_UTIL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define _cleanup_(f)	   __attribute__((cleanup(f)))
#define _unused_	   __attribute__((unused))
#define _noreturn_	   __attribute__((noreturn))
#define _printf_(a, b)	   __attribute__((format(printf, a, b)))
#define _likely_(x)	   __builtin_expect(!!(x), 1)
#define _unlikely_(x)	   __builtin_expect(!!(x), 0)

#define ELEMENTSOF(x)	   (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b)	   ((a) < (b) ? (a) : (b))
#define MAX(a, b)	   ((a) > (b) ? (a) : (b))
#define CLAMP(x, lo, hi)   MIN(MAX(x, lo), hi)
#define DIV_ROUND_UP(n, d) (((n) + (d)-1) / (d))

/* The struct that embeds *ptr as member: how a layer's callback finds its owner's object. */
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define USEC_PER_SEC			UINT64_C(1000000)
#define USEC_PER_MSEC			UINT64_C(1000)
#define NSEC_PER_USEC			UINT64_C(1000)

/* Hand over ownership: return the value and leave the variable empty for its cleanup. */
#define TAKE_GENERIC(var, null)             \
	({                                  \
		__typeof__(var) _t = (var); \
		(var) = (null);             \
		_t;                         \
	})
#define TAKE_FD(fd)   TAKE_GENERIC(fd, -EBADF)
#define TAKE_PTR(ptr) TAKE_GENERIC(ptr, NULL)

/* Close an fd if it is one, keeping errno; returns -EBADF so that `fd = safe_close(fd)` works. */
static inline int safe_close(int fd)
{
	if (fd >= 0) {
		int saved = errno;

		close(fd);
		errno = saved;
	}
	return -EBADF;
}

static inline void closep(int *fd)
{
	safe_close(*fd);
}

static inline void freep(void *p)
{
	free(*(void **)p);
}

/* Free and return NULL, so that `p = mfree(p)` works. */
static inline void *mfree(void *p)
{
	free(p);
	return NULL;
}

#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_free_	_cleanup_(freep)

/* Define a cleanup function for a pointer type whose destructor accepts NULL. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func) \
	static inline void func##p(type *p)     \
	{                                       \
		if (*p)                         \
			func(*p);               \
	}

/* errno as a negative return value, never 0 even if a call forgot to set it. */
static inline int negative_errno(void)
{
	return errno > 0 ? -errno : -EIO;
}

/* CLOCK_MONOTONIC in µs: every timer and deadline of the proxy counts in these. */
static inline uint64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / NSEC_PER_USEC;
}

static inline bool streq(const char *a, const char *b)
{
	return a && b && __builtin_strcmp(a, b) == 0;
}

#endif /* SR_UTIL_H */
