#!/bin/bash
# READY=1 once serving, STOPPING=1 on SIGTERM; open connections finish during the drain and the
# exit status is 0; past --drain-timeout the rest are closed; pins are removed on exit.
. "$(dirname "$0")/lib.sh"
setup "$@"

start_backend proto
"$SRPEER" notify-listen "$T/notify.sock" --timeout 60 >"$T/notify.out" 2>&1 &
BG_PIDS+=($!)
wait_for "notify socket" 5 test -S "$T/notify.sock"

notified() { grep -q "$1" "$T/notify.out"; }
open_connections() {
	bpftool map dump pinned "/sys/fs/bpf/sockredir/$PROXY_NAME/sr_proxy_stats" 2>/dev/null |
		grep -q "\"open\": $1,"
}

# 1. A transfer in flight when SIGTERM comes finishes; then the proxy exits 0.
PROXY_ENV="-E NOTIFY_SOCKET=$T/notify.sock -E WATCHDOG_USEC=400000" start_proxy --mode bpf
proxy_activate
wait_for "READY=1" 5 notified 'READY=1'
# WatchdogSec=: WATCHDOG=1 at half the interval (200 ms here).
wait_for "WATCHDOG=1" 5 notified 'WATCHDOG=1'
client --test down --size 2G --timeout 60 >"$T/client.out" 2>&1 &
cpid=$!
# SIGTERM only once sockredir has it: a client still in the backlog is left for the next instance.
wait_for "the download to start" 5 open_connections 1
kill -0 $cpid 2>/dev/null || fail "the download ended before SIGTERM; make it longer"
kill -TERM "$PROXY_PID"
wait_for "STOPPING=1" 5 notified 'STOPPING=1'
accepted_at_term=$(bpftool map dump pinned "/sys/fs/bpf/sockredir/$PROXY_NAME/sr_proxy_stats" |
	grep -o '"accepted": [0-9]*' | grep -o '[0-9]*$')
# A client arriving now is not accepted any more.
client --test connect-only --expect-eof-within 100 --quiet >/dev/null 2>&1 &
BG_PIDS+=($!)
wait $cpid || fail "the in-flight download failed during the drain: $(cat "$T/client.out")"
wait_proxy
grep -q 'waiting up to 10000 ms for' "$PROXY_LOG" || fail "the drain was not announced"
[ "$(summary accepted)" = "$accepted_at_term" ] || fail "a connection was accepted after SIGTERM"

# 2. Past --drain-timeout, open connections are closed and the exit is still clean.
start_proxy --mode bpf --drain-timeout 1s
proxy_activate
wait_for "the activation connection to end" 5 open_connections 0
client --test up --size 64G --timeout 30 >/dev/null 2>&1 &
cpid=$!
wait_for "the upload to start" 5 open_connections 1
start=$(date +%s%N)
kill -TERM "$PROXY_PID"
wait_proxy
ms=$((($(date +%s%N) - start) / 1000000))
log "exited ${ms} ms after SIGTERM with --drain-timeout 1s"
[ $ms -ge 900 ] && [ $ms -lt 3000 ] || fail "exit took ${ms} ms, want about 1000"
grep -q 'Drain timeout reached: closing 1 connection' "$PROXY_LOG" || fail "the timeout was not logged"
wait $cpid && fail "the client should have been cut off"

# 3. A second SIGTERM closes everything at once.
start_proxy --mode splice --drain-timeout 60s
client --test up --size 64G --timeout 30 >/dev/null 2>&1 &
cpid=$!
# --mode splice pins no counters: an accepted socket shows that sockredir has the client.
wait_for "the upload to be accepted" 5 proxy_accepted 1
kill -TERM "$PROXY_PID"
wait_for "the drain to start" 5 grep -q 'waiting up to 60000 ms for 1 connection' "$PROXY_LOG"
kill -TERM "$PROXY_PID"
wait_proxy
grep -q 'again: closing all connections now' "$PROXY_LOG" || fail "second SIGTERM not handled"
wait $cpid && fail "the client should have been cut off"
echo "ok"
