/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Logging to stderr, with sd-daemon "<N>" priority prefixes when stderr is the journal, so
 * journald files each line at the right level. The log_*_errno() helpers return the negative
 * errno they were given, so that `return log_error_errno(r, "...: %m");` reads as one step; %m
 * prints that errno.
 */
#ifndef SR_LOG_H
#define SR_LOG_H

#include <syslog.h>

#include "util.h"

/* Look at where stderr goes; call once at start-up, before the first message. */
void log_open(void);
void log_set_max_level(int level);
int log_get_max_level(void);
/* Put prefix (at most 15 bytes, such as "worker 2: ") before every message of this process. */
void log_set_prefix(const char *prefix);
int log_internal(int level, int error, const char *func, const char *format, ...) _printf_(4, 5);

#define log_full_errno(level, error, ...)                                                   \
	({                                                                                  \
		int _l = (level), _e = (error);                                             \
		(_l <= log_get_max_level()) ? log_internal(_l, _e, __func__, __VA_ARGS__) : \
					      -(_e < 0 ? -_e : _e);                         \
	})
#define log_full(level, ...)	  ((void)log_full_errno(level, 0, __VA_ARGS__))

#define log_debug(...)		  log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)		  log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...)		  log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...)	  log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...)		  log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...)	  log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...)	  log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_notice_errno(e, ...)  log_full_errno(LOG_NOTICE, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...)	  log_full_errno(LOG_ERR, e, __VA_ARGS__)

/*
 * For trouble that comes in bursts: true once per interval (and *last becomes now), so that the
 * first of a burst is logged at its level and the rest at debug level, or only counted. *last
 * starts at 0: never.
 */
static inline bool log_ratelimit(uint64_t *last, uint64_t interval)
{
	uint64_t now = now_usec();

	if (*last && now - *last < interval)
		return false;
	*last = now;
	return true;
}

/*
 * Route libbpf's messages through log_internal(). Its debug output shows only with -v, and its
 * warnings only if show_warnings (when BPF is optional, one message of ours says why it failed).
 */
void log_bridge_libbpf(bool show_warnings);

#endif /* SR_LOG_H */
