#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The benchmark: `make bench` (about 15 minutes) or `make bench QUICK=1` (about a minute).
#
# Eight variants, all in front of the same bench-backend on a Unix socket: direct (the limit),
# sockredir --mode bpf, --mode bpf --kernel-upload, --mode splice, systemd-socket-proxyd, socat,
# haproxy and nginx (bench/peers/). Everything runs in a private network namespace.
#
# Each round runs every variant once, in an order rotated from round to round, so that noise
# falls evenly: request/response latency for 1 B, 64 B, 4 KiB and 64 KiB messages, bulk upload
# and download, and the connection rate; then, for each scale level, 64 B request/response over
# that many concurrent connections while the proxy's fds and memory are read. A proxy is started
# fresh for each variant in a round and for each scale level, so memory figures start from idle.
#
# Output: $BENCH_RESULTS, by default bench/results/<date>[-quick]/:
#   raw.jsonl      one line per measurement, as bench-client printed it, plus round and variant
#   raw/hist/      latency histograms (ns,count) per round, variant and test
#   meta.json      the machine, the versions and the settings
#   results.md     the tables (bench/report.py), and *.png, the plots
#   sockredir-log.txt  every sockredir log line at warning level or above, and its exit counters
#   logs/          every peer's log (not for committing)
#
# Settings (environment): QUICK=1, ROUNDS, RR_SECONDS, RR_SIZES, BULK, CONNRATE_SECONDS,
# SCALE_LEVELS, SCALE_SECONDS, STALL, VARIANTS (space-separated names), BENCH_RESULTS.
set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(dirname "$BENCH")
OUT=$TOP/.output
SOCKREDIR=$OUT/sockredir
CLIENT=$OUT/bench-client
BACKEND=$OUT/bench-backend

# shellcheck source=bench/peers/variants.sh
. "$BENCH/peers/variants.sh"

case ${QUICK:-} in
"" | 0) QUICK="" ;;
*) QUICK=1 ;;
esac
if [ -n "$QUICK" ]; then
	: "${ROUNDS:=1}" "${RR_SECONDS:=0.25}" "${BULK:=64M}" "${CONNRATE_SECONDS:=0.25}"
	: "${SCALE_LEVELS:=100 1000}" "${SCALE_SECONDS:=0.25}"
else
	: "${ROUNDS:=5}" "${RR_SECONDS:=1}" "${BULK:=1G}" "${CONNRATE_SECONDS:=1}"
	: "${SCALE_LEVELS:=100 1000 10000}" "${SCALE_SECONDS:=1}"
fi
: "${RR_SIZES:=1 64 4096 65536}"
# Seconds without progress before a measurement is called failed.
: "${STALL:=5}"
: "${VARIANTS:=${ALL_VARIANTS[*]}}"
CONNRATE_PROCS=2
SCALE_PROCS=2

die() {
	echo "bench: $*" >&2
	exit 1
}

preflight() {
	local c b
	[ "$(id -u)" = 0 ] || die "needs root: network namespaces, BPF and pins"
	for c in unshare ip ss setsid timeout systemd-socket-activate python3 gnuplot; do
		command -v "$c" >/dev/null 2>&1 || die "needs '$c' (run 'make deps' as root)"
	done
	for b in "$SOCKREDIR" "$CLIENT" "$BACKEND"; do
		[ -x "$b" ] || die "$b is missing: run 'make bench', which builds it"
	done
	# The Makefile doesn't know that both programs include bench/proto.h.
	for b in client backend; do
		if [ "$BENCH/$b.c" -nt "$OUT/bench-$b" ] || [ "$BENCH/proto.h" -nt "$OUT/bench-$b" ]; then
			die "$OUT/bench-$b is older than its source: rm .output/bench-* and run make bench"
		fi
	done
	for v in $VARIANTS; do
		[ -n "${VARIANT_TITLE[$v]:-}" ] || die "unknown variant '$v' (known: ${ALL_VARIANTS[*]})"
	done
}

if [ -z "${SR_BENCH_NETNS:-}" ]; then
	preflight
	export SR_BENCH_NETNS=1 QUICK
	export BENCH_RESULTS=${BENCH_RESULTS:-$BENCH/results/$(date +%Y-%m-%dT%H%M)${QUICK:+-quick}}
	exec unshare -n -- "$BASH" "$0" "$@"
fi

RESULTS=$BENCH_RESULTS
LOGS=$RESULTS/logs
RAW=$RESULTS/raw.jsonl
SRLOG=$RESULTS/sockredir-log.txt
T=""
BACKEND_PID=""
PEER_PID=""
PEER_N=0
declare -a PIN_NAMES=()

say() {
	printf '[%4ds] %s\n' "$SECONDS" "$*"
}

alive() { # PID: running, not a zombie
	[ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

cleanup() {
	local rc=$? n
	set +e
	peer_stop >/dev/null 2>&1
	if [ -n "$BACKEND_PID" ]; then
		kill -TERM -- "-$BACKEND_PID" 2>/dev/null
		wait "$BACKEND_PID" 2>/dev/null
	fi
	# A sockredir that had to be killed leaves its pins; only ours are touched.
	for n in "${PIN_NAMES[@]}"; do
		[ -e "/sys/fs/bpf/sockredir/$n" ] && rm -rf "/sys/fs/bpf/sockredir/$n"
	done
	rmdir /sys/fs/bpf/sockredir 2>/dev/null
	[ -n "$T" ] && [ -z "${KEEP_TMP:-}" ] && rm -rf "$T"
	exit $rc
}

setup_netns() {
	ip link set lo up
	# Per namespace: room for the connection-rate test's TIME_WAIT sockets.
	sysctl -qw net.ipv4.ip_local_port_range="10000 65000" net.ipv4.tcp_tw_reuse=1
	sysctl -qw net.core.somaxconn=4096
}

start_backend() {
	rm -f "$T/backend.ready"
	setsid "$BACKEND" --listen "$BACKEND_SOCK" --procs 2 --ready-file "$T/backend.ready" \
		</dev/null 2>"$LOGS/backend.log" &
	BACKEND_PID=$!
	for _ in $(seq 200); do
		[ -e "$T/backend.ready" ] && return 0
		sleep 0.05
	done
	die "the backend did not start; see $LOGS/backend.log"
}

stop_backend() {
	kill -TERM -- "-$BACKEND_PID" 2>/dev/null || true
	wait "$BACKEND_PID" 2>/dev/null || true
	BACKEND_PID=""
}

# peer_start VARIANT: start a fresh instance and wait until a round trip goes through it.
# Sets ADDR, WATCH (the --watch-pid option) and, on failure, PEER_REASON.
peer_start() {
	local v=$1 out="" i
	PEER_REASON=""
	if [ "$v" = direct ]; then
		ADDR=$BACKEND_SOCK
		WATCH=()
		return 0
	fi
	PEER_N=$((PEER_N + 1))
	PEER_V=$v
	DIR=$T/peer-$PEER_N
	mkdir -p "$DIR"
	PORT=${VARIANT_PORT[$v]}
	PIN_NAME=bench$$-$PEER_N
	[[ $v == sr-* ]] && PIN_NAMES+=("$PIN_NAME")
	variant_cmd "$v"
	if ! command -v "${CMD[0]}" >/dev/null 2>&1; then
		PEER_REASON="${CMD[0]} is not installed (make deps)"
		return 1
	fi
	PEER_LOG=$LOGS/r$ROUND-$PHASE-$v.log
	echo "# ${CMD[*]}" >"$PEER_LOG"
	setsid "${CMD[@]}" </dev/null >>"$PEER_LOG" 2>&1 &
	PEER_PID=$!
	ADDR=127.0.0.1:$PORT
	WATCH=(--watch-pid "$PEER_PID")
	# The probe also makes a socket-activated proxy exec. Bounded: 10 tries of about 1 s.
	for i in $(seq 10); do
		if out=$("$CLIENT" --connect "$ADDR" --test probe --stall 1 2>&1); then
			return 0
		fi
		alive "$PEER_PID" || break
	done
	PEER_REASON="did not start: $(json_field reason "$out"); log: $(grep -v '^#' "$PEER_LOG" | tail -n 2 | tr '\n' ' ')"
	peer_stop
	return 1
}

# peer_stop: SIGTERM to the whole session, SIGKILL after 5 s; check sockredir's exit and pins.
peer_stop() {
	local rc=0 i killed=""
	[ -n "$PEER_PID" ] || return 0
	kill -TERM -- "-$PEER_PID" 2>/dev/null || true
	for i in $(seq 100); do
		alive "$PEER_PID" || break
		sleep 0.05
	done
	if alive "$PEER_PID"; then
		kill -KILL -- "-$PEER_PID" 2>/dev/null || true
		killed=1
	fi
	wait "$PEER_PID" 2>/dev/null || rc=$?
	# Children that outlived their parent (socat's) are in the same session.
	kill -KILL -- "-$PEER_PID" 2>/dev/null || true
	if [[ $PEER_V == sr-* ]]; then
		sockredir_harvest "$rc" "$killed"
	fi
	PEER_PID=""
}

# Keep sockredir's warnings and errors, and its exit counters, in one file; note what is wrong.
sockredir_harvest() {
	local rc=$1 killed=$2 what="round $ROUND, $PHASE, $PEER_V"
	{
		grep -E '^<[0-4]>' "$PEER_LOG" | sed "s|^|$what: |"
		grep -E '^<[5-7]>(Connections|Bytes):' "$PEER_LOG" | sed "s|^|$what: |"
		[ -z "$killed" ] || echo "$what: did not exit within 5 s of SIGTERM; killed"
		[ "$rc" = 0 ] || echo "$what: exit status $rc after SIGTERM"
		[ ! -e "/sys/fs/bpf/sockredir/$PIN_NAME" ] || echo "$what: pins left in /sys/fs/bpf/sockredir/$PIN_NAME"
	} >>"$SRLOG"
}

json_field() { # KEY JSON: a string or number field, crudely; for messages only
	local v
	v=$(printf '%s' "$2" | grep -o "\"$1\":\(\"[^\"]*\"\|[-0-9.e+]*\)" | head -n 1 | cut -d: -f2-)
	v=${v#\"}
	printf '%s' "${v%\"}"
}

# record TEST SIZE CONNS JSON: one line of raw.jsonl.
record() {
	printf '{"round":%d,"variant":"%s","phase":"%s",%s\n' "$ROUND" "$V" "$PHASE" "${4#\{}" >>"$RAW"
}

record_failed() { # TEST SIZE CONNS REASON
	local reason=${4//\\/\\\\}
	reason=${reason//\"/\\\"}
	record "$1" "$2" "$3" "$(printf '{"test":"%s","size":%s,"conns":%s,"status":"failed","reason":"%s"}' \
		"$1" "$2" "$3" "$reason")"
	printf '  %-14s %-8s %6s x%-5s FAILED: %s\n' "$V" "$1" "$2" "$3" "$4"
}

# measure TEST SIZE CONNS TIME-LIMIT CLIENT-OPTIONS...
measure() {
	local test=$1 size=$2 conns=$3 limit=$4 out rc=0 shown
	shift 4
	out=$(timeout -k 5 "$limit" "$CLIENT" --connect "$ADDR" "${WATCH[@]}" --test "$test" \
		--size "$size" --conns "$conns" --stall "$STALL" "$@" 2>>"$LOGS/client.err") || rc=$?
	if [ "${out:0:1}" != "{" ]; then
		case $rc in
		124 | 137) record_failed "$test" "$size" "$conns" "the client was stopped after ${limit}s" ;;
		*) record_failed "$test" "$size" "$conns" "the client exited with status $rc and no result" ;;
		esac
		return 0
	fi
	record "$test" "$size" "$conns" "$out"
	case $test in
	up | down) shown="$(json_field mb_s "$out") MB/s" ;;
	connrate) shown="$(json_field rate "$out") conn/s" ;;
	*) shown="p50 $(json_field p50_us "$out") us, p99 $(json_field p99_us "$out") us" ;;
	esac
	if [ "$(json_field status "$out")" = ok ]; then
		printf '  %-14s %-8s %6s x%-5s %s\n' "$V" "$test" "$size" "$conns" "$shown"
	else
		printf '  %-14s %-8s %6s x%-5s FAILED: %s\n' "$V" "$test" "$size" "$conns" \
			"$(json_field reason "$out")"
	fi
}

hist_file() { # TEST SIZE CONNS
	echo "$RESULTS/raw/hist/r$ROUND-$V-$1-$2-c$3.csv"
}

# One variant's single-connection tests.
run_main() {
	local s
	V=$1
	PHASE=main
	if ! peer_start "$V"; then
		for s in $RR_SIZES; do record_failed rr "$s" 1 "$PEER_REASON"; done
		record_failed up "$BULK_BYTES" 1 "$PEER_REASON"
		record_failed down "$BULK_BYTES" 1 "$PEER_REASON"
		record_failed connrate 64 1 "$PEER_REASON"
		return 0
	fi
	for s in $RR_SIZES; do
		measure rr "$s" 1 "$(limit "$RR_SECONDS" 20)" --duration "$RR_SECONDS" \
			--hist "$(hist_file rr "$s" 1)"
	done
	measure up "$BULK_BYTES" 1 180
	measure down "$BULK_BYTES" 1 180
	measure connrate 64 1 "$(limit "$CONNRATE_SECONDS" 20)" --procs "$CONNRATE_PROCS" \
		--duration "$CONNRATE_SECONDS" --hist "$(hist_file connrate 64 1)"
	peer_stop
}

# One variant at one scale level: 64 B round trips over LEVEL connections, proxy memory held.
run_scale() {
	local level=$2
	V=$1
	PHASE=scale-$level
	if ! peer_start "$V"; then
		record_failed rr 64 "$level" "$PEER_REASON"
		return 0
	fi
	measure rr 64 "$level" "$(limit "$SCALE_SECONDS" $((100 + level / 50)))" \
		--procs "$SCALE_PROCS" --duration "$SCALE_SECONDS" --hist "$(hist_file rr 64 "$level")"
	peer_stop
}

limit() { # SECONDS EXTRA: a time limit for one client run, in whole seconds
	echo $(( ${1%.*} + 1 + 3 * ${STALL%.*} + $2 ))
}

write_meta() {
	local elapsed=$1
	python3 - "$RESULTS/meta.json" "$elapsed" <<-EOF
		import json, os, platform, subprocess, sys
		def run(*a):
		    try:
		        return subprocess.run(a, capture_output=True, text=True, timeout=10).stdout.strip() \
		            or subprocess.run(a, capture_output=True, text=True, timeout=10).stderr.strip()
		    except Exception as e:
		        return "unavailable: %s" % e
		model = ""
		for line in open("/proc/cpuinfo"):
		    if line.startswith("model name"):
		        model = line.split(":", 1)[1].strip()
		        break
		mem = [l for l in open("/proc/meminfo") if l.startswith("MemTotal")][0].split()[1]
		meta = {
		    "date": os.path.basename("$RESULTS"),
		    "command": "make bench" + (" QUICK=1" if "$QUICK" else ""),
		    "kernel": platform.release(),
		    "cpus": os.cpu_count(),
		    "cpu_model": model,
		    "mem_gib": round(int(mem) / 1048576, 1),
		    "git": run("git", "-C", "$TOP", "describe", "--always", "--dirty"),
		    "versions": {
		        "haproxy": run("haproxy", "-v").splitlines()[0],
		        "nginx": run("nginx", "-v"),
		        "socat": run("socat", "-V").splitlines()[1] if run("socat", "-V") else "",
		        "systemd": run("systemd-socket-activate", "--version").splitlines()[0],
		        "sockredir": run("$SOCKREDIR", "--version"),
		    },
		    "settings": {
		        "rounds": $ROUNDS, "rr_seconds": $RR_SECONDS, "rr_sizes": "$RR_SIZES".split(),
		        "bulk_bytes": $BULK_BYTES, "connrate_seconds": $CONNRATE_SECONDS,
		        "connrate_procs": $CONNRATE_PROCS, "scale_levels": "$SCALE_LEVELS".split(),
		        "scale_seconds": $SCALE_SECONDS, "scale_procs": $SCALE_PROCS,
		        "stall_seconds": $STALL, "variants": "$VARIANTS".split(),
		    },
		    "elapsed_seconds": int(sys.argv[2]),
		}
		json.dump(meta, open(sys.argv[1], "w"), indent=1)
	EOF
}

main() {
	local order r i level n
	BULK_BYTES=$(numfmt --from=iec "$BULK")
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	setup_netns
	T=$(mktemp -d /tmp/sockredir-bench.XXXXXX)
	BACKEND_SOCK=$T/backend.sock
	mkdir -p "$LOGS" "$RESULTS/raw/hist"
	: >"$RAW"
	: >"$SRLOG"
	say "results in $RESULTS"
	say "$ROUNDS round(s); RR ${RR_SECONDS}s per size ($RR_SIZES B); bulk $BULK; scale levels $SCALE_LEVELS"
	ROUND=0
	PHASE=setup
	start_backend

	read -r -a order <<<"$VARIANTS"
	n=${#order[@]}
	for ((r = 1; r <= ROUNDS; r++)); do
		ROUND=$r
		# Rotate the order each round, so that no variant always runs first or last.
		local this=()
		for ((i = 0; i < n; i++)); do this+=("${order[$(((i + r - 1) % n))]}"); done
		say "round $r of $ROUNDS: single-connection tests (${this[*]})"
		for v in "${this[@]}"; do run_main "$v"; done
		for level in $SCALE_LEVELS; do
			say "round $r of $ROUNDS: $level connections"
			for v in "${this[@]}"; do run_scale "$v" "$level"; done
		done
	done
	PHASE=done
	stop_backend
	grep -h 'errors' "$LOGS/backend.log" | sed 's/^/# /' || true
	write_meta "$SECONDS"
	say "writing the report"
	python3 "$BENCH/report.py" "$RESULTS"
	say "done: $RESULTS/results.md"
}

main "$@"
