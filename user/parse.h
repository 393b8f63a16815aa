/* SPDX-License-Identifier: GPL-2.0 */
/* Strict parsers for option values, shared by the options, the commands and the tests. */
#ifndef SR_PARSE_H
#define SR_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/* Strict number parsers, shared with the tests: no sign, no trailing junk, range-checked. */
int parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *ret);
int parse_time_usec(const char *s, uint64_t *ret);

/* yes/true/on/1 or no/false/off/0, in any case. */
int parse_bool(const char *s, bool *ret);
bool instance_name_is_valid(const char *n);
bool fdname_is_valid(const char *n);
int host_pattern_normalize(const char *s, char **ret);

#endif /* SR_PARSE_H */
