#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Shared helpers for sockredir's end-to-end tests; source it from tests/t-*.sh.
#
# Each test runs in its own network namespace (so ports never collide), runs the real binary
# under systemd-socket-activate in front of a real Unix-socket backend (.output/srpeer), and
# checks every byte. A test that can't run exits 77 and says why.

set -euo pipefail

# Debian's tools, as `make deps` installs them, come first. A user's shims must not stand in:
# pyenv's python3 shim takes 0.3 s to start (0.6 s under load), which once made t-faults kill a
# backend before its client had even connected.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$TOP/.output
SOCKREDIR=${SOCKREDIR:-$OUT/sockredir} # make test SANITIZE=1 points it at the ASan build
SRPEER=$OUT/srpeer
PORT=${PORT:-8000}
# The modes every data-path test runs in.
SR_MODES=("--mode auto" "--mode bpf" "--mode bpf --kernel-upload --allow-unbounded-upload" "--mode splice")

T=""
BACKEND_PID=""
PROXY_PID=""
declare -a BG_PIDS=()
declare -a PIN_NAMES=() # instance names used, so that cleanup can remove their pins
declare -a CLEANUP_PATHS=() # more files for cleanup to remove

log() { echo "# $*"; }
skip() {
	echo "SKIP: $*"
	exit 77
}
fail() {
	echo "FAIL: $*" >&2
	for f in "$T"/proxy*.log "$T"/backend*.log; do
		[ -f "$f" ] || continue
		echo "--- $f (last 30 lines)" >&2
		tail -n 30 "$f" >&2
	done
	exit 1
}

need_root() {
	[ "$(id -u)" = 0 ] || skip "needs root: BPF, network namespaces and pins need CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN"
}

need_cmd() {
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip "needs '$c' (run 'make deps' as root)"
	done
}

cleanup() {
	local rc=$?
	set +e
	for p in "$PROXY_PID" "$BACKEND_PID" "${BG_PIDS[@]}"; do
		[ -n "$p" ] && kill -KILL "$p" 2>/dev/null
	done
	wait 2>/dev/null
	# A killed sockredir leaves its pins behind (by design: a restart replaces them).
	for n in "${PIN_NAMES[@]}"; do
		rm -rf "/sys/fs/bpf/sockredir/$n"
	done
	rmdir /sys/fs/bpf/sockredir 2>/dev/null
	for f in "${CLEANUP_PATHS[@]}"; do
		rm -rf "$f"
	done
	[ -n "$T" ] && [ -z "${KEEP_TMP:-}" ] && rm -rf "$T"
	exit $rc
}

# Re-run the calling test in a fresh network namespace with loopback up.
setup() {
	need_root
	need_cmd unshare ip systemd-socket-activate
	[ -x "$SOCKREDIR" ] && [ -x "$SRPEER" ] || fail "build first: make all .output/srpeer"
	if [ -z "${SR_IN_NETNS:-}" ]; then
		export SR_IN_NETNS=1
		exec unshare -n -- "$BASH" "$0" "$@"
	fi
	ip link set lo up
	T=$(mktemp -d /tmp/sockredir-test.XXXXXX)
	trap cleanup EXIT
}

# wait_for DESCRIPTION SECONDS COMMAND...: poll until COMMAND succeeds. On a timeout it
# calls $WAIT_FOR_FAIL (default fail), so a test can show its logs first.
wait_for() {
	local what=$1 secs=$2
	shift 2
	poll "$secs" "$@" || "${WAIT_FOR_FAIL:-fail}" "timed out after ${secs}s waiting for $what"
}

# since START (an $EPOCHREALTIME): seconds since, 2 decimals.
since() {
	awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'
}

# poll SECS COMMAND...: COMMAND until it succeeds, at most SECS seconds; the status says which.
poll() {
	local deadline=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.05
	done
}

# start_backend MODE [srpeer backend options...]; the socket is $T/backend.sock.
start_backend() {
	local mode=$1
	shift
	rm -f "$T/backend.ready"
	"$SRPEER" backend --listen "$T/backend.sock" --mode "$mode" --ready-file "$T/backend.ready" \
		"$@" 2>>"$T/backend.log" &
	BACKEND_PID=$!
	wait_for "backend ($mode)" 10 test -e "$T/backend.ready"
}

stop_backend() {
	[ -n "$BACKEND_PID" ] || return 0
	kill -TERM "$BACKEND_PID" 2>/dev/null || true
	wait "$BACKEND_PID" 2>/dev/null || true
	BACKEND_PID=""
}

# Errors the backend counted (it prints "srpeer backend: N connections, M errors" at exit).
backend_errors() {
	grep -o '[0-9]* errors' "$T/backend.log" | tail -n 1 | cut -d' ' -f1
}

# start_proxy [sockredir options...]: socket-activated on 127.0.0.1:$PORT, backend $T/backend.sock
# (set PROXY_BACKEND= to give none, when the options or a config file name the backends).
# systemd-socket-activate binds now and execs sockredir (same pid) at the first connection.
PROXY_N=0
start_proxy() {
	PROXY_N=$((PROXY_N + 1))
	PROXY_NAME=test$$-$PROXY_N
	PIN_NAMES+=("$PROXY_NAME")
	PROXY_LOG=$T/proxy$PROXY_N.log
	systemd-socket-activate -l "127.0.0.1:$PORT" ${PROXY_ENV:-} \
		"$SOCKREDIR" --name "$PROXY_NAME" "$@" ${PROXY_BACKEND-"$T/backend.sock"} 2>"$PROXY_LOG" &
	PROXY_PID=$!
	BG_PIDS+=($PROXY_PID) # so that cleanup kills it even after PROXY_PID moves on
	wait_for "listener on port $PORT" 5 port_listening "$PORT"
}

port_listening() {
	ss -Hltn "sport = :$1" | grep -q LISTEN
}

proxy_is_running() {
	[ "$(cat /proc/"$PROXY_PID"/comm 2>/dev/null)" = sockredir ]
}

# It has set up: its counters and pins exist before it says "Forwarding" (a worker too).
proxy_forwarding() {
	grep -q "Forwarding " "$PROXY_LOG" 2>/dev/null
}

# Make the socket-activated proxy exec (it does at the first connection) and wait until it has
# set up. Exec'd is not enough: `sockredir stats` right after it found no instance yet under
# ASan, where setting up is slow.
proxy_activate() {
	if ! proxy_is_running; then
		"$SRPEER" client --connect "127.0.0.1:$PORT" --test connect-only \
			--expect-eof-within 0 --quiet >/dev/null 2>&1 &
		BG_PIDS+=($!)
		wait_for "sockredir to start" 5 proxy_is_running
	fi
	wait_for "sockredir to set up" 10 proxy_forwarding
}

# stop_proxy: SIGTERM, expect exit status 0 and the pins gone.
stop_proxy() {
	[ -n "$PROXY_PID" ] || return 0
	kill -TERM "$PROXY_PID" 2>/dev/null || true
	wait_proxy
}

# wait_proxy: wait for an exit already asked for; expect status 0 and the pins gone.
wait_proxy() {
	local rc=0
	[ -n "$PROXY_PID" ] || return 0
	wait "$PROXY_PID" || rc=$?
	PROXY_PID=""
	[ $rc = 0 ] || fail "sockredir exited with status $rc after SIGTERM"
	[ ! -e "/sys/fs/bpf/sockredir/$PROXY_NAME" ] || fail "pins left behind in /sys/fs/bpf/sockredir/$PROXY_NAME"
}

# summary FIELD: a number from the counters sockredir logs at exit, e.g. "accepted",
# "on the kernel path", "client half-closed", "moved by hand".
summary() {
	local v
	v=$(grep -oE "([0-9]+ $1|$1 [0-9]+)" "$PROXY_LOG" | tail -n 1 | grep -oE '[0-9]+' || true)
	echo "${v:-0}"
}

# client [srpeer client options...] against the proxy.
client() {
	"$SRPEER" client --connect "127.0.0.1:$PORT" "$@"
}

# Count the proxy's open fds.
proxy_fds() {
	ls "/proc/$PROXY_PID/fd" | wc -l
}

# proxy_fds_at_most N: for wait_for, which re-runs it.
proxy_fds_at_most() {
	[ "$(proxy_fds)" -le "$1" ]
}

# The proxy's open sockets: what a leaked connection would leave. (Its fd count also moves with
# the pool of spare pipes, up to 64, which is not a leak.)
proxy_sockets() {
	find "/proc/$PROXY_PID/fd" -lname 'socket:*' 2>/dev/null | wc -l
}
proxy_sockets_at_most() {
	[ "$(proxy_sockets)" -le "$1" ]
}
# proxy_accepted N: the proxy holds at least N established client sockets on $PORT. A connection
# still in the listen backlog is established too, but belongs to no process yet.
proxy_accepted() {
	[ "$(ss -Htnp state established "( sport = :$PORT )" | grep -c "pid=$PROXY_PID,")" -ge "$1" ]
}

# run_modes FUNCTION: call FUNCTION "mode options" for each of SR_MODES.
run_modes() {
	for m in "${SR_MODES[@]}"; do
		log "mode: $m"
		"$1" "$m"
	done
}
