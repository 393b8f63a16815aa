#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Experiment: a sock_ops program deletes sockets from a sockhash (it runs under the socket lock,
# where a delete cannot race with tcp_read_skb()), and counts its PARSE_HDR_OPT callbacks against
# the segments received. Needs root, clang and a cgroup2 mount. Run: bench/experiments/sockops-delete.sh
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$(dirname "$HERE")")
CG2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/mounts)
[ -n "$CG2" ] || { echo "no cgroup2 mount" >&2; exit 1; }
T=$(mktemp -d)
CG=$CG2/sockredir-exp-$$
PIN=/sys/fs/bpf/sockredir-exp-$$
cleanup() {
	local id
	id=$(bpftool cgroup show "$CG" 2>/dev/null | awk '/sock_ops/ { print $1 }')
	[ -z "$id" ] || bpftool cgroup detach "$CG" sock_ops id "$id"
	rmdir "$CG" 2>/dev/null || true
	rm -rf "$PIN" "$T"
}
trap cleanup EXIT
make -C "$TOP" -s .output/vmlinux.h >/dev/null 2>&1 || true
clang -O2 -g -target bpf -I"$TOP/.output" -c "$HERE/sockops-delete.bpf.c" -o "$T/sockops.o"
bpftool prog loadall "$T/sockops.o" "$PIN" pinmaps "$PIN/maps"
mkdir "$CG"
bpftool cgroup attach "$CG" sock_ops pinned "$PIN/probe_ops"
unshare -n bash -c "ip link set lo up; echo \$\$ >$CG/cgroup.procs; nstat -n;
	python3 '$HERE/sockops-delete-xfer.py'; nstat TcpInSegs"
echo "counts (established, PARSE_HDR_OPT callbacks, deletes, inserts):"
bpftool map dump pinned "$PIN/maps/counts" | grep -o '"value": [0-9]*' | grep -o '[0-9]*' | tr '\n' ' '
echo
