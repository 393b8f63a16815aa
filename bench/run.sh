#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The benchmark: `make bench` (about 10 minutes) or `make bench QUICK=1` (under a minute).
#
# Nine variants, all in front of the same bench-backend on a Unix socket: direct (the limit),
# direct-tcp (the same backend on a TCP socket, no proxy: the floor for TCP clients), sockredir
# --mode bpf, --mode bpf --kernel-upload, --mode splice, systemd-socket-proxyd, socat, haproxy and
# nginx (bench/peers/). Everything runs in private network and PID namespaces.
#
# Each round runs every variant once, in an order rotated from round to round, so that noise
# falls evenly: request/response latency for 1 B, 64 B, 4 KiB and 64 KiB messages, bulk upload
# and download, and the connection rate; then, for each scale level, 64 B request/response over
# that many concurrent connections while the proxy's fds and memory are read. A proxy is started
# fresh for each variant in a round and for each scale level, so memory figures start from idle.
#
# Output: $BENCH_RESULTS, by default bench/results/<date>[-quick]/:
#   raw.jsonl          one line per measurement, as bench-client printed it, with round, variant
#   raw/hist/          latency histograms (ns,count) per round, variant and test, gzipped
#   meta.json          the machine, the versions and the settings
#   results.md         the tables (bench/report.py), summary.csv, and the plots (*.png)
#   sockredir-log.txt  every sockredir log line at warning or above, and its exit counters
#   logs/              every peer's log (not for committing)
#
# Settings (environment): QUICK=1, ROUNDS, RR_SECONDS, RR_SIZES, BULK, CONNRATE_SECONDS,
# SCALE_LEVELS, SCALE_SECONDS, STALL, SCALE_STALL, VARIANTS (names, space-separated), PHASES
# ("main scale"; for development), BENCH_RESULTS, KEEP_TMP, SOCKREDIR_BASE (another build, for
# the -base variants).
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
	: "${ROUNDS:=1}" "${RR_SECONDS:=0.3}" "${BULK:=256M}" "${CONNRATE_SECONDS:=0.3}"
	: "${SCALE_LEVELS:=100 1000}" "${SCALE_SECONDS:=0.3}"
else
	: "${ROUNDS:=5}" "${RR_SECONDS:=1}" "${BULK:=1G}" "${CONNRATE_SECONDS:=1}"
	: "${SCALE_LEVELS:=100 1000 10000}" "${SCALE_SECONDS:=1}"
fi
: "${RR_SIZES:=1 64 4096 65536}"
# Seconds without progress before a measurement is called failed. At a scale level, a proxy
# that stops accepting (out of fds, or its own limit) costs this much per round, so it is
# shorter there; the client opens 64 connections at a time per process, so no SYN waits that
# long.
: "${STALL:=5}" "${SCALE_STALL:=3}"
: "${VARIANTS:=${ALL_VARIANTS[*]}}"
: "${PHASES:=main scale}"
CONNRATE_PROCS=2
SCALE_PROCS=2
export ROUNDS RR_SECONDS RR_SIZES BULK CONNRATE_SECONDS SCALE_LEVELS SCALE_SECONDS STALL \
	SCALE_STALL VARIANTS CONNRATE_PROCS SCALE_PROCS

die() {
	echo "bench: $*" >&2
	exit 1
}

say() {
	printf '[%4ds] %s\n' "$SECONDS" "$*"
}

preflight() {
	local c b v
	[ "$(id -u)" = 0 ] || die "needs root: network namespaces, BPF and pins"
	for c in unshare ip ss setsid timeout pgrep systemd-socket-activate python3 gnuplot; do
		command -v "$c" >/dev/null 2>&1 || die "needs '$c' (run 'make deps' as root)"
	done
	for b in "$SOCKREDIR" "$CLIENT" "$BACKEND"; do
		[ -x "$b" ] || die "$b is missing: run 'make bench', which builds it"
	done
	# The Makefile doesn't know that both programs include bench/proto.h.
	for b in client backend; do
		if [ "$BENCH/$b.c" -nt "$OUT/bench-$b" ] ||
			[ "$BENCH/proto.h" -nt "$OUT/bench-$b" ]; then
			die "$OUT/bench-$b is older than its source: rm .output/bench-*; make bench"
		fi
	done
	for v in $VARIANTS; do
		[ -n "${VARIANT_TITLE[$v]:-}" ] ||
			die "unknown variant '$v' (known: ${ALL_VARIANTS[*]} sr-bpf-1w *-base)"
		case $v in
		*-base) [ -x "${SOCKREDIR_BASE:-}" ] ||
			die "variant $v runs \$SOCKREDIR_BASE, which is not an executable" ;;
		esac
	done
}

# A signal to the outer script: unshare ignores SIGTERM while it waits, so kill it, and
# --kill-child turns that into a SIGTERM for the inner script, whose trap cleans up. Wait for
# that; it takes a few seconds at most.
# shellcheck disable=SC2317 # run by the trap
forward_signal() {
	local inner i
	trap '' INT TERM
	inner=$(pgrep -P "$UNSHARE_PID" || true)
	kill -KILL "$UNSHARE_PID" 2>/dev/null || true
	for i in $(seq 300); do
		if [ -z "$inner" ] || [ ! -e "/proc/$inner" ]; then
			break
		fi
		sleep 0.1
	done
	echo "bench: interrupted" >&2
	exit 130
}

# Run this script again inside a network namespace, so that ports never collide, and a PID
# namespace, so that nothing it starts can outlive it: when the inner script (the namespace's
# PID 1) exits, the kernel kills whatever is left.
run_in_namespaces() {
	local rc=0
	preflight
	export SR_BENCH_NETNS=1 QUICK BENCH_ID=$$
	BENCH_RESULTS=${BENCH_RESULTS:-$BENCH/results/$(date +%Y-%m-%dT%H%M)${QUICK:+-quick}}
	export BENCH_RESULTS
	unshare --net --pid --fork --mount-proc --kill-child=SIGTERM -- "$BASH" "$0" "$@" &
	UNSHARE_PID=$!
	trap forward_signal INT TERM
	wait "$UNSHARE_PID" || rc=$?
	exit $rc
}

if [ -z "${SR_BENCH_NETNS:-}" ]; then
	run_in_namespaces "$@"
fi

RESULTS=$BENCH_RESULTS
LOGS=$RESULTS/logs
RAW=$RESULTS/raw.jsonl
SRLOG=$RESULTS/sockredir-log.txt
T=""
BACKEND_PID=""
PEER_PID=""
PEER_V=""
CLIENT_PID=""
PEER_N=0
declare -a PIN_NAMES=()

alive() { # PID: running, and not a zombie
	[ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

cleanup() {
	local rc=$? n
	set +e
	trap '' INT TERM # a second signal must not cut the cleanup short
	[ -z "$CLIENT_PID" ] || kill -TERM "$CLIENT_PID" 2>/dev/null
	peer_stop >/dev/null 2>&1
	if [ -n "$BACKEND_PID" ]; then
		kill -TERM -- "-$BACKEND_PID" 2>/dev/null
		wait "$BACKEND_PID" 2>/dev/null
	fi
	# A sockredir that had to be killed leaves its pins; only this run's are touched.
	for n in "${PIN_NAMES[@]}"; do
		[ ! -e "/sys/fs/bpf/sockredir/$n" ] || rm -rf "/sys/fs/bpf/sockredir/$n"
	done
	rmdir /sys/fs/bpf/sockredir 2>/dev/null
	[ -z "$T" ] || [ -n "${KEEP_TMP:-}" ] || rm -rf "$T"
	exit $rc
}

setup_netns() {
	ip link set lo up
	# Per namespace: room for the connection-rate test's TIME_WAIT sockets.
	sysctl -qw net.ipv4.ip_local_port_range="10000 65000" net.ipv4.tcp_tw_reuse=1
	sysctl -qw net.core.somaxconn=4096
}

start_backend() {
	local i
	rm -f "$T/backend.ready"
	setsid "$BACKEND" --listen "$BACKEND_SOCK" --procs 2 --ready-file "$T/backend.ready" \
		</dev/null 2>"$LOGS/backend.log" &
	BACKEND_PID=$!
	for i in $(seq 200); do
		[ ! -e "$T/backend.ready" ] || return 0
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
# Sets ADDR and WATCH (the --watch-pid option), or PEER_REASON on failure.
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
	PIN_NAME=bench$BENCH_ID-$PEER_N
	[[ $v != sr-* ]] || PIN_NAMES+=("$PIN_NAME")
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
	# direct-tcp is a backend, not a proxy: its work is the backend's, as for direct.
	[ "$v" != direct-tcp ] || WATCH=()
	# The probe also makes a socket-activated proxy exec. Bounded: 10 tries of about 1 s.
	for i in $(seq 10); do
		if out=$("$CLIENT" --connect "$ADDR" --test probe --stall 1 2>&1); then
			return 0
		fi
		alive "$PEER_PID" || break
	done
	PEER_REASON="did not start: $(json_field reason "$out"); its log: "
	PEER_REASON+=$(grep -v '^#' "$PEER_LOG" | tail -n 2 | tr '\n' ' ')
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
		grep -E '^<[0-4]>' "$PEER_LOG" | sed "s|^|$what: |" || true
		grep -E '^<[5-7]>(Connections|Bytes):' "$PEER_LOG" | sed "s|^|$what: |" || true
		[ -z "$killed" ] || echo "$what: did not exit within 5 s of SIGTERM; killed"
		[ "$rc" = 0 ] || echo "$what: exit status $rc after SIGTERM"
		[ ! -e "/sys/fs/bpf/sockredir/$PIN_NAME" ] ||
			echo "$what: pins left in /sys/fs/bpf/sockredir/$PIN_NAME"
	} >>"$SRLOG"
}

# What the proxy itself said about a failure: its last warning, or its own connection limit.
peer_diagnose() {
	local line="" pat='\[(warn|error|crit|alert|emerg)\]'
	case $PEER_V in
	sr-*)
		line=$(grep -E '^<[0-4]>' "$PEER_LOG" | grep -v -- '--kernel-upload: client' |
			tail -n 1)
		;;
	sd-proxyd) line=$(grep -E 'Failed|rror' "$PEER_LOG" | tail -n 1) ;;
	socat) line=$(grep -E ' [EW] ' "$PEER_LOG" | tail -n 1) ;;
	nginx) line=$(grep -E "$pat" "$DIR/nginx-error.log" 2>/dev/null | tail -n 1) ;;
	haproxy)
		line=$(grep -E 'WARNING|ALERT' "$PEER_LOG" | tail -n 1)
		[ -n "$line" ] ||
			line="haproxy's maxconn is $(haproxy_info Maxconn) (it derives it from the fd limit)"
		;;
	esac
	printf '%s' "${line:-nothing logged}" | cut -c1-300
}

# haproxy_info FIELD: from haproxy's stats socket ("show info").
haproxy_info() {
	echo "show info" | timeout 5 socat - "UNIX-CONNECT:$DIR/haproxy.stat" 2>/dev/null |
		sed -n "s/^$1: //p"
}

json_escape() {
	local s=${1//\\/\\\\}
	s=${s//\"/\\\"}
	printf '%s' "${s//$'\t'/ }"
}

json_field() { # KEY JSON: a string or number field, crudely; for messages only
	local v
	v=$(printf '%s' "$2" | grep -o "\"$1\":\(\"[^\"]*\"\|[-0-9.e+]*\)" | head -n 1 |
		cut -d: -f2-)
	v=${v#\"}
	printf '%s' "${v%\"}"
}

# record JSON: one line of raw.jsonl, with the round, variant and phase put in front.
record() {
	printf '{"round":%d,"variant":"%s","phase":"%s",%s\n' "$ROUND" "$V" "$PHASE" "${1#\{}" \
		>>"$RAW"
}

record_failed() { # TEST SIZE CONNS REASON
	record "$(printf '{"test":"%s","size":%s,"conns":%s,"status":"failed","reason":"%s"}' \
		"$1" "$2" "$3" "$(json_escape "$4")")"
	printf '  %-14s %-8s %6s x%-5s FAILED: %s\n' "$V" "$1" "$2" "$3" "$4"
}

# measure TEST SIZE CONNS TIME-LIMIT CLIENT-OPTIONS...
measure() {
	local test=$1 size=$2 conns=$3 limit=$4 out rc=0 shown start=$SECONDS
	shift 4
	# In the background: bash runs a trap only once a foreground command has ended, but at
	# once during wait.
	timeout -k 5 "$limit" "$CLIENT" --connect "$ADDR" "${WATCH[@]}" --test "$test" \
		--size "$size" --conns "$conns" --stall "$STALL" "$@" >"$T/client.out" \
		2>>"$LOGS/client.err" &
	CLIENT_PID=$!
	wait "$CLIENT_PID" || rc=$?
	CLIENT_PID=""
	out=$(cat "$T/client.out")
	if [ "${out:0:1}" != "{" ]; then
		if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
			record_failed "$test" "$size" "$conns" "the client was stopped after ${limit}s"
		else
			record_failed "$test" "$size" "$conns" "the client exited with status $rc"
		fi
		return 0
	fi
	if [ "$(json_field status "$out")" != ok ] && [ -n "$PEER_PID" ]; then
		out="${out%\}},\"proxy_log\":\"$(json_escape "$(peer_diagnose)")\"}"
	fi
	record "$out"
	case $test in
	up | down) shown="$(json_field mb_s "$out") MB/s" ;;
	connrate) shown="$(json_field rate "$out") conn/s" ;;
	*) shown="p50 $(json_field p50_us "$out") us, p99 $(json_field p99_us "$out") us" ;;
	esac
	if [ "$(json_field status "$out")" != ok ]; then
		shown="FAILED: $(json_field reason "$out") (proxy: $(json_field proxy_log "$out"))"
	fi
	printf '  %-14s %-8s %6s x%-5s %3ds  %s\n' "$V" "$test" "$size" "$conns" \
		$((SECONDS - start)) "$shown"
}

hist_file() { # TEST SIZE CONNS
	echo "$RESULTS/raw/hist/r$ROUND-$V-$1-$2-c$3.csv"
}

limit() { # SECONDS EXTRA: a time limit for one client run, in whole seconds
	echo $((${1%.*} + 1 + 3 * ${STALL%.*} + $2))
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
		--procs "$SCALE_PROCS" --duration "$SCALE_SECONDS" --stall "$SCALE_STALL" \
		--hist "$(hist_file rr 64 "$level")"
	peer_stop
}

main() {
	local order this r i v level n
	BULK_BYTES=$(numfmt --from=iec "$BULK")
	export BULK_BYTES
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	setup_netns
	T=$(mktemp -d /tmp/sockredir-bench.XXXXXX)
	BACKEND_SOCK=$T/backend.sock
	mkdir -p "$LOGS" "$RESULTS/raw/hist"
	: >"$RAW"
	: >"$SRLOG"
	say "results in $RESULTS"
	say "$ROUNDS round(s); RR ${RR_SECONDS}s per size ($RR_SIZES B); bulk $BULK;" \
		"scale levels $SCALE_LEVELS"
	ROUND=0
	PHASE=setup
	start_backend

	read -r -a order <<<"$VARIANTS"
	n=${#order[@]}
	for ((r = 1; r <= ROUNDS; r++)); do
		ROUND=$r
		# Rotate the order each round, so that no variant always runs first or last.
		this=()
		for ((i = 0; i < n; i++)); do this+=("${order[$(((i + r - 1) % n))]}"); done
		if [[ " $PHASES " == *" main "* ]]; then
			say "round $r of $ROUNDS: single-connection tests (${this[*]})"
			for v in "${this[@]}"; do run_main "$v"; done
		fi
		[[ " $PHASES " == *" scale "* ]] || continue
		for level in $SCALE_LEVELS; do
			say "round $r of $ROUNDS: $level connections"
			for v in "${this[@]}"; do run_scale "$v" "$level"; done
		done
	done
	PHASE=finished
	stop_backend
	grep -h 'errors' "$LOGS/backend.log" | sed 's/^/# /' || true
	say "writing the report"
	python3 "$BENCH/report.py" --meta "$RESULTS" "$SECONDS" "$([ -n "$QUICK" ] && echo 1)"
	python3 "$BENCH/report.py" "$RESULTS"
	# The histograms are what a CDF can be redrawn from; compressed they are a quarter the size.
	gzip -9f "$RESULTS"/raw/hist/*.csv 2>/dev/null || true
	say "done: $RESULTS/results.md"
}

main "$@"
