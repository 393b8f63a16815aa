/* SPDX-License-Identifier: GPL-2.0 */
/* Dropping capabilities once the kernel path is loaded. */
#ifndef SR_PRIVILEGES_H
#define SR_PRIVILEGES_H

#include <stdint.h>

/*
 * Keep only the capabilities in keep (a mask of 1ULL << CAP_*), in every set: effective,
 * permitted, inheritable, ambient and bounding. Returns 0 or negative errno.
 */
int capabilities_keep_only(uint64_t keep);

#endif /* SR_PRIVILEGES_H */
