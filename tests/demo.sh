#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# `make demo`: a demo HTTP backend on a Unix socket, sockredir socket-activated in front of it on
# 127.0.0.1:$DEMO_PORT, one request through it with curl, what bpftool sees, and a clean stop.
set -euo pipefail

TOP=$(cd "$(dirname "$0")/.." && pwd)
OUT=$TOP/.output
PORT=${DEMO_PORT:-8080}
NAME=demo
T=$(mktemp -d /tmp/sockredir-demo.XXXXXX)
backend_pid="" proxy_pid=""

cleanup() {
	set +e
	[ -n "$proxy_pid" ] && kill -KILL "$proxy_pid" 2>/dev/null
	[ -n "$backend_pid" ] && kill -TERM "$backend_pid" 2>/dev/null
	# Only if sockredir was killed: a clean exit removes its pins itself.
	[ -n "$proxy_pid" ] && rm -rf "/sys/fs/bpf/sockredir/$NAME"
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() {
	printf '$ %s\n' "$*"
	"$@"
}

if ss -Hltn "sport = :$PORT" | grep -q .; then
	echo "Port $PORT is in use; run with DEMO_PORT=another-port make demo" >&2
	exit 1
fi
mode=bpf
if [ "$(id -u)" != 0 ]; then
	mode=auto
	echo "Not root: BPF needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, so this demo runs in" \
		"--mode auto and every connection uses splice." >&2
fi

step "1. A demo backend (an HTTP server) listens on a Unix socket"
"$OUT/srpeer" backend --mode http --listen "$T/backend.sock" --ready-file "$T/ready" 2>"$T/backend.log" &
backend_pid=$!
for _ in $(seq 100); do [ -e "$T/ready" ] && break; sleep 0.05; done
run ls -l "$T/backend.sock"

step "2. sockredir, socket-activated on 127.0.0.1:$PORT in front of it"
echo "\$ systemd-socket-activate -l 127.0.0.1:$PORT sockredir --name $NAME --mode $mode $T/backend.sock"
systemd-socket-activate -l "127.0.0.1:$PORT" "$OUT/sockredir" --name "$NAME" --mode "$mode" \
	"$T/backend.sock" 2>"$T/proxy.log" &
proxy_pid=$!
for _ in $(seq 100); do ss -Hltn "sport = :$PORT" | grep -q . && break; sleep 0.05; done

step "3. A request through it (the first connection starts sockredir)"
run curl -sS --max-time 5 "http://127.0.0.1:$PORT/hello"

if [ "$mode" = bpf ]; then
	pins=/sys/fs/bpf/sockredir/$NAME
	step "4. What bpftool sees: the verdict program, the maps, and the counters"
	run ls "$pins"
	run bpftool prog show name sr_redirect
	run bpftool map show pinned "$pins/sr_verdict"
	run bpftool map show pinned "$pins/sr_targets"
	echo "# Connection counters (written by sockredir through an mmap):"
	run bpftool map dump pinned "$pins/sr_proxy_stats"
	echo "# Data-path counters, per CPU (written by sr_redirect): bytes[0] is backend->client"
	run bpftool map dump pinned "$pins/sr_kstats"
	echo "# The same counters, summed and labelled:"
	run "$OUT/sockredir" stats "$NAME"
fi

step "5. Stop: SIGTERM drains, removes the pins, and exits 0"
kill -TERM "$proxy_pid"
rc=0
wait "$proxy_pid" || rc=$?
proxy_pid=""
sed 's/^<[0-9]>//' "$T/proxy.log" | grep -v '^Listening on\|^Communication attempt\|^Execing'
echo "exit status: $rc"
[ "$mode" != bpf ] || [ ! -e "/sys/fs/bpf/sockredir/$NAME" ] && echo "pins removed: yes"
exit $rc
