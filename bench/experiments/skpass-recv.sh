#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Does SK_PASS on a TCP socket deliver every byte once? Builds skpass-recv.bpf.c and skpass-recv.c
# and checks TRANSFERS loopback transfers of GIB GiB each (default 100 of 1: 100 GiB, about three
# minutes here). Run by hand, as root; the figures are in bench/EXPERIMENTS.md.
# Usage: bench/experiments/skpass-recv.sh [GIB [TRANSFERS]]
set -euo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
make -s -C "$TOP" .output/vmlinux.h
clang -O2 -g -target bpf -I"$TOP/.output" -c "$TOP/bench/experiments/skpass-recv.bpf.c" \
	-o "$T/skpass-recv.bpf.o"
gcc -O2 -Wall -o "$T/skpass-recv" "$TOP/bench/experiments/skpass-recv.c" -lbpf
"$T/skpass-recv" "$T/skpass-recv.bpf.o" "${1:-1}" "${2:-100}"
