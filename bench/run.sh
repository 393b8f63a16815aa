#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The benchmark: `make bench` (15 minutes here, 8 of them the http phase) or
# `make bench QUICK=1` (about two minutes, half of it the http phase).
#
# Ten variants, all in front of the same bench-backend on a Unix socket: direct (the limit),
# direct-tcp (the same backend on a TCP socket, no proxy: the floor for TCP clients), sockredir
# with its default mode (auto), --mode bpf, --mode bpf --kernel-upload, --mode splice,
# systemd-socket-proxyd, socat, haproxy and nginx (bench/peers/). Everything runs in private
# network and PID namespaces.
#
# Each round runs every variant once, in an order rotated from round to round, so that noise
# falls evenly: request/response latency for 1 B, 64 B, 4 KiB and 64 KiB messages, bulk upload
# and download, and the connection rate; then, for each scale level, 64 B request/response over
# that many concurrent connections while the proxy's fds and memory are read. A proxy is started
# fresh for each variant in a round and for each scale level, so memory figures start from idle.
#
# The http phase puts real HTTP in front of the proxies: wrk, through each proxy, against nginx
# and caddy serving files on a Unix socket (bench/peers/http-*), in three shapes: chatty
# (keep-alive, a 3-byte file), bulk (a 1 MiB file) and a new connection per request (the 3-byte
# file with "Connection: close"). The baseline is the same server on TCP with no proxy (the
# direct-tcp variant's row; direct is left out, since wrk speaks TCP only). Its variants are
# HTTP_VARIANTS: sockredir (auto, bpf, splice), haproxy and nginx, each with one process (or
# thread) per CPU and again with one in all (the -1w, -1t and -1p variants), for the report's
# targets table, which sets each sockredir against the best peer with as many. Every shape runs
# at 1, 50 and 500 connections and at the count it is judged at (HTTP_JUDGED); the one-process
# variants run against nginx only, at the judged counts, and the other counts run 1 s each in the
# first round only, which keeps the whole bench near 15 minutes. Before each proxy is measured,
# curl fetches both files through it and cmp compares them with the originals; a wrong byte, a
# socket error or a non-2xx response in any wrk run fails the whole run (after the report is
# written). Each wrk run is wrapped in `perf stat -a`, for the machine's CPU time and context
# switches per request.
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
# SCALE_LEVELS, SCALE_SECONDS, STALL, SCALE_STALL, VARIANTS (names, space-separated; the main
# and scale phases'), PHASES ("main scale http"; PHASES=http for that phase alone), HTTP_VARIANTS
# (the http phase's: VARIANTS if that is set, else "direct-tcp sr-auto sr-auto-1w sr-bpf
# sr-bpf-1w sr-splice sr-splice-1w haproxy haproxy-1t nginx nginx-1p", or with QUICK=1
# "direct-tcp sr-auto sr-bpf sr-splice haproxy nginx"), HTTP_SECONDS (per wrk run at the
# count a shape is judged at, whole seconds), HTTP_SCAN_SECONDS (per wrk run at the other counts;
# 1, or HTTP_SECONDS with QUICK=1), HTTP_SCAN_ROUNDS (the rounds those other counts run in, from
# the first; 1, or ROUNDS with QUICK=1), HTTP_CONNS (wrk's connections per shape,
# "chatty=1,50,500 bulk=1,10,50,500 close=1,20,50,500"), HTTP_SERVERS ("nginx caddy"),
# BENCH_RESULTS, KEEP_TMP, SOCKREDIR_BASE (another build, for the -base variants).
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
	: "${HTTP_SECONDS:=1}" "${HTTP_CONNS:=chatty=50 bulk=10 close=20}"
	HTTP_DEFAULT="direct-tcp sr-auto sr-bpf sr-splice haproxy nginx"
else
	: "${ROUNDS:=3}" "${RR_SECONDS:=1}" "${BULK:=1G}" "${CONNRATE_SECONDS:=1}"
	: "${SCALE_LEVELS:=100 1000 10000}" "${SCALE_SECONDS:=1}"
	: "${HTTP_SECONDS:=2}" "${HTTP_CONNS:=chatty=1,50,500 bulk=1,10,50,500 close=1,20,50,500}"
	# The counts a shape is not judged at are a scan of how each proxy scales: 1 s each, in
	# the first round only, keeps the whole bench near 15 minutes (three rounds of them took 20);
	# the targets' counts keep HTTP_SECONDS and every round.
	: "${HTTP_SCAN_SECONDS:=1}" "${HTTP_SCAN_ROUNDS:=1}"
	HTTP_DEFAULT="direct-tcp sr-auto sr-auto-1w sr-bpf sr-bpf-1w sr-splice sr-splice-1w haproxy"
	HTTP_DEFAULT+=" haproxy-1t nginx nginx-1p"
fi
: "${RR_SIZES:=64 4096 65536}"
# Seconds without progress before a measurement is called failed. At a scale level, a proxy
# that stops accepting (out of fds, or its own limit) costs this much per round, so it is
# shorter there; the client opens 64 connections at a time per process, so no SYN waits that
# long.
: "${STALL:=5}" "${SCALE_STALL:=3}"
# Variants named for the whole run are the http phase's too, unless it has its own.
: "${HTTP_VARIANTS:=${VARIANTS:-$HTTP_DEFAULT}}"
: "${HTTP_SCAN_SECONDS:=$HTTP_SECONDS}" "${HTTP_SCAN_ROUNDS:=$ROUNDS}"
: "${VARIANTS:=${ALL_VARIANTS[*]}}"
: "${PHASES:=main scale http}"
: "${HTTP_SERVERS:=nginx caddy}"
CONNRATE_PROCS=2
SCALE_PROCS=2
export ROUNDS RR_SECONDS RR_SIZES BULK CONNRATE_SECONDS SCALE_LEVELS SCALE_SECONDS STALL \
	SCALE_STALL VARIANTS CONNRATE_PROCS SCALE_PROCS PHASES HTTP_VARIANTS HTTP_SECONDS HTTP_CONNS \
	HTTP_SCAN_SECONDS HTTP_SCAN_ROUNDS HTTP_SERVERS

# The http phase's shapes, in order: the file each one fetches, and the server's TCP port for the
# no-proxy baseline (the proxies' ports are in bench/peers/variants.sh).
HTTP_SHAPES=(chatty bulk close)
declare -A HTTP_PATH=([chatty]=/s [bulk]=/b [close]=/s)
declare -A HTTP_PORT=([nginx]=9201 [caddy]=9202)
declare -A HTTP_LEVELS=()
# The connection count each shape is judged at (the report's targets table).
declare -A HTTP_JUDGED=([chatty]=50 [bulk]=10 [close]=20)

one_process() { # VARIANT: is it of the one-process set?
	[[ $1 == *-1w || $1 == *-1t || $1 == *-1p ]]
}

has_phase() { # PHASE: is it in $PHASES?
	[[ " $PHASES " == *" $1 "* ]]
}

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
	for v in $VARIANTS $(! has_phase http || echo "$HTTP_VARIANTS"); do
		[ -n "${VARIANT_TITLE[$v]:-}" ] ||
			die "unknown variant '$v' (known: ${ALL_VARIANTS[*]} *-1w haproxy-1t nginx-1p *-base)"
		case $v in
		*-base) [ -x "${SOCKREDIR_BASE:-}" ] ||
			die "variant $v runs \$SOCKREDIR_BASE, which is not an executable" ;;
		esac
	done
	for v in $PHASES; do
		case $v in
		main | scale | http) ;;
		*) die "unknown phase '$v' (known: main scale http)" ;;
		esac
	done
	! has_phase http || http_settings
}

# Check the http phase's settings and tools; fill HTTP_LEVELS (shape -> connection counts).
http_settings() {
	local c item shape n
	for c in wrk curl cmp perf $HTTP_SERVERS; do
		command -v "$c" >/dev/null 2>&1 || die "the http phase needs '$c' (make deps-bench)"
	done
	for c in $HTTP_SERVERS; do
		[ -n "${HTTP_PORT[$c]:-}" ] || die "unknown HTTP server '$c' (known: nginx caddy)"
	done
	for n in HTTP_SECONDS HTTP_SCAN_SECONDS; do
		[[ ${!n} =~ ^[1-9][0-9]*$ ]] ||
			die "$n must be a whole number of seconds (wrk's -d), not '${!n}'"
	done
	[[ $HTTP_SCAN_ROUNDS =~ ^[1-9][0-9]*$ ]] ||
		die "HTTP_SCAN_ROUNDS must be a number of rounds, at least 1, not '$HTTP_SCAN_ROUNDS'"
	for item in $HTTP_CONNS; do
		shape=${item%%=*}
		if [[ " ${HTTP_SHAPES[*]} " != *" $shape "* ]] || [ "$item" = "$shape" ]; then
			die "HTTP_CONNS: '$item' is not SHAPE=N[,N...] with SHAPE one of ${HTTP_SHAPES[*]}"
		fi
		HTTP_LEVELS[$shape]=${item#*=}
		HTTP_LEVELS[$shape]=${HTTP_LEVELS[$shape]//,/ }
		for n in ${HTTP_LEVELS[$shape]}; do
			if ! [[ $n =~ ^[1-9][0-9]{0,3}$|^10000$ ]]; then
				die "HTTP_CONNS: '$n' in '$item' is not a count from 1 to 10000"
			fi
		done
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
HTTP_PID=""
HTTP_FAILURES=0
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
	http_server_stop
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

# probe_client: one 64 B round trip to $ADDR, retried for a second; else print why not.
probe_client() {
	local out
	out=$("$CLIENT" --connect "$ADDR" --test probe --stall 1 2>&1) && return 0
	json_field reason "$out"
	return 1
}

# peer_start VARIANT [UPSTREAM PROBE]: start a fresh instance, forwarding to the Unix socket
# UPSTREAM (bench-backend's by default), and wait until PROBE (probe_client by default) gets
# through it. Sets ADDR and WATCH (the --watch-pid option), or PEER_REASON on failure.
peer_start() {
	local v=$1 probe=${3:-probe_client} out="" i
	UPSTREAM=${2:-$BACKEND_SOCK}
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
	# SIGPIPE ignored, as systemd starts every service (IgnoreSIGPIPE=yes): systemd-socket-proxyd
	# doesn't ignore it itself, and died silently in one run when wrk closed connections with a
	# reply still being spliced to them. The exec keeps the pid.
	(
		trap '' PIPE
		exec setsid "${CMD[@]}" </dev/null >>"$PEER_LOG" 2>&1
	) &
	PEER_PID=$!
	ADDR=127.0.0.1:$PORT
	WATCH=(--watch-pid "$PEER_PID")
	# direct-tcp is a backend, not a proxy: its work is the backend's, as for direct.
	[ "$v" != direct-tcp ] || WATCH=()
	# The probe also makes a socket-activated proxy exec. Bounded: 10 tries of about 1 s.
	for i in $(seq 10); do
		if out=$("$probe"); then
			return 0
		fi
		alive "$PEER_PID" || break
	done
	PEER_REASON="did not start: $out; its log: "
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

# scale_once VARIANT LEVEL: is this level measured in the first round only? socat forks a process
# per connection: at 10,000 connections one round took 53 s (2.3 s per round trip, 52x direct),
# as long as every other variant's together, and the rounds agreed to within the noise.
scale_once() {
	[ "$1" = socat ] && (($2 >= 5000))
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

# ---- the http phase ----

# probe_http: fetch /s through $ADDR, retried for about a second; else print why not.
probe_http() {
	local i out=""
	for i in $(seq 5); do
		out=$(curl -sS -f --max-time 1 -o /dev/null "http://$ADDR/s" 2>&1) && return 0
		sleep 0.2
	done
	printf '%s' "${out:-curl failed}"
	return 1
}

# stop_session PID: SIGTERM to its session, SIGKILL after 5 s.
stop_session() {
	local i
	kill -TERM -- "-$1" 2>/dev/null || true
	for i in $(seq 100); do
		alive "$1" || break
		sleep 0.05
	done
	kill -KILL -- "-$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# http_server_start SERVER: nginx or caddy, on the Unix socket $HTTP_SOCK and on TCP, serving
# $T/www; wait until /s comes back on both. Sets HTTP_PID, or HTTP_REASON on failure.
http_server_start() {
	local srv=$1 dir=$T/http-$1 i
	local -a cmd
	HTTP_SOCK=$dir/http.sock
	HTTP_REASON=""
	rm -rf "$dir"
	mkdir -p "$dir"
	case $srv in
	nginx)
		sed -e "s|@SOCK@|$HTTP_SOCK|g" -e "s|@PORT@|${HTTP_PORT[$srv]}|g" \
			-e "s|@ROOT@|$T/www|g" -e "s|@DIR@|$dir|g" \
			"$BENCH/peers/http-nginx.conf" >"$dir/nginx.conf"
		cmd=(nginx -p "$dir/" -c "$dir/nginx.conf" -e "$dir/nginx-error.log")
		;;
	caddy)
		sed -e "s|@SOCK@|$HTTP_SOCK|g" -e "s|@PORT@|${HTTP_PORT[$srv]}|g" \
			-e "s|@ROOT@|$T/www|g" -e "s|@DIR@|$dir|g" \
			"$BENCH/peers/http-caddy.Caddyfile" >"$dir/Caddyfile"
		# caddy keeps state under $HOME and the XDG directories: this instance's own.
		cmd=(env HOME="$dir" XDG_DATA_HOME="$dir/data" XDG_CONFIG_HOME="$dir/config"
			caddy run --config "$dir/Caddyfile" --adapter caddyfile)
		;;
	esac
	HTTP_LOG=$LOGS/r$ROUND-http-$srv-server.log
	echo "# ${cmd[*]}" >"$HTTP_LOG"
	setsid "${cmd[@]}" </dev/null >>"$HTTP_LOG" 2>&1 &
	HTTP_PID=$!
	# Bounded: 50 tries, each refused at once or given up after 1 s.
	for i in $(seq 50); do
		if curl -sf --max-time 1 -o /dev/null --unix-socket "$HTTP_SOCK" http://localhost/s &&
			curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:${HTTP_PORT[$srv]}/s"; then
			return 0
		fi
		alive "$HTTP_PID" || break
		sleep 0.1
	done
	HTTP_REASON="$srv did not start; its log: $(grep -v '^#' "$HTTP_LOG" | tail -n 2 |
		tr '\n' ' ')"
	http_server_stop
	return 1
}

http_server_stop() {
	[ -n "$HTTP_PID" ] || return 0
	stop_session "$HTTP_PID"
	HTTP_PID=""
}

# http_failed SERVER SHAPE CONNS REASON: a failed measurement, which fails the run at its end.
http_failed() {
	local size
	size=$(stat -c %s "$T/www${HTTP_PATH[$2]}")
	record "$(printf '{"test":"http-%s","size":%s,"conns":%s,"server":"%s","status":"failed","reason":"%s"}' \
		"$2" "$size" "$3" "$1" "$(json_escape "$4")")"
	printf '  %-14s %-6s %-7s x%-4s FAILED: %s\n' "$V" "$1" "$2" "$3" "$4"
	HTTP_FAILURES=$((HTTP_FAILURES + 1))
}

http_failed_all() { # SERVER REASON: every shape and count of this variant failed
	local shape c
	for shape in "${HTTP_SHAPES[@]}"; do
		for c in ${HTTP_LEVELS[$shape]:-}; do http_failed "$1" "$shape" "$c" "$2"; done
	done
}

# http_verify: fetch /s and /b through $ADDR once and compare them with the files byte for
# byte. Prints why not, if not.
http_verify() {
	local f out
	for f in s b; do
		rm -f "$T/got-$f"
		if ! out=$(curl -sS -f --max-time 10 -o "$T/got-$f" "http://$ADDR/$f" 2>&1); then
			printf 'curl of /%s through it failed: %s' "$f" "$out"
			return 1
		fi
		if ! out=$(cmp "$T/got-$f" "$T/www/$f" 2>&1); then
			printf '/%s through it differs from the file: %s' "$f" "$out"
			return 1
		fi
	done
}

# http_parse WRK-OUTPUT PERF-CSV BODY-BYTES: on the first line why the run doesn't count (empty
# when it does), on the second the JSON fields of the run, without braces.
http_parse() {
	awk -v body="$3" '
	function us(t, n) { # wrk prints durations as 12.3us, 4.56ms, 1.2s, 2.00m
		n = t + 0
		if (t ~ /us$/) return n
		if (t ~ /ms$/) return n * 1e3
		if (t ~ /[0-9]s$/) return n * 1e6
		if (t ~ /m$/) return n * 6e7
		return -1
	}
	function num(t) { gsub(/,/, "", t); return t + 0 }
	FILENAME == ARGV[1] && / requests in / { req = $1; secs = us(substr($4, 1, length($4) - 1)) / 1e6 }
	FILENAME == ARGV[1] && /^ +50% / { p50 = us($2) }
	FILENAME == ARGV[1] && /^ +90% / { p90 = us($2) }
	FILENAME == ARGV[1] && /^ +99% / { p99 = us($2) }
	FILENAME == ARGV[1] && /^Requests\/sec:/ { rps = $2 }
	FILENAME == ARGV[1] && /Socket errors:/ {
		ec = num($4); er = num($6); ew = num($8); et = num($10); sock = $0
	}
	FILENAME == ARGV[1] && /Non-2xx or 3xx responses:/ { bad = $NF + 0 }
	FILENAME == ARGV[2] && /task-clock/ { split($0, f, ","); if (f[1] ~ /^[0-9.]+$/) cpu = f[1] }
	FILENAME == ARGV[2] && /context-switches/ {
		split($0, f, ","); if (f[1] ~ /^[0-9]+$/) cs = f[1]
	}
	END {
		why = ""
		if (req == "" || rps == "" || p99 == "") why = "no result from wrk"
		else if (req == 0) why = "no request completed"
		else if (sock != "") why = "wrk: " substr(sock, 3)
		else if (bad) why = "wrk: " bad " responses that were not 2xx or 3xx"
		else if (cpu == "" || cs == "") why = "no figures from perf stat"
		if (req == "") req = 0
		print why
		printf "\"requests\":%d,\"seconds\":%.3f,\"rps\":%s,", req, secs, rps == "" ? 0 : rps
		printf "\"p50_us\":%s,\"p90_us\":%s,\"p99_us\":%s,", p50 == "" ? "null" : p50,
			p90 == "" ? "null" : p90, p99 == "" ? "null" : p99
		printf "\"err_connect\":%d,\"err_read\":%d,\"err_write\":%d,\"err_timeout\":%d,", ec,
			er, ew, et
		printf "\"non2xx\":%d,\"cpu_ms\":%s,\"ctxt\":%s", bad, cpu == "" ? "null" : cpu,
			cs == "" ? "null" : cs
		if (req > 0 && cpu != "" && cs != "")
			printf ",\"cpu_us_per_req\":%.4f,\"ctxt_per_req\":%.4f", cpu * 1e3 / req,
				cs / req
		if (body >= 1048576 && rps != "")
			printf ",\"gib_s\":%.4f", rps * body / 1073741824
		printf "\n"
	}' "$1" "$2"
}

# http_measure SERVER SHAPE CONNS: one wrk run through $ADDR inside `perf stat -a`.
http_measure() {
	local srv=$1 shape=$2 conns=$3 size threads rc=0 parsed fields why shown start=$SECONDS
	local secs=$HTTP_SCAN_SECONDS
	local -a hdr=()
	size=$(stat -c %s "$T/www${HTTP_PATH[$shape]}")
	threads=$((conns < NCPU ? conns : NCPU))
	[ "$shape" != close ] || hdr=(-H "Connection: close")
	[ "$conns" != "${HTTP_JUDGED[$shape]}" ] || secs=$HTTP_SECONDS
	rm -f "$T/wrk.out" "$T/perf.out"
	# In the background, as measure() does, so that a signal's trap runs at once.
	timeout -k 5 $((secs + 30)) perf stat -a -e task-clock,context-switches -x, \
		-o "$T/perf.out" -- wrk -t "$threads" -c "$conns" -d "${secs}s" --timeout 5s \
		--latency "${hdr[@]}" "http://$ADDR${HTTP_PATH[$shape]}" >"$T/wrk.out" 2>&1 &
	CLIENT_PID=$!
	wait "$CLIENT_PID" || rc=$?
	CLIENT_PID=""
	{
		echo "# round $ROUND, $V, $srv, $shape x$conns"
		cat "$T/wrk.out"
	} >>"$LOGS/wrk.log"
	touch "$T/perf.out"
	parsed=$(http_parse "$T/wrk.out" "$T/perf.out" "$size")
	why=${parsed%%$'\n'*}
	fields=${parsed#*$'\n'}
	if [ "$rc" != 0 ]; then
		why="wrk exited with status $rc: $(grep -v '^#' "$T/wrk.out" | tail -n 1)"
	fi
	if [ -n "$why" ]; then
		[ -z "$PEER_PID" ] || why+=". The proxy's log: $(peer_diagnose)"
		record "$(printf '{"test":"http-%s","size":%s,"conns":%s,"server":"%s","status":"failed","reason":"%s",%s}' \
			"$shape" "$size" "$conns" "$srv" "$(json_escape "$why")" "$fields")"
		printf '  %-14s %-6s %-7s x%-4s FAILED: %s\n' "$V" "$srv" "$shape" "$conns" "$why"
		HTTP_FAILURES=$((HTTP_FAILURES + 1))
		return 0
	fi
	record "$(printf '{"test":"http-%s","size":%s,"conns":%s,"server":"%s","status":"ok","verified":true,%s}' \
		"$shape" "$size" "$conns" "$srv" "$fields")"
	if [ "$shape" = bulk ]; then
		shown="$(json_field gib_s "{$fields}") GiB/s"
	else
		shown="$(json_field rps "{$fields}") req/s"
	fi
	printf '  %-14s %-6s %-7s x%-4s %3ds  %s, p50 %s us, p99 %s us, %s us CPU/req\n' "$V" \
		"$srv" "$shape" "$conns" $((SECONDS - start)) "$shown" \
		"$(json_field p50_us "{$fields}")" "$(json_field p99_us "{$fields}")" \
		"$(json_field cpu_us_per_req "{$fields}")"
}

# One variant in front of one HTTP server: every shape at every connection count. direct-tcp
# is the server's own TCP listener, with no proxy.
run_http() {
	local srv=$2 shape c why
	V=$1
	PHASE=http-$srv
	if [ "$V" = direct-tcp ]; then
		ADDR=127.0.0.1:${HTTP_PORT[$srv]}
	elif ! peer_start "$V" "$HTTP_SOCK" probe_http; then
		http_failed_all "$srv" "$PEER_REASON"
		return 0
	fi
	if ! why=$(http_verify); then
		http_failed_all "$srv" "$why"
		peer_stop
		return 0
	fi
	for shape in "${HTTP_SHAPES[@]}"; do
		for c in ${HTTP_LEVELS[$shape]:-}; do
			if [ "$c" != "${HTTP_JUDGED[$shape]}" ]; then
				! one_process "$V" || continue
				((ROUND <= HTTP_SCAN_ROUNDS)) || continue
			fi
			http_measure "$srv" "$shape" "$c"
		done
	done
	peer_stop
}

# One round of the http phase against one server, started fresh for it: VARIANTS in this
# round's order. direct has no TCP listener for wrk, so it has no part here.
run_http_server() {
	local srv=$1 v
	shift
	PHASE=http-$srv
	if ! http_server_start "$srv"; then
		for v in "$@"; do
			V=$v
			[ "$v" = direct ] || http_failed_all "$srv" "$HTTP_REASON"
		done
		return 0
	fi
	for v in "$@"; do
		[ "$v" = direct ] || { one_process "$v" && [ "$srv" != nginx ]; } || run_http "$v" "$srv"
	done
	http_server_stop
}

main() {
	local order this horder hthis r i v level n srv
	BULK_BYTES=$(numfmt --from=iec "$BULK")
	NCPU=$(nproc)
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
	say "phases $PHASES; $ROUNDS round(s); RR ${RR_SECONDS}s per size ($RR_SIZES B); bulk $BULK;" \
		"scale levels $SCALE_LEVELS; http ${HTTP_SECONDS}s per run," \
		"${HTTP_SCAN_SECONDS}s off the judged counts, in the first $HTTP_SCAN_ROUNDS round(s)" \
		"($HTTP_CONNS; $HTTP_SERVERS)"
	ROUND=0
	PHASE=setup
	if has_phase main || has_phase scale; then
		start_backend
	fi
	if has_phase http; then
		http_settings
		# The files the HTTP servers serve: 3 bytes, and 1 MiB that no pattern can fake.
		mkdir -p "$T/www"
		printf 'ok\n' >"$T/www/s"
		head -c 1048576 /dev/urandom >"$T/www/b"
	fi

	read -r -a order <<<"$VARIANTS"
	read -r -a horder <<<"$HTTP_VARIANTS"
	for ((r = 1; r <= ROUNDS; r++)); do
		ROUND=$r
		# Rotate the order each round, so that no variant always runs first or last.
		this=()
		n=${#order[@]}
		for ((i = 0; i < n; i++)); do this+=("${order[$(((i + r - 1) % n))]}"); done
		hthis=()
		n=${#horder[@]}
		for ((i = 0; i < n; i++)); do hthis+=("${horder[$(((i + r - 1) % n))]}"); done
		if has_phase main; then
			say "round $r of $ROUNDS: single-connection tests (${this[*]})"
			for v in "${this[@]}"; do run_main "$v"; done
		fi
		if has_phase scale; then
			for level in $SCALE_LEVELS; do
				say "round $r of $ROUNDS: $level connections"
				for v in "${this[@]}"; do
					scale_once "$v" "$level" && ((r > 1)) && continue
					run_scale "$v" "$level"
				done
			done
		fi
		if has_phase http; then
			for srv in $HTTP_SERVERS; do
				say "round $r of $ROUNDS: http through each proxy to $srv"
				run_http_server "$srv" "${hthis[@]}"
			done
		fi
	done
	PHASE=finished
	if [ -n "$BACKEND_PID" ]; then
		stop_backend
		grep -h 'errors' "$LOGS/backend.log" | sed 's/^/# /' || true
	fi
	say "writing the report"
	python3 "$BENCH/report.py" --meta "$RESULTS" "$SECONDS" "$([ -n "$QUICK" ] && echo 1)"
	python3 "$BENCH/report.py" "$RESULTS"
	# The histograms are what a CDF can be redrawn from; compressed they are a quarter the size.
	gzip -9f "$RESULTS"/raw/hist/*.csv 2>/dev/null || true
	say "done: $RESULTS/results.md"
	[ "$HTTP_FAILURES" = 0 ] ||
		die "$HTTP_FAILURES http measurement(s) failed; each one fails the run (see results.md)"
}

main "$@"
