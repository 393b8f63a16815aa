#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# What storing connections in systemd's fd store costs PID 1 (systemd 252, in the nspawn harness of
# tests/systemd-lib.sh): for N socket pairs, stored one message per pair (each with its own
# FDNAME=, so that one connection can be removed alone) or 126 pairs per message, and then
# removed, PID 1's CPU time (/proc/PID/schedstat) and the wall time until NFileDescriptorStore
# shows it. Usage: bench/experiments/fdstore-cost.sh [N...] (default 1000 5000).
TOP=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/lib.sh
source "$TOP/tests/lib.sh"
# shellcheck source=tests/systemd-lib.sh
source "$TOP/tests/systemd-lib.sh"
SD_BARE=1
sd_setup "$@"
[ $# -gt 0 ] || set -- 1000 5000

gcc -O2 -Wall -o "$T/fdstore-cost" "$TOP/bench/experiments/fdstore-cost.c" -lsystemd ||
	fail "cannot build fdstore-cost"
install -D -m 0755 "$T/fdstore-cost" "$SD_ROOT/usr/local/bin/fdstore-cost"
log "PID 1's limit: $(grep 'open files' /proc/"$SD_PID1"/limits)"

pid1_cpu_ns() { awk '{ print $1 }' /proc/"$SD_PID1"/schedstat; }
now_ns() { date +%s%N; }

# wait_store N: until the unit's store holds N fds (at most 120 s).
wait_store() {
	local i
	for ((i = 0; i < 12000; i++)); do
		[ "$(ct_systemctl show -P NFileDescriptorStore fdstore-cost.service)" = "$1" ] && return 0
		sleep 0.01
	done
	fail "the store never held $1 fds"
}

# measure STEP FDS_AFTER: start STEP, wait for the store, print PID 1's CPU and the wall time.
measure() {
	local c0 t0 c1 t1
	c0=$(pid1_cpu_ns)
	t0=$(now_ns)
	ct touch "/run/fdstore-cost/$1"
	wait_store "$2"
	c1=$(pid1_cpu_ns)
	t1=$(now_ns)
	echo "$(((c1 - c0) / 1000)) $(((t1 - t0) / 1000))"
}

for n in "$@"; do
	for mode in each batch; do
		ct rm -rf /run/fdstore-cost
		ct mkdir -p /run/fdstore-cost
		ct systemd-run --unit fdstore-cost --service-type=notify -p NotifyAccess=main \
			-p FileDescriptorStoreMax=65536 -p LimitNOFILE=1048576 \
			/usr/local/bin/fdstore-cost "$n" "$mode" >/dev/null ||
			fail "cannot start fdstore-cost"
		read -r store_cpu store_wall < <(measure store $((2 * n)))
		read -r remove_cpu remove_wall < <(measure remove 0)
		ct touch /run/fdstore-cost/exit
		log "$n pairs, $mode: store PID 1 CPU $((store_cpu / 1000)) ms" \
			"($((store_cpu / (2 * n))) µs per fd), wall $((store_wall / 1000)) ms;" \
			"remove PID 1 CPU $((remove_cpu / 1000)) ms, wall $((remove_wall / 1000)) ms"
		for ((i = 0; i < 500; i++)); do
			ct_systemctl is-active -q fdstore-cost.service || break
			sleep 0.01
		done
	done
done
