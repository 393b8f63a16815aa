#!/bin/bash
# --workers: several processes serve the inherited listener.
#   - every byte right on each path, 300 connections at once;
#   - under one fd limit, 2 workers hold about twice the connections of 1 (so both serve);
#   - a killed worker is replaced and the service goes on;
#   - SIGHUP reaches every worker; READY, RELOADING, STATUS and STOPPING come from the
#     supervisor (the main pid); SIGTERM drains every worker, exit 0, pins gone, also when it
#     reaches every process at once (systemd's KillMode=control-group); a second SIGTERM to the
#     main pid closes everything at once;
#   - --exit-idle-time is judged across workers;
#   - `sockredir stats` shows one instance: 2 workers, their summed counters, the dispatch;
#   - bad values exit 2.
. "$(dirname "$0")/lib.sh"
setup "$@"

start_backend proto

workers_of() { pgrep -P "$PROXY_PID" -x sockredir | sort -n; }
two_workers() { [ "$(workers_of | wc -l)" = 2 ]; }

# 1. Every byte, each path.
check_bytes() {
	start_proxy $1 --workers 2
	client --test halfclose --size 64K --conns 300 --barrier || fail "halfclose, $1"
	client --test replyclose --size 16K --conns 200 || fail "replyclose, $1"
	client --test up --size 256M || fail "upload, $1"
	client --test down --size 256M || fail "download, $1"
	two_workers || fail "want 2 workers, have: $(workers_of | tr '\n' ' ')"
	if [[ $1 != *splice* ]]; then
		want="down in the kernel, up in userspace"
		[[ $1 != *kernel-upload* ]] || want="down in the kernel, up in the kernel"
		[[ $1 != *auto* ]] ||
			want="down in the kernel while no more connections are open than CPUs, else in userspace; up in userspace"
		"$SOCKREDIR" stats "$PROXY_NAME" >"$T/stats.out" || fail "sockredir stats, $1"
		grep -Eq "dispatch +$want.*; 2 worker" "$T/stats.out" ||
			fail "sockredir stats shows the wrong dispatch for $1: $(cat "$T/stats.out")"
		grep -Eq 'connections +0 open, 502 accepted' "$T/stats.out" ||
			fail "the shared counters miss connections: $(cat "$T/stats.out")"
	fi
	stop_proxy
	[ "$(summary accepted)" -ge 502 ] || fail "the supervisor's summary has $(summary accepted) accepted"
}
run_modes check_bytes
stop_backend
[ "$(backend_errors)" = 0 ] || fail "the backend counted errors"
start_backend proto

# 2. One fd limit per process: N workers hold N times the connections. LIMIT fds leave room for
# about (LIMIT - 20) / 2 connections in one process; 150 at once need two.
LIMIT=200
limited_proxy() { # WORKERS
	PROXY_N=$((PROXY_N + 1))
	PROXY_NAME=test$$-$PROXY_N
	PIN_NAMES+=("$PROXY_NAME")
	PROXY_LOG=$T/proxy$PROXY_N.log
	systemd-socket-activate -l "127.0.0.1:$PORT" bash -c "ulimit -n $LIMIT && exec \"\$@\"" _ \
		"$SOCKREDIR" --name "$PROXY_NAME" --mode bpf --workers "$1" "$T/backend.sock" \
		2>"$PROXY_LOG" &
	PROXY_PID=$!
	BG_PIDS+=($PROXY_PID)
	wait_for "listener on port $PORT" 5 port_listening "$PORT"
}
stop_backend
start_backend echo
# rr --barrier keeps every connection open in the proxy after its first round trip.
limited_proxy 1
client --test rr --size 1K --rounds 2 --conns 150 --barrier --timeout 4 --quiet >/dev/null 2>&1 &&
	fail "one worker with $LIMIT fds held 150 connections: the limit is not what this test thinks"
grep -q 'Out of file descriptors' "$PROXY_LOG" || fail "one worker did not run out of fds"
stop_proxy
limited_proxy 2
client --test rr --size 1K --rounds 2 --conns 150 --barrier --timeout 20 ||
	fail "two workers with $LIMIT fds each did not hold 150 connections"
stop_proxy
stop_backend
start_backend proto

# 3. A worker killed with SIGKILL is replaced; clients are served throughout.
start_proxy --mode bpf --workers 2
proxy_activate
wait_for "2 workers" 5 two_workers
victim=$(workers_of | head -n 1)
kill -KILL "$victim"
wait_for "the worker to be replaced" 5 grep -q 'started again as pid' "$PROXY_LOG"
wait_for "2 workers" 5 two_workers
workers_of | grep -qx "$victim" && fail "the killed worker $victim is still listed"
client --test halfclose --size 1M --conns 50 --barrier || fail "after a worker was replaced"
stop_proxy
grep -q "was killed by signal 9" "$PROXY_LOG" || fail "the lost worker was not logged"

# 4. systemd sees only the supervisor: READY, RELOADING then READY, STATUS, STOPPING. SIGHUP
# reaches every worker; SIGTERM drains them all.
"$SRPEER" notify-listen "$T/notify.sock" --timeout 60 >"$T/notify.out" 2>&1 &
BG_PIDS+=($!)
wait_for "notify socket" 5 test -S "$T/notify.sock"
notified() { grep -q "$1" "$T/notify.out"; }
PROXY_ENV="-E NOTIFY_SOCKET=$T/notify.sock -E WATCHDOG_USEC=400000" \
	start_proxy --mode bpf --workers 2
proxy_activate
wait_for "READY=1" 5 notified 'READY=1'
wait_for "WATCHDOG=1" 5 notified 'WATCHDOG=1'
wait_for "STATUS=" 5 notified 'STATUS=.*accepted'
# sockredir reload signals the supervisor and returns once both workers have reloaded.
"$SOCKREDIR" reload "$PROXY_NAME" || fail "sockredir reload with 2 workers"
grep -q 'worker 1: Reloaded' "$PROXY_LOG" && grep -q 'worker 2: Reloaded' "$PROXY_LOG" ||
	fail "sockredir reload returned before both workers had reloaded"
wait_for "RELOADING=1" 5 notified 'RELOADING=1'
[ "$(grep -c 'READY=1' "$T/notify.out")" -ge 2 ] || fail "no READY=1 after the reload"
client --test down --size 4G --timeout 60 >"$T/down.out" 2>&1 &
d1=$!
client --test up --size 4G --timeout 60 >"$T/up.out" 2>&1 &
d2=$!
wait_for "both transfers in flight" 10 bash -c \
	"ss -Htn state established '( sport = :$PORT )' | grep -c . | grep -qx 2"
# As systemd's default KillMode=control-group does: SIGTERM to every process at once. A worker
# then gets the supervisor's forwarded drain too, which must not count as a second signal.
kill -TERM "$PROXY_PID" $(workers_of)
wait_for "STOPPING=1" 5 notified 'STOPPING=1'
wait $d1 || fail "a download in flight at SIGTERM failed: $(cat "$T/down.out")"
wait $d2 || fail "an upload in flight at SIGTERM failed: $(cat "$T/up.out")"
wait_proxy
# Only the main pid speaks to systemd (NotifyAccess=main): every message came from it.
pids=$(grep -o 'pid=[0-9]*' "$T/notify.out" | sort -u | wc -l)
[ "$pids" -le 1 ] || fail "sd_notify messages came from $pids processes: $(cat "$T/notify.out")"

# 4b. A second SIGTERM to the main pid closes every worker's connections at once.
open_is() { "$SOCKREDIR" stats "$PROXY_NAME" 2>/dev/null | grep -Eq "connections +$1 open"; }
start_proxy --mode bpf --workers 2 --drain-timeout 60s
proxy_activate
wait_for "the activation connection to end" 5 open_is 0
client --test up --size 64G --timeout 60 >/dev/null 2>&1 &
cpid=$!
wait_for "a worker to take the upload" 10 open_is 1
kill -TERM "$PROXY_PID"
wait_for "the drain to start" 5 grep -q 'waiting up to 60000 ms for 1 connection' "$PROXY_LOG"
start=$(date +%s%N)
kill -TERM "$PROXY_PID"
wait_proxy
ms=$((($(date +%s%N) - start) / 1000000))
log "a second SIGTERM ended a 60 s drain after ${ms} ms"
[ $ms -lt 5000 ] || fail "a second SIGTERM took ${ms} ms to close the connections"
grep -q 'closing all connections now' "$PROXY_LOG" || fail "the second SIGTERM was not logged"
wait $cpid && fail "the upload should have been cut off"

# 5. --exit-idle-time across workers: the supervisor exits 0 once no worker has a connection.
start_proxy --mode bpf --workers 2 --exit-idle-time 1s
client --test halfclose --size 1M --conns 20 || fail "before the idle exit"
start=$(date +%s%N)
wait_for "the idle exit" 10 bash -c "! kill -0 $PROXY_PID 2>/dev/null"
ms=$((($(date +%s%N) - start) / 1000000))
log "idle exit ${ms} ms after the last connection, with --exit-idle-time 1s"
wait_proxy
[ $ms -ge 900 ] || fail "exited after ${ms} ms, before the idle time"

# 6. Bad values.
for bad in 0 65 two -1; do
	rc=0
	"$SOCKREDIR" --workers "$bad" "$T/backend.sock" 2>"$T/bad.err" || rc=$?
	[ $rc = 2 ] || fail "--workers $bad: exit $rc, want 2"
	grep -q 'expected auto or a number from 1 to 64' "$T/bad.err" || fail "--workers $bad: $(cat "$T/bad.err")"
done
echo ok
