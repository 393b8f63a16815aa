#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# A restarted sockredir adopts the maps of the instance before it (systemd's fd store): a second
# bpf_state loaded over the first one's map fds keeps the first one's connections moving in the
# kernel, every byte checked, after the first is gone; new connections move too; sr_peers entries
# and counters carry over; maps of another --map-entries, a missing map or swapped maps are
# refused with a clear reason. tests/test-bpf-reuse.c does it all, in its own network and mount
# namespaces (a bpffs on a temporary directory); it exits 77 when it can't.
. "$(dirname "$0")/lib.sh"
need_root
cd "$TOP" || exit 1

# `make test` has built it; run alone, build it when missing or stale. Unsanitized, as `make test`
# builds it: SANITIZE= overrides a SANITIZE=1 that MAKEFLAGS passes down.
make -s SANITIZE= .output/test-bpf-reuse

# With -v, the loader's and libbpf's debug lines: shown only when it fails.
log=$(mktemp /tmp/t-bpf-reuse.XXXXXX)
rc=0
.output/test-bpf-reuse -v >"$log" 2>&1 || rc=$?
if [ $rc = 0 ] || [ $rc = 77 ]; then
	grep -E '^(SKIP|FAIL|test-bpf-reuse)' "$log" || true
else
	tail -n 80 "$log"
fi
rm -f "$log"
exit $rc
