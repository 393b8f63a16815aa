#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# A rough side-by-side, not the benchmark: direct to the Unix backend, sockredir --mode bpf,
# --mode bpf --kernel-upload and --mode splice, interleaved over ROUNDS rounds in a private
# network namespace. Prints the median of each figure and its ratio to direct.
#   RR:   64-byte round trips (µs each, averaged over RR_COUNT in one connection)
#   up/down: BULK bytes in one connection (MB/s)
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
OUT=$TOP/.output
ROUNDS=${ROUNDS:-3}
RR_COUNT=${RR_COUNT:-20000}
BULK=${BULK:-1G}

if [ -z "${SR_IN_NETNS:-}" ]; then
	export SR_IN_NETNS=1
	exec unshare -n -- "$BASH" "$0" "$@"
fi
ip link set lo up
T=$(mktemp -d /tmp/sockredir-bench.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT

"$OUT/srpeer" backend --listen "$T/echo.sock" --mode echo --ready-file "$T/r1" 2>/dev/null &
pids+=($!)
"$OUT/srpeer" backend --listen "$T/proto.sock" --mode proto --ready-file "$T/r2" 2>/dev/null &
pids+=($!)
for _ in $(seq 100); do [ -e "$T/r1" ] && [ -e "$T/r2" ] && break; sleep 0.05; done

variants=(direct bpf bpf-upload splice)
declare -A args=([bpf]="--mode bpf" [bpf-upload]="--mode bpf --kernel-upload" [splice]="--mode splice")
declare -A port=([bpf]=9001 [bpf-upload]=9002 [splice]=9003)
for v in bpf bpf-upload splice; do
	# Two proxies per variant: one in front of each backend.
	"$OUT/sockredir" ${args[$v]} --name bench-$v-e --listen 127.0.0.1:${port[$v]} "$T/echo.sock" 2>/dev/null &
	pids+=($!)
	"$OUT/sockredir" ${args[$v]} --name bench-$v-p --listen 127.0.0.1:$((port[$v] + 100)) "$T/proto.sock" 2>/dev/null &
	pids+=($!)
done
sleep 0.5

addr() { # addr VARIANT echo|proto
	if [ "$1" = direct ]; then echo "$T/$2.sock"; else
		[ "$2" = echo ] && echo "127.0.0.1:${port[$1]}" || echo "127.0.0.1:$((port[$1] + 100))"
	fi
}
secs() { sed -n 's/.*seconds=\([0-9.]*\).*/\1/p'; }

declare -A rr up down
for r in $(seq "$ROUNDS"); do
	for v in "${variants[@]}"; do
		s=$("$OUT/srpeer" client --connect "$(addr $v echo)" --test rr --size 64 --rounds "$RR_COUNT" | secs)
		rr[$v]+="$(echo "$s * 1000000 / $RR_COUNT" | bc -l) "
		s=$("$OUT/srpeer" client --connect "$(addr $v proto)" --test up --size "$BULK" | secs)
		up[$v]+="$(echo "$(numfmt --from=iec "$BULK") / $s / 1000000" | bc -l) "
		s=$("$OUT/srpeer" client --connect "$(addr $v proto)" --test down --size "$BULK" | secs)
		down[$v]+="$(echo "$(numfmt --from=iec "$BULK") / $s / 1000000" | bc -l) "
	done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
printf '%-12s %14s %16s %16s\n' variant "RR 64 B (µs)" "up (MB/s)" "down (MB/s)"
d_rr=$(echo "${rr[direct]}" | median)
d_up=$(echo "${up[direct]}" | median)
d_down=$(echo "${down[direct]}" | median)
for v in "${variants[@]}"; do
	m_rr=$(echo "${rr[$v]}" | median)
	m_up=$(echo "${up[$v]}" | median)
	m_down=$(echo "${down[$v]}" | median)
	printf '%-12s %7.1f (%4.2fx) %8.0f (%4.2fx) %8.0f (%4.2fx)\n' "$v" "$m_rr" \
		"$(echo "$m_rr / $d_rr" | bc -l)" "$m_up" "$(echo "$m_up / $d_up" | bc -l)" \
		"$m_down" "$(echo "$m_down / $d_down" | bc -l)"
done
echo "# $ROUNDS interleaved rounds, median; RR over $RR_COUNT round trips, bulk $BULK; $(uname -r), $(nproc) CPUs"
