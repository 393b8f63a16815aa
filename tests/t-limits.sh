#!/bin/bash
# Limits and timeouts: --max-connections leaves extra clients in the backlog (not accepted and
# closed) and takes them once below the limit; --idle-timeout closes connections that move no
# byte, on both paths, and spares busy ones; --keepalive sets TCP keepalive on client sockets;
# --exit-idle-time exits once no connection has been open for that long.
. "$(dirname "$0")/lib.sh"
setup "$@"

start_backend echo

start() {
	PROXY_N=$((PROXY_N + 1))
	PROXY_NAME=test$$-$PROXY_N
	PIN_NAMES+=("$PROXY_NAME")
	PROXY_LOG=$T/proxy$PROXY_N.log
	"$SOCKREDIR" --name "$PROXY_NAME" --listen 127.0.0.1:$PORT "$@" "$T/backend.sock" 2>"$PROXY_LOG" &
	PROXY_PID=$!
	wait_for "listener" 5 port_listening $PORT
}

for m in "--mode bpf" "--mode splice"; do
	log "mode: $m"

	# --max-connections 5: the 6th client waits in the backlog, unaccepted, until one closes.
	start $m --max-connections 5
	PORT=$PORT STATS=/sys/fs/bpf/sockredir/$PROXY_NAME/sr_proxy_stats MODE="$m" python3 - <<'PY' ||
import os, socket, subprocess, time
port = int(os.environ["PORT"])

def accepted():
    if "splice" in os.environ["MODE"]:
        return None
    out = subprocess.run(["bpftool", "map", "dump", "pinned", os.environ["STATS"]],
                         capture_output=True, text=True).stdout
    return int(out.split('"accepted": ')[1].split(",")[0])

def echo(s, data):
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        got += s.recv(65536)
    assert got == data, "echo mismatch"

first = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
for s in first:
    echo(s, b"a" * 100)
sixth = socket.create_connection(("127.0.0.1", port), timeout=5)  # completes in the backlog
sixth.sendall(b"b" * 100)
sixth.settimeout(0.5)
try:
    sixth.recv(1)
    raise SystemExit("the 6th client was served above --max-connections")
except socket.timeout:
    pass
if accepted() not in (None, 5):
    raise SystemExit(f"accepted {accepted()}, want 5: the 6th must stay in the backlog")
first[0].close()
sixth.settimeout(5)
got = b""
while len(got) < 100:
    got += sixth.recv(100)
assert got == b"b" * 100
print("6th client served once one of the first 5 closed")
PY
		fail "--max-connections ($m)"
	stop_proxy
	[ "$(summary accepted)" = 6 ] || fail "expected 6 accepted ($m)"

	# --idle-timeout 1s: an idle connection closes after about 1 s, a busy one lives on.
	start $m --idle-timeout 1s
	PORT=$PORT python3 - <<'PY' || fail "--idle-timeout ($m)"
import os, socket, time
port = int(os.environ["PORT"])
idle = socket.create_connection(("127.0.0.1", port), timeout=5)
busy = socket.create_connection(("127.0.0.1", port), timeout=5)
for s in (idle, busy):
    s.sendall(b"x"); assert s.recv(1) == b"x"
t0 = time.time()
idle.settimeout(0.1)
closed_at = None
while time.time() - t0 < 3.5:
    busy.sendall(b"y" * 1000)
    got = b""
    while len(got) < 1000:
        got += busy.recv(1000)
    if closed_at is None:
        try:
            if idle.recv(1) == b"":
                closed_at = time.time() - t0
        except socket.timeout:
            pass
        except ConnectionResetError:
            closed_at = time.time() - t0
    time.sleep(0.2)
if closed_at is None or not 0.9 < closed_at < 2.5:
    raise SystemExit(f"idle connection closed after {closed_at} s, want about 1 to 1.5")
busy.sendall(b"z"); assert busy.recv(1) == b"z"
print(f"idle connection closed after {closed_at:.2f} s; the busy one lived 3.5 s")
PY
	stop_proxy
	[ "$(summary 'closed idle')" = 1 ] || fail "expected 1 connection closed idle ($m)"

	# --keepalive=30s: the accepted socket has a keepalive timer.
	start $m --keepalive=30s
	rm -f "$T/held"
	PORT=$PORT HELD=$T/held python3 - <<'PY' &
import os, socket, time
s = socket.create_connection(("127.0.0.1", int(os.environ["PORT"])))
s.sendall(b"k"); s.recv(1)
open(os.environ["HELD"], "w").close()
end = time.time() + 30
while os.path.exists(os.environ["HELD"]) and time.time() < end:
    time.sleep(0.05)
PY
	holder=$!
	wait_for "the connection to be served" 10 test -e "$T/held"
	ss -tno state established "( sport = :$PORT )" >"$T/ss.out"
	rm "$T/held"
	grep -q 'timer:(keepalive,' "$T/ss.out" || fail "no keepalive timer on the client socket ($m): $(cat "$T/ss.out")"
	wait $holder || true
	stop_proxy

	# --exit-idle-time 1s: exits with status 0 once the last connection has been closed 1 s.
	start $m --exit-idle-time 1s
	client --test rr --size 1K --rounds 3 || fail "exit-idle client ($m)"
	t0=$(date +%s%N)
	wait_proxy
	ms=$((($(date +%s%N) - t0) / 1000000))
	log "exited ${ms} ms after the last connection"
	[ $ms -ge 800 ] && [ $ms -lt 3000 ] || fail "exit after $ms ms, want about 1000 ($m)"
	grep -q 'exiting (--exit-idle-time)' "$PROXY_LOG" || fail "exit-idle not logged ($m)"
done
echo "ok"
