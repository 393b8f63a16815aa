// SPDX-License-Identifier: GPL-2.0
/*
 * Logging: one line per message on stderr. When stderr is the journal, each line starts with its
 * syslog priority as "<N>", which journald turns into the entry's priority; elsewhere, a terminal
 * or a file, a person reads plain lines.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <bpf/libbpf.h>

#include "log.h"

static int log_max_level = LOG_INFO;
static bool libbpf_warnings = true;
static char log_prefix[16];
static bool log_priority_prefix;

/*
 * systemd sets JOURNAL_STREAM=DEV:INODE for a service whose stdout or stderr it connected to the
 * journal. It stays in the environment of whatever the service runs, so compare it with stderr,
 * as systemd's own log_open() does: a command run from a shell inside the service, with stderr
 * on a terminal, prints plain lines.
 */
static bool stderr_is_journal(void)
{
	const char *e = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_open(void)
{
	log_priority_prefix = stderr_is_journal();
}

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

/* "<N>" for the journal, else nothing. */
static const char *priority(int level, char *buf, size_t size)
{
	if (!log_priority_prefix)
		return "";
	snprintf(buf, size, "<%d>", level);
	return buf;
}

int log_internal(int level, int error, const char *func, const char *format, ...)
{
	char buf[1024], prio[8];
	va_list ap;
	int saved = errno;

	if (error < 0)
		error = -error;

	/* %m in the format means this error, not whatever errno happens to hold. */
	errno = error;
	va_start(ap, format);
	vsnprintf(buf, sizeof(buf), format, ap);
	va_end(ap);

	/* One fprintf() per line: glibc writes it with one write(), whole, beside other workers. */
	if (log_max_level >= LOG_DEBUG)
		fprintf(stderr, "%s%s%s: %s\n", priority(level, prio, sizeof(prio)), log_prefix,
			func, buf);
	else
		fprintf(stderr, "%s%s%s\n", priority(level, prio, sizeof(prio)), log_prefix, buf);

	errno = saved;
	return -error;
}

static int libbpf_print(enum libbpf_print_level level, const char *format, va_list ap)
{
	int prio = level == LIBBPF_WARN ? LOG_WARNING : level == LIBBPF_INFO ? LOG_INFO : LOG_DEBUG;
	char buf[1024], pbuf[8];
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
	fprintf(stderr, "%s%s\n", priority(prio, pbuf, sizeof(pbuf)), buf);
	return 0;
}

void log_bridge_libbpf(bool show_warnings)
{
	libbpf_warnings = show_warnings;
	libbpf_set_print(libbpf_print);
}
