/* SPDX-License-Identifier: GPL-2.0 */
/* Config files of "key = value" lines, knowing nothing of what the keys mean. */
#ifndef SR_CONFIG_FILE_H
#define SR_CONFIG_FILE_H

/*
 * Called for each "key = value" line, with both sides stripped; value may be empty. Returns 0
 * to go on, or <0 to stop reading, after logging why.
 */
typedef int (*config_file_apply_t)(const char *path, unsigned line, const char *key,
				   const char *value, void *userdata);

/*
 * Read path and call apply for each line that is not blank or a comment ('#' or ';' first).
 * Returns 0, apply's error, or -SR_EUSAGE after logging why the file can't be read or a line is
 * not "key = value".
 */
int config_file_read(const char *path, config_file_apply_t apply, void *userdata);

#endif /* SR_CONFIG_FILE_H */
