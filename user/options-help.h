/* SPDX-License-Identifier: GPL-2.0 */
/* The text of sockredir --help. */
#ifndef SR_OPTIONS_HELP_H
#define SR_OPTIONS_HELP_H

/* Print it to stdout. Each option it names must be in options.c's table (t-cli checks). */
void options_help(void);

#endif /* SR_OPTIONS_HELP_H */
