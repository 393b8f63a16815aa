/* SPDX-License-Identifier: GPL-2.0 */
#ifndef SR_FUZZ_FAKE_RESOLVER_H
#define SR_FUZZ_FAKE_RESOLVER_H

/* How many lookups the fake resolver answered with made-up addresses, and numerically. */
extern unsigned long fake_resolver_names, fake_resolver_numeric;

#endif
