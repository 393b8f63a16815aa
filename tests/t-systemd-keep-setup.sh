#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Connections in the middle of their setup across `systemctl restart`, under a real systemd (252,
# PID 1 in a container) with the shipped units plus only /etc/sockredir/NAME.conf and the listen
# drop-in. A host-routed instance (route-host, as t-systemd-reload.sh has it) holds, when the
# restart comes:
# - 100 connections mid-peek: each has sent only the start of its request head, up to the middle
#   of the Host: header ("...\r\nHo"), so sockredir is still peeking for the name (peek-timeout
#   60s); they send the rest once the restart has returned;
# - 100 connections mid-connect: each has sent its whole request head (Host: c.example) and a
#   body, and sockredir is retrying the connect to c.example's backend, a Unix listener whose
#   backlog is full (listen(0) plus one connection it never accepts: every non-blocking connect
#   gets EAGAIN, which sockredir retries until connect-timeout, 60s here). Once the restart has
#   returned, the listener raises its backlog and accepts.
# a.example's backend echoes (srpeer echo), and so does c.example's once it accepts; the default
# route is an http backend, so a request that went the wrong way gets an HTTP reply, not its echo.
# Each connection must then either get back exactly every byte it sent and then an EOF ("ok"), or
# be closed cleanly with nothing ("eof"): never a reset, a partial or wrong reply, or silence.
# The outcomes are counted and printed. Afterwards NFileDescriptorStore is back to its value
# right after start within 4 s: nothing of these connections stays in the fd store.
#
# First the same without a restart, where every connection must be "ok": what the state before the
# restart is made of works on any build. Then with the restart.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/systemd-lib.sh"
sd_setup "$@"
need_cmd ss awk

N=${KEEP_SETUP_CONNS:-100}
STORE_SECS=4

# The backend that does not accept yet: listen(0) and one connection of its own in the queue, so
# that every other connect() finds the backlog full. Once GO exists it raises the backlog (listen()
# again wakes connectors) and echoes every connection until EOF.
cat >"$T/full-listener.py" <<'PY'
import os, socket, sys, threading, time

path, ready, go = sys.argv[1:4]
l = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
if os.path.exists(path):
    os.unlink(path)
l.bind(path)
os.chmod(path, 0o666)
l.listen(0)
filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
filler.connect(path)
probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
probe.setblocking(False)
try:
    probe.connect(path)
    sys.exit("the backlog is not full: a second connect went through")
except BlockingIOError:
    pass
probe.close()
open(ready, "w").close()
deadline = time.monotonic() + 600
while not os.path.exists(go):
    if time.monotonic() > deadline:
        sys.exit("no go within 600 s")
    time.sleep(0.05)
l.listen(4096)
filler.close()

def echo(s):
    with s:
        while True:
            b = s.recv(65536)
            if not b:
                break
            s.sendall(b)
        s.shutdown(socket.SHUT_WR)

while True:
    s, _ = l.accept()
    threading.Thread(target=echo, args=(s,), daemon=True).start()
PY

# The client, driven line by line: "peek N" opens N connections that send only the start of a
# request for a.example; "connect N" opens N that send a whole request for c.example and a body;
# "finish" completes them all (the rest of the head and a body for the peek ones) and prints one
# line of JSON, the outcomes of each kind. Any other answer is an error, and so is silence.
cat >"$T/setup-client.py" <<'PY'
import json, random, socket, sys

port = int(sys.argv[1])
TIMEOUT = 20
conns = []  # (kind, socket, sent so far, still to send)

def body(i):
    return random.Random(i).randbytes(16384)

def opened():
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

def finish(kind, s, sent, rest):
    """ok: every byte back, then EOF; eof: closed with nothing back; else what went wrong."""
    try:
        if rest:
            # Closed already (at the restart)? Then nothing more is sent.
            s.setblocking(False)
            try:
                if s.recv(1, socket.MSG_PEEK) == b"":
                    return "eof"
                return "unexpected bytes before the request was complete"
            except BlockingIOError:
                pass
            finally:
                s.settimeout(TIMEOUT)
            s.sendall(rest)
            sent += rest
        got = bytearray()
        while len(got) < len(sent):
            b = s.recv(len(sent) - len(got))
            if not b:
                return "eof" if not got else f"partial ({len(got)} of {len(sent)} bytes, then EOF)"
            got += b
        if got != sent:
            at = next(i for i in range(len(sent)) if got[i] != sent[i])
            return f"mismatch at byte {at}"
        s.shutdown(socket.SHUT_WR)
        if s.recv(1) != b"":
            return "bytes after the echo"
        return "ok"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return f"error {e.errno}"
    finally:
        s.close()

for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "peek":
        for _ in range(int(cmd[1])):
            i = len(conns)
            s = opened()
            head = f"GET /peek-{i} HTTP/1.1\r\nHo".encode()
            s.sendall(head)
            conns.append(("peek", s, head, b"st: a.example\r\n\r\n" + body(i)))
        print("ok", flush=True)
    elif cmd[0] == "connect":
        for _ in range(int(cmd[1])):
            i = len(conns)
            s = opened()
            req = f"GET /connect-{i} HTTP/1.1\r\nHost: c.example\r\n\r\n".encode() + body(i)
            s.sendall(req)
            conns.append(("connect", s, req, b""))
        print("ok", flush=True)
    elif cmd[0] == "finish":
        out = {}
        for kind, s, sent, rest in conns:
            r = finish(kind, s, sent, rest)
            out.setdefault(kind, {}).setdefault(r, 0)
            out[kind][r] += 1
        conns = []
        print(json.dumps(out, sort_keys=True), flush=True)
    else:
        sys.exit(f"unknown command {cmd}")
PY

sd_backend be-a /run/a/a.sock echo
sd_backend be-d /run/d/d.sock http

# scenario NAME PORT RESTART(yes|no)
scenario() {
	local name=$1 port=$2 restart=$3 unit=sockredir@$1.service base reply t0 cur n
	log "--- $name: $N connections mid-peek and $N mid-connect, restart: $restart"
	ct install -d -m 0755 "/run/$name-c"
	ct_write "/run/$name-c/listener.py" 0644 <"$T/full-listener.py"
	ct systemd-run --quiet --unit="be-$name-c" -p LimitNOFILE=20000 python3 \
		"/run/$name-c/listener.py" "/run/$name-c/c.sock" "/run/$name-c/ready" "/run/$name-c/go" ||
		fail "systemd-run be-$name-c failed"
	wait_for "the full-backlog listener be-$name-c" 10 ct test -e "/run/$name-c/ready"
	printf '%s\n' 'backend = /run/d/d.sock' 'route-host = a.example=/run/a/a.sock' \
		"route-host = c.example=/run/$name-c/c.sock" 'peek-timeout = 60s' \
		'connect-timeout = 60s' 'drain-timeout = 2s' | ct_write "/etc/sockredir/$name.conf" 0644
	sd_instance "$name" "$port"
	ct_systemctl start "$unit" || fail "systemctl start $unit failed"
	sleep 0.5
	base=$(ct_systemctl show -P NFileDescriptorStore "$unit")
	log "$name: NFileDescriptorStore=$base after start (the baseline)"

	coproc SETUP { exec python3 "$T/setup-client.py" "$port" 2>"$T/setup-$name.err"; }
	BG_PIDS+=("$SETUP_PID")
	local cin=${SETUP[1]} cout=${SETUP[0]}
	ask() {
		reply=""
		echo "$1" >&"$cin" || fail "the client is gone: $(cat "$T/setup-$name.err")"
		read -r -t 120 -u "$cout" reply || true
		[ -n "$reply" ] || fail "client, '$1': no answer within 120 s: $(cat "$T/setup-$name.err")"
	}
	ask "peek $N"
	[ "$reply" = ok ] || fail "client, peek: $reply"
	ask "connect $N"
	[ "$reply" = ok ] || fail "client, connect: $reply"
	# Mid-setup: sockredir holds all 2N client connections, and no backend connection.
	held() { [ "$(ss -Htnp state established "( sport = :$port )" | grep -c '"sockredir"')" = $((2 * N)) ]; }
	poll 10 held || fail "sockredir does not hold the $((2 * N)) connections: $(ss -Htnp state established "( sport = :$port )" | grep -c '"sockredir"')"
	sleep 1
	n=$(sd_unix_conns "$unit" /run/a/a.sock)
	[ "$n" = 0 ] || fail "$n mid-peek connections reached a.example's backend: not mid-peek"
	n=$(sd_unix_conns "$unit" "/run/$name-c/c.sock")
	[ "$n" = 0 ] || fail "$n mid-connect connections reached c.example's backend: not mid-connect"
	j=$(sd_stats "$name")
	[ "$(sd_stat_field "$j" open)" = $((2 * N)) ] && [ "$(sd_stat_field "$j" connect_failed)" = 0 ] ||
		fail "$name: want $((2 * N)) open and none failed to connect: $j"
	log "$name: $N mid-peek and $N mid-connect, $(sd_stat_field "$j" open) open in sockredir"

	if [ "$restart" = yes ]; then
		cur=$(ct journalctl -q -n 0 --show-cursor | sed -n 's/^-- cursor: //p')
		t0=$EPOCHREALTIME
		ct timeout 60 systemctl --no-pager restart "$unit" || fail "systemctl restart failed"
		log "$name: systemctl restart took $(since "$t0")s; the unit logged since:"
		ct_journal "$unit" --after-cursor="$cur" -o cat | grep -iE 'restor|kept|connection' |
			head -n 5 | sed 's/^/#   /' || true
		# Whatever the new process closes, it has closed by now: a close after the client's
		# next bytes would be a reset the client provoked.
		sleep 1
	fi
	ct touch "/run/$name-c/go"
	t0=$EPOCHREALTIME
	ask finish
	log "$name: outcomes after $(since "$t0")s: $reply"
	kill "$SETUP_PID" 2>/dev/null || true
	wait "$SETUP_PID" 2>/dev/null || true
	python3 - "$reply" "$N" "$restart" "$name" <<'PY' >"$T/outcomes" ||
import json, sys
out, n, restart, name = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "yes", sys.argv[4]
allowed = {"ok", "eof"} if restart else {"ok"}
bad = False
for kind in ("peek", "connect"):
    got = out.get(kind, {})
    total = sum(got.values())
    wrong = {k: v for k, v in got.items() if k not in allowed}
    print(f"# {name}: {total} mid-{kind}: {', '.join(f'{v} {k}' for k, v in sorted(got.items()))}"
          f"{'' if not wrong else ' -- not allowed: ' + ', '.join(wrong)}")
    if total != n or wrong:
        bad = True
sys.exit(bad)
PY
		{
			cat "$T/outcomes"
			SD_FAIL_SUMMARY=$T/outcomes
			fail "$name: outcomes not as required: $reply"
		}
	cat "$T/outcomes"
	t0=$EPOCHREALTIME
	store_back() { [ "$(ct_systemctl show -P NFileDescriptorStore "$unit")" = "$base" ]; }
	poll "$STORE_SECS" store_back ||
		fail "$name: NFileDescriptorStore is $(ct_systemctl show -P NFileDescriptorStore "$unit"), not back to $base within ${STORE_SECS}s"
	log "$name: NFileDescriptorStore back to $base $(since "$t0")s after the clients were done"
	ct_systemctl stop "sockredir@$name.socket" "$unit" "be-$name-c" || fail "systemctl stop failed"
}

scenario norestart 8501 no
scenario restart 8502 yes
sd_check_sanitizers
log "ok"
