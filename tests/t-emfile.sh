#!/bin/bash
# Out of fds: accepting pauses (one warning), the proxy does not spin while paused, and it
# resumes as soon as connections close; clients left in the backlog are then served.
. "$(dirname "$0")/lib.sh"
setup "$@"

start_backend echo
# 64 fds: about 20 go to the event loop and the BPF object, then 2 per connection.
# JOURNAL_STREAM names the log file, as systemd names the journal's stream: sockredir then puts
# the "<N>" priority prefixes in, and the test can tell a warning from other lines.
: >"$T/proxy.log"
systemd-socket-activate -l "127.0.0.1:$PORT" -E JOURNAL_STREAM="$(stat -c %d:%i "$T/proxy.log")" \
	bash -c 'ulimit -n 64 && exec "$@"' _ \
	"$SOCKREDIR" --name emfile$$ --mode bpf "$T/backend.sock" 2>>"$T/proxy.log" &
PROXY_PID=$!
PROXY_NAME=emfile$$
PIN_NAMES+=("$PROXY_NAME")
PROXY_LOG=$T/proxy.log
wait_for "listener" 5 port_listening "$PORT"
client --test rr --size 1K --quiet || fail "first connection"

PROXY_PID=$PROXY_PID python3 - "$PORT" <<'PY' || fail "the EMFILE scenario failed"
import os, socket, sys, time

port = int(sys.argv[1])
pid = os.environ["PROXY_PID"]

def cpu_ticks():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])  # utime + stime

def echo(s, data, expect=None):
    s.sendall(data)
    data = expect or data
    got = b""
    while len(got) < len(data):
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("EOF")
        got += chunk
    if got != data:
        raise RuntimeError("echo mismatch")

conns = []
for i in range(60):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    conns.append(s)
time.sleep(0.5)
served = []
for s in conns:
    s.settimeout(0.3)
    try:
        echo(s, b"x" * 100)
        served.append(s)
    except (socket.timeout, RuntimeError):
        pass
waiting = [s for s in conns if s not in served]
print(f"{len(served)} of {len(conns)} served, {len(waiting)} waiting in the backlog")
if not waiting:
    sys.exit("the fd limit was never reached")

t0, c0 = time.time(), cpu_ticks()
time.sleep(1.0)
t1, c1 = time.time(), cpu_ticks()
cpu = (c1 - c0) / os.sysconf("SC_CLK_TCK") / (t1 - t0)
print(f"CPU while paused: {cpu * 100:.1f}%")
if cpu > 0.05:
    sys.exit("the proxy spins while out of fds")

for s in served:
    s.close()
# Only about as many as were served fit at once: close each one once it has been served.
for s in waiting:
    # The first 100 bytes were sent while it waited in the backlog: they come back first.
    s.settimeout(10)
    echo(s, b"y" * 1000, b"x" * 100 + b"y" * 1000)
    s.close()
print(f"all {len(waiting)} waiting connections served as others closed")
PY
client --test rr --size 64K --rounds 10 || fail "not serving after the pause"
stop_proxy
n=$(grep -c '^<4>Out of file descriptors (Too many open files): pausing accepting' "$PROXY_LOG" || true)
log "pause warnings: $n"
[ "$n" = 1 ] || fail "want the pause logged once as a warning, got $n"
echo "ok"
