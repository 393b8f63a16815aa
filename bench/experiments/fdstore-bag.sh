#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# fdstore-bag.c under systemd 252 (the nspawn harness): N socket pairs kept in one bag in the fd
# store across a SIGKILL and Restart=on-failure; PID 1's CPU time for it, and the restart time.
# Usage: bench/experiments/fdstore-bag.sh [N...] (default 1000 10000).
TOP=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/lib.sh
source "$TOP/tests/lib.sh"
# shellcheck source=tests/systemd-lib.sh
source "$TOP/tests/systemd-lib.sh"
SD_BARE=1
sd_setup "$@"
[ $# -gt 0 ] || set -- 1000 10000

gcc -O2 -Wall -o "$T/fdstore-bag" "$TOP/bench/experiments/fdstore-bag.c" -lsystemd ||
	fail "cannot build fdstore-bag"
install -D -m 0755 "$T/fdstore-bag" "$SD_ROOT/usr/local/bin/fdstore-bag"
pid1_cpu_ns() { awk '{ print $1 }' /proc/"$SD_PID1"/schedstat; }
now_ns() { date +%s%N; }

for n in "$@"; do
	u=fdstore-bag-$n
	ct rm -rf /run/fdstore-bag
	ct mkdir -p /run/fdstore-bag
	c0=$(pid1_cpu_ns)
	ct systemd-run --unit "$u" --service-type=notify -p NotifyAccess=main -p Restart=on-failure \
		-p RestartSec=0 -p FileDescriptorStoreMax=16 -p LimitNOFILE=1048576 \
		/usr/local/bin/fdstore-bag "$n" >/dev/null || fail "cannot start $u"
	c1=$(pid1_cpu_ns)
	log "$n pairs: stored, store holds $(ct_systemctl show -P NFileDescriptorStore "$u") fds;" \
		"PID 1 CPU for the start and the store: $(((c1 - c0) / 1000000)) ms"
	t0=$(now_ns)
	ct_systemctl kill --signal=SIGKILL --kill-whom=main "$u"
	for ((i = 0; i < 3000; i++)); do
		ct test -s /run/fdstore-bag/result && break
		sleep 0.01
	done
	t1=$(now_ns)
	c2=$(pid1_cpu_ns)
	ct test -s /run/fdstore-bag/result || fail "$u never restored"
	log "$n pairs: after SIGKILL and restart: $(ct cat /run/fdstore-bag/result);" \
		"restored $(((t1 - t0) / 1000000)) ms after the kill; PID 1 CPU $(((c2 - c1) / 1000000)) ms"
	ct_systemctl stop "$u"
done
