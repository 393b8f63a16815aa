#!/bin/bash
# Without CAP_BPF (and the other capabilities BPF needs), --mode bpf fails at start-up naming the
# reason, and --mode auto falls back to splice, says why once, and passes the bulk test.
. "$(dirname "$0")/lib.sh"
need_cmd setpriv
setup "$@"

start_backend proto
DROP="setpriv --bounding-set -bpf,-perfmon,-net_admin,-sys_admin --inh-caps -bpf,-perfmon,-net_admin,-sys_admin --"

# --mode bpf: a clear failure, status 1. The listener is inherited from systemd-socket-activate.
PROXY_LOG=$T/proxy-bpf.log
set +e
systemd-socket-activate -l "127.0.0.1:$PORT" $DROP "$SOCKREDIR" --name nocap$$ --mode bpf \
	"$T/backend.sock" 2>"$PROXY_LOG" &
pid=$!
set -e
wait_for "listener" 5 port_listening "$PORT"
client --test connect-only --expect-eof-within 5000 >/dev/null 2>&1 || true
rc=0
wait $pid || rc=$?
cat "$PROXY_LOG"
[ $rc = 1 ] || fail "--mode bpf without CAP_BPF: exit status $rc, want 1"
grep -q -- '--mode bpf: cannot use the kernel path: .*Operation not permitted' "$PROXY_LOG" ||
	fail "--mode bpf did not name the reason"
wait_for "port $PORT to be free" 5 bash -c "! ss -Hltn 'sport = :$PORT' | grep -q ."

# --mode auto: one warning with the reason, then everything on splice, every byte right; STATUS=
# and sockredir stats say so, and why.
PROXY_N=$((PROXY_N + 1))
PROXY_NAME=nocap$$-auto
PROXY_LOG=$T/proxy-auto.log
"$SRPEER" notify-listen "$T/notify.sock" --timeout 60 >"$T/notify.out" 2>&1 &
BG_PIDS+=($!)
wait_for "notify socket" 5 test -S "$T/notify.sock"
systemd-socket-activate -l "127.0.0.1:$PORT" -E NOTIFY_SOCKET="$T/notify.sock" $DROP \
	"$SOCKREDIR" --name "$PROXY_NAME" --mode auto "$T/backend.sock" 2>"$PROXY_LOG" &
PROXY_PID=$!
wait_for "listener" 5 port_listening "$PORT"
client --test up --size 256M || fail "256 MiB upload with --mode auto, no CAP_BPF"
client --test down --size 256M || fail "256 MiB download with --mode auto, no CAP_BPF"
grep -c 'Kernel path unavailable' "$PROXY_LOG" | grep -qx 1 || fail "want exactly one warning"
grep -q 'Kernel path unavailable, every connection uses splice: .*Operation not permitted' \
	"$PROXY_LOG" || fail "the warning does not name the reason"
# sockredir stats finds the instance without pins, and says it runs on splice and why;
# sockredir reload reaches it too.
"$SOCKREDIR" stats "$PROXY_NAME" >"$T/stats.out" || fail "sockredir stats of a splice-only instance"
cat "$T/stats.out"
grep -q '^  running on    Splice only, kernel path unavailable (failed to .*: EPERM)$' "$T/stats.out" ||
	fail "sockredir stats does not say why the kernel path is off"
grep -q '^  dispatch      both ways in userspace' "$T/stats.out" || fail "sockredir stats shows the wrong dispatch"
"$SOCKREDIR" stats --json | grep -q "\"name\":\"$PROXY_NAME\",.*\"path_status\":\"Splice only, kernel path unavailable" ||
	fail "sockredir stats --json (all instances) does not list the splice-only instance"
"$SOCKREDIR" reload "$PROXY_NAME" || fail "sockredir reload of a splice-only instance"
# systemctl status shows the downgrade and why, in STATUS=.
grep -q 'STATUS=Splice only, kernel path unavailable (failed to .*: EPERM): [0-9]* open' \
	"$T/notify.out" || fail "STATUS= does not say that the kernel path is off, and why: $(cat "$T/notify.out")"
stop_proxy
[ ! -e "/run/sockredir/$PROXY_NAME" ] || fail "the counters file was left behind"
cat "$PROXY_LOG"
[ "$(summary 'mode')" = 2 ] || fail "expected 2 connections on splice for reason 'mode'"
[ $(($(summary 'spliced down') + $(summary 'copied down'))) -ge $((256 << 20)) ] ||
	fail "download not moved in userspace"
echo "ok"
