// SPDX-License-Identifier: GPL-2.0
/* "key = value" lines; '#' and ';' start comments. What a key means is the caller's business. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "config-file.h"
#include "log.h"
#include "usage.h"
#include "util.h"

/* A config file longer than this is surely a mistake. */
#define CONFIG_MAX_LINES 10000

static char *strip(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = 0;
	return s;
}

int config_file_read(const char *path, config_file_apply_t apply, void *userdata)
{
	_cleanup_free_ char *line = NULL;
	FILE *f;
	size_t size = 0;
	unsigned n = 0;
	int r = 0;

	f = fopen(path, "re");
	if (!f) {
		log_error_errno(errno, "Failed to open config file %s: %m", path);
		return -SR_EUSAGE;
	}
	while (getline(&line, &size, f) >= 0) {
		char *key, *value, *eq;

		if (++n > CONFIG_MAX_LINES) {
			log_error("%s: more than %d lines.", path, CONFIG_MAX_LINES);
			r = -SR_EUSAGE;
			break;
		}
		key = strip(line);
		if (*key == 0 || *key == '#' || *key == ';')
			continue;
		eq = strchr(key, '=');
		if (!eq) {
			log_error("%s:%u: Expected 'key = value', got '%s'.", path, n, key);
			r = -SR_EUSAGE;
			break;
		}
		*eq = 0;
		key = strip(key);
		value = strip(eq + 1);
		r = apply(path, n, key, value, userdata);
		if (r < 0)
			break;
	}
	if (r >= 0 && ferror(f)) {
		log_error_errno(EIO, "Failed to read %s: %m", path);
		r = -SR_EUSAGE;
	}
	fclose(f);
	return r;
}
