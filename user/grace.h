/* SPDX-License-Identifier: GPL-2.0 */
/*
 * RCU grace periods without blocking the event loop. A verdict program runs inside an RCU read
 * section, so once a grace period has passed after a map update, every verdict that saw the old
 * value has finished. membarrier(MEMBARRIER_CMD_GLOBAL) waits for one (10-20 ms here); a helper
 * thread makes that call and wakes the loop through an eventfd.
 */
#ifndef SR_GRACE_H
#define SR_GRACE_H

#include <systemd/sd-event.h>

#include "util.h"

struct grace;

/* on_done runs in the loop after each completed grace period. */
int grace_new(sd_event *e, void (*on_done)(void *userdata), void *userdata, struct grace **ret);
struct grace *grace_free(struct grace *g);

/* Ask for a grace period that starts after this call; returns its ticket. */
uint64_t grace_request(struct grace *g);
/* Has the grace period of this ticket passed? */
bool grace_passed(struct grace *g, uint64_t ticket);

#endif /* SR_GRACE_H */
