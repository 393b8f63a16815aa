// SPDX-License-Identifier: GPL-2.0
/* Logging: one line per message on stderr, prefixed with its syslog priority as "<N>". */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <bpf/libbpf.h>

#include "log.h"

static int log_max_level = LOG_INFO;
static bool libbpf_warnings = true;
static char log_prefix[16];

void log_set_prefix(const char *prefix)
{
	snprintf(log_prefix, sizeof(log_prefix), "%s", prefix);
}

void log_set_max_level(int level)
{
	log_max_level = level;
}

int log_get_max_level(void)
{
	return log_max_level;
}

int log_internal(int level, int error, const char *func, const char *format, ...)
{
	char buf[1024];
	va_list ap;
	int saved = errno;

	if (error < 0)
		error = -error;

	/* %m in the format means this error, not whatever errno happens to hold. */
	errno = error;
	va_start(ap, format);
	vsnprintf(buf, sizeof(buf), format, ap);
	va_end(ap);

	if (log_max_level >= LOG_DEBUG)
		fprintf(stderr, "<%d>%s%s: %s\n", level, log_prefix, func, buf);
	else
		fprintf(stderr, "<%d>%s%s\n", level, log_prefix, buf);

	errno = saved;
	return -error;
}

static int libbpf_print(enum libbpf_print_level level, const char *format, va_list ap)
{
	int prio = level == LIBBPF_WARN ? LOG_WARNING : level == LIBBPF_INFO ? LOG_INFO : LOG_DEBUG;
	char buf[1024];
	size_t n;

	/* libbpf is chatty at INFO about features it probes; keep that for -v too. */
	if (prio == LOG_WARNING && !libbpf_warnings)
		prio = LOG_DEBUG;
	if (prio >= LOG_INFO && log_max_level < LOG_DEBUG)
		return 0;

	vsnprintf(buf, sizeof(buf), format, ap);
	n = strlen(buf);
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = 0;
	if (n == 0)
		return 0;
	/* libbpf's messages carry their own "libbpf: " prefix. */
	fprintf(stderr, "<%d>%s\n", prio, buf);
	return 0;
}

void log_bridge_libbpf(bool show_warnings)
{
	libbpf_warnings = show_warnings;
	libbpf_set_print(libbpf_print);
}
