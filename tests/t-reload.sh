#!/bin/bash
# SIGHUP re-reads --config FILE: routes, backends and limits change, the 100 connections open
# across the reload keep working, RELOADING=1 and READY=1 frame it, and a config that fails
# (a bad line, a route to no socket) keeps the old one whole.
. "$(dirname "$0")/lib.sh"
setup "$@"

for b in a b; do
	"$SRPEER" backend --listen "$T/$b.sock" --mode echo --ready-file "$T/$b.ready" 2>"$T/backend-$b.log" &
	BG_PIDS+=($!)
	eval "pid_$b=\$!"
	wait_for "backend $b" 5 test -e "$T/$b.ready"
done
"$SRPEER" notify-listen "$T/notify.sock" --timeout 120 >"$T/notify.out" 2>&1 &
BG_PIDS+=($!)
wait_for "notify socket" 5 test -S "$T/notify.sock"

served() {
	eval "kill -TERM \$pid_$1" 2>/dev/null || true
	wait_for "backend $1 to exit" 5 grep -q '^srpeer backend: ' "$T/backend-$1.log"
	grep -o '[0-9]* connections' "$T/backend-$1.log" | tail -n 1 | cut -d' ' -f1
}
reloaded() { [ "$(grep -c "$1" "$PROXY_LOG")" -ge "$2" ]; }

printf '# sockredir test config\nbackend = %s\nbalance = round-robin\n' "$T/a.sock" >"$T/sr.conf"
PROXY_BACKEND= PROXY_ENV="-E NOTIFY_SOCKET=$T/notify.sock" start_proxy --mode bpf --config "$T/sr.conf"
proxy_activate

PORT=$PORT PID=$PROXY_PID CONF=$T/sr.conf B=$T/b.sock LOG=$PROXY_LOG python3 - <<'PY' ||
import os, signal, socket, time
port, pid = int(os.environ["PORT"]), int(os.environ["PID"])

def echo(s, data):
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        c = s.recv(65536)
        if not c:
            raise SystemExit("EOF during echo")
        got += c
    if got != data:
        raise SystemExit("echo mismatch")

def wait_log(text, count, timeout=5):
    end = time.time() + timeout
    while time.time() < end:
        if open(os.environ["LOG"]).read().count(text) >= count:
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for '{text}' in the log")

conns = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(100)]
for i, s in enumerate(conns):
    echo(s, bytes([i]) * 4096)
with open(os.environ["CONF"], "w") as f:
    f.write(f"backend = {os.environ['B']}\nmax-connections = 1000\nidle-timeout = 1min\n")
os.kill(pid, signal.SIGHUP)
wait_log("Reloaded:", 1)
for i, s in enumerate(conns):
    echo(s, bytes([i]) * 65536)
print("100 connections kept working across the reload")
new = socket.create_connection(("127.0.0.1", port), timeout=10)
echo(new, b"n" * 1000)
new.close()
for s in conns:
    s.close()
PY
	fail "reload with 100 open connections"

# A bad line: the reload fails and the old config (backend b) stays.
printf 'backend = %s\nmode = fast\n' "$T/a.sock" >"$T/sr.conf"
kill -HUP "$PROXY_PID"
wait_for "the failed reload" 5 reloaded 'Reload failed' 1
grep -q "$T/sr.conf:2: Invalid mode 'fast'" "$PROXY_LOG" || fail "the bad line was not reported with file and line"
client --test rr --size 1K --rounds 3 || fail "serving after a failed reload"

# A route to a socket that does not exist: refused as at start-up. `sockredir reload` (what
# ExecReload= runs) waits for the outcome and fails with it.
printf 'backend = %s\nroute = nosuch=%s\n' "$T/a.sock" "$T/a.sock" >"$T/sr.conf"
rc=0
"$SOCKREDIR" reload "$PROXY_NAME" >"$T/reload.out" 2>&1 || rc=$?
[ $rc = 1 ] || fail "sockredir reload of a bad config: exit status $rc, want 1: $(cat "$T/reload.out")"
grep -q "refused the new configuration and keeps the old one" "$T/reload.out" ||
	fail "sockredir reload did not say the reload was refused: $(cat "$T/reload.out")"
reloaded 'Reload failed' 2 || fail "sockredir reload returned before the instance had reloaded"
grep -q "no inherited socket is named 'nosuch'" "$PROXY_LOG" || fail "the missing socket was not named"
client --test rr --size 1K --rounds 3 || fail "serving after the second failed reload"

# A fixed option: said, and ignored. sockredir reload returns once the reload is done.
printf 'backend = %s\nmap-entries = 100\n' "$T/b.sock" >"$T/sr.conf"
"$SOCKREDIR" reload "$PROXY_NAME" || fail "sockredir reload of a good config failed"
reloaded 'Reloaded:' 2 || fail "sockredir reload returned before the instance had reloaded"
rc=0
"$SOCKREDIR" reload nosuch$$ 2>"$T/reload.out" || rc=$?
[ $rc = 1 ] && grep -q "No running instance 'nosuch$$'" "$T/reload.out" ||
	fail "sockredir reload of no instance: status $rc: $(cat "$T/reload.out")"
grep -q 'take effect only at start' "$PROXY_LOG" || fail "a changed fixed option was not reported"
[ -e "/sys/fs/bpf/sockredir/$PROXY_NAME" ] || fail "the pins moved"
stop_proxy

# RELOADING=1 then READY=1, once per reload (3 reloads, plus the READY=1 at start).
grep -o 'READY=1\|RELOADING=1' "$T/notify.out" | tr '\n' ' ' >"$T/seq"
log "notify sequence: $(cat "$T/seq")"
[ "$(cat "$T/seq")" = "READY=1 RELOADING=1 READY=1 RELOADING=1 READY=1 RELOADING=1 READY=1 RELOADING=1 READY=1 " ] ||
	fail "unexpected sd_notify sequence: $(cat "$T/seq")"
[ "$(summary reloads)" = 2 ] || fail "expected 2 successful reloads"
grep -q 'STATUS=Kernel path: [0-9]* open, [0-9]* accepted ([0-9]* kernel path, [0-9]* fell back); .* down, .* up' \
	"$T/notify.out" || fail "STATUS= does not carry the path and the live counts"

a=$(served a)
b=$(served b)
log "backend a served $a, b served $b"
[ "$a" = 101 ] || fail "a should have served the activation connection and the 100"
[ "$b" = 3 ] || fail "b should have served the 3 connections after the reload"
echo "ok"
