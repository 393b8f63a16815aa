/* SPDX-License-Identifier: GPL-2.0 */
/* `sockredir reload NAME`: reload a running instance and wait for the outcome (ExecReload=). */
#ifndef SR_RELOAD_CMD_H
#define SR_RELOAD_CMD_H

/* argv[0] is "reload". Returns 0 once reloaded, -SR_EUSAGE on bad usage, or -errno (logged). */
int reload_main(int argc, char *argv[]);

#endif /* SR_RELOAD_CMD_H */
