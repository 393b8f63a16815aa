// SPDX-License-Identifier: GPL-2.0
/* Counters. The proxy's live in sr_proxy_stats (mmap), the data path's in sr_kstats. */
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "log.h"
#include "stats.h"

/* The BPF ABI uses __u64 (unsigned long long); PRIu64 wants uint64_t. */
#define U(x) ((uint64_t)(x))

static uint64_t fallbacks(const struct sr_proxy_stats *s)
{
	uint64_t n = 0;

	for (int i = 0; i < _SR_FALLBACK_MAX; i++)
		n += s->fallback[i];
	return n;
}

static const char *format_bytes(uint64_t n, char *buf, size_t size)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	size_t u = 0;

	while (v >= 1024 && u + 1 < ELEMENTSOF(units)) {
		v /= 1024;
		u++;
	}
	snprintf(buf, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
	return buf;
}

/*
 * "; 12 kept across restarts, 3 restored, 1 closed on restore", each part only when it is not
 * zero, so that an instance without the fd store says nothing of it; "" when all are. At most
 * 114 characters (three 20-digit numbers and their words), which the 512 of STATUS= allow for
 * beside a 191-character path status and the rest.
 */
static void format_restarts(const struct sr_proxy_stats *s, char *buf, size_t size)
{
	uint64_t kept = s->kept, restored = s->restored, closed = s->restore_closed;
	size_t n = 0;

	buf[0] = 0;
	if (kept)
		n += snprintf(buf + n, size - n, "; %" PRIu64 " kept across restarts", kept);
	if (restored || closed)
		n += snprintf(buf + n, size - n, "%s%" PRIu64 " restored", n ? ", " : "; ",
			      restored);
	if (closed)
		snprintf(buf + n, size - n, ", %" PRIu64 " closed on restore", closed);
}

void stats_format_status(const struct sr_proxy_stats *s, const struct sr_kstats *k,
			 const char *path_status, char *buf, size_t size)
{
	char down[32], up[32], restarts[128];

	format_restarts(s, restarts, sizeof(restarts));
	snprintf(buf, size,
		 "%s: %" PRIu64 " open, %" PRIu64 " accepted (%" PRIu64 " kernel path, %" PRIu64
		 " fell back); %s down, %s up%s",
		 path_status, U(s->open), U(s->accepted), U(s->kernel), fallbacks(s),
		 format_bytes(k->bytes[SR_DIR_DOWN] + s->spliced_bytes[SR_DIR_DOWN] +
				      s->copied_bytes[SR_DIR_DOWN] + s->flushed_bytes,
			      down, sizeof(down)),
		 format_bytes(k->bytes[SR_DIR_UP] + s->spliced_bytes[SR_DIR_UP] +
				      s->copied_bytes[SR_DIR_UP] + s->flushed_bytes_up,
			      up, sizeof(up)),
		 restarts);
}

void stats_log_summary(const struct sr_proxy_stats *s, const struct sr_kstats *k)
{
	log_info("Connections: %" PRIu64 " accepted, %" PRIu64 " on the kernel path (%" PRIu64
		 " with kernel upload), %" PRIu64 " on splice (mode %" PRIu64
		 ", client half-closed %" PRIu64 ", backend refused %" PRIu64 ", map full %" PRIu64
		 ", other %" PRIu64 ", client unix %" PRIu64 ", backend spoke first %" PRIu64
		 "), %" PRIu64 " backend connect failures.",
		 U(s->accepted), U(s->kernel), U(s->kernel_upload), fallbacks(s),
		 U(s->fallback[SR_FALLBACK_MODE]), U(s->fallback[SR_FALLBACK_CLIENT_STATE]),
		 U(s->fallback[SR_FALLBACK_BACKEND_STATE]), U(s->fallback[SR_FALLBACK_MAP_FULL]),
		 U(s->fallback[SR_FALLBACK_OTHER]), U(s->fallback[SR_FALLBACK_CLIENT_UNIX]),
		 U(s->fallback[SR_FALLBACK_BACKEND_FIRST]), U(s->connect_failed));

	log_info("Setup: %" PRIu64 " peek failures, %" PRIu64 " closed idle, %" PRIu64 " reloads.",
		 U(s->peek_failed), U(s->idle_closed), U(s->reloads));
	log_info("Bytes: kernel down %" PRIu64 ", kernel up %" PRIu64 ", spliced up %" PRIu64
		 ", spliced down %" PRIu64 ", moved by hand %" PRIu64 "; %" PRIu64
		 " drain checks, %" PRIu64 " redirect failures, %" PRIu64 " held skbs.",
		 U(k->bytes[SR_DIR_DOWN]), U(k->bytes[SR_DIR_UP]), U(s->spliced_bytes[SR_DIR_UP]),
		 U(s->spliced_bytes[SR_DIR_DOWN]), U(s->flushed_bytes + s->flushed_bytes_up),
		 U(s->drain_checks), U(k->redirect_failed), U(k->held));
	/*
	 * Words chosen so that tests/lib.sh summary() finds no other line's field here ("on
	 * splice", "kernel down", "spliced up", ...): it takes the last match in the log.
	 */
	log_info("Movers: copied down %" PRIu64 ", copied up %" PRIu64
		 "; promoted to splice %" PRIu64 " down, %" PRIu64
		 " up, downloads to the kernel %" PRIu64 "; closed by fastest mover: copy %" PRIu64
		 ", splice %" PRIu64 ", kernel %" PRIu64 ".",
		 U(s->copied_bytes[SR_DIR_DOWN]), U(s->copied_bytes[SR_DIR_UP]),
		 U(s->promoted_splice[SR_DIR_DOWN]), U(s->promoted_splice[SR_DIR_UP]),
		 U(s->promoted_kernel), U(s->carried[SR_MOVER_COPY]),
		 U(s->carried[SR_MOVER_SPLICE]), U(s->carried[SR_MOVER_KERNEL]));
	/* Only where the fd store was used, as in STATUS=. */
	if (s->kept || s->restored || s->restore_closed)
		log_info("Restarts: %" PRIu64 " connections kept in the fd store, %" PRIu64
			 " restored from the previous process, %" PRIu64
			 " closed on restore; %" PRIu64 " fds stored.",
			 U(s->kept), U(s->restored), U(s->restore_closed), U(s->store_fds));
}

int stats_runtime_new(const char *name, const char *path_status, struct stats_runtime *ret)
{
	_cleanup_free_ char *dir = NULL, *path = NULL;
	_cleanup_close_ int fd = -EBADF;
	void *mem;
	int r;

	*ret = (struct stats_runtime){ .fd = -EBADF };
	if (asprintf(&dir, SR_RUN_ROOT "/%s", name) < 0 ||
	    asprintf(&path, "%s/" SR_RUNTIME_STATS, dir) < 0)
		return -ENOMEM;

	/* Under systemd, RuntimeDirectory=sockredir/%i has made both. */
	if ((mkdir(SR_RUN_ROOT, 0755) < 0 && errno != EEXIST) ||
	    (mkdir(dir, 0755) < 0 && errno != EEXIST))
		r = negative_errno();
	else {
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
		r = fd < 0 ? negative_errno() : 0;
	}
	if (r >= 0 && flock(fd, LOCK_EX | LOCK_NB) < 0)
		r = errno == EWOULDBLOCK ? -EBUSY : negative_errno();
	if (r >= 0 && ftruncate(fd, 0) < 0)
		r = negative_errno();
	if (r >= 0 && ftruncate(fd, sizeof(struct sr_runtime_stats)) < 0)
		r = negative_errno();
	if (r < 0) {
		log_notice_errno(r,
				 "Failed to create %s (%m): `sockredir stats` and `sockredir "
				 "reload` won't find this instance.",
				 path);
		fd = safe_close(fd);
		dir = mfree(dir);
	}

	mem = mmap(NULL, sizeof(struct sr_runtime_stats), PROT_READ | PROT_WRITE,
		   MAP_SHARED | (fd >= 0 ? 0 : MAP_ANONYMOUS), fd, 0);
	if (mem == MAP_FAILED)
		return negative_errno();
	ret->mem = mem;
	snprintf(ret->mem->path_status, sizeof(ret->mem->path_status), "%s", path_status);
	ret->fd = TAKE_FD(fd);
	ret->dir = TAKE_PTR(dir);
	return 0;
}

void stats_runtime_done(struct stats_runtime *rt, bool remove)
{
	if (rt->mem)
		munmap(rt->mem, sizeof(*rt->mem));
	if (remove && rt->dir) {
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s/" SR_RUNTIME_STATS, rt->dir);
		(void)unlink(path);
		(void)rmdir(rt->dir);
	}
	rt->fd = safe_close(rt->fd);
	rt->dir = mfree(rt->dir);
	rt->mem = NULL;
}

int stats_runtime_read(const char *dir, struct sr_runtime_stats *ret)
{
	_cleanup_close_ int fd = -EBADF;
	struct sr_runtime_stats st;
	char path[PATH_MAX];
	ssize_t n;

	if (snprintf(path, sizeof(path), "%s/" SR_RUNTIME_STATS, dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return negative_errno();
	/* The instance holds LOCK_EX while it runs: a shared lock we can take means it is gone. */
	if (flock(fd, LOCK_SH | LOCK_NB) == 0)
		return -ESTALE;
	n = pread(fd, &st, sizeof(st), 0);
	if (n < 0)
		return negative_errno();
	if (n != sizeof(st))
		return -EBADMSG;
	st.path_status[sizeof(st.path_status) - 1] = 0;
	*ret = st;
	return 0;
}
