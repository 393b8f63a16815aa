/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Bad usage, told apart from a runtime failure all the way up to main(): parsers that log what
 * the user got wrong return -SR_EUSAGE, and main() turns that into EXIT_USAGE.
 */
#ifndef SR_USAGE_H
#define SR_USAGE_H

/* Exit code for bad usage, distinct from a runtime failure (1). */
#define EXIT_USAGE 2
/* Internal error code for bad usage; never an errno value. */
#define SR_EUSAGE 4096

#endif /* SR_USAGE_H */
