#!/bin/bash
# Several backends per route: failover when one is down (and a passive health mark after
# --max-fails), round-robin and least-conn balancing, a backend that appears late (retried
# with backoff until --connect-timeout), and the timeout itself. Both data paths.
. "$(dirname "$0")/lib.sh"
setup "$@"

# backend NAME: an echo backend on $T/NAME.sock, logging to $T/backend-NAME.log.
backend() {
	"$SRPEER" backend --listen "$T/$1.sock" --mode echo --ready-file "$T/$1.ready" 2>"$T/backend-$1.log" &
	BG_PIDS+=($!)
	eval "pid_$1=\$!"
	wait_for "backend $1" 5 test -e "$T/$1.ready"
}
# served NAME: stop backend NAME and print how many connections it served. (Called in $(...),
# a subshell that can't wait for the backend: poll for the line it prints at exit instead.)
served() {
	eval "kill -TERM \$pid_$1" 2>/dev/null || true
	wait_for "backend $1 to exit" 5 grep -q '^srpeer backend: ' "$T/backend-$1.log"
	grep -o '[0-9]* connections' "$T/backend-$1.log" | tail -n 1 | cut -d' ' -f1
}

# start FLAGS...: sockredir with --listen (no first-connection activation to account for).
start() {
	PROXY_N=$((PROXY_N + 1))
	PROXY_NAME=test$$-$PROXY_N
	PIN_NAMES+=("$PROXY_NAME")
	PROXY_LOG=$T/proxy$PROXY_N.log
	"$SOCKREDIR" --name "$PROXY_NAME" --listen 127.0.0.1:$PORT "$@" 2>"$PROXY_LOG" &
	PROXY_PID=$!
	wait_for "listener" 5 port_listening $PORT
}

one_mode() {
	local m=$1

	# 1. The first backend is down: every client is served by the second.
	backend b
	start $m "$T/a.sock" "$T/b.sock"
	client --test rr --size 16K --rounds 5 --conns 20 || fail "failover to b ($m)"
	stop_proxy
	[ "$(served b)" = 20 ] || fail "b should have served all 20 ($m)"
	grep -q "Backend $T/a.sock failed 3 times in a row: marked down for 10000 ms" "$PROXY_LOG" ||
		fail "the passive health mark was not logged ($m)"
	[ "$(summary 'backend connect failures')" = 0 ] || fail "no client should have failed ($m)"

	# 2. Round-robin over two live backends: an even split.
	backend a
	backend b
	start $m "$T/a.sock" "$T/b.sock"
	client --test rr --size 1K --rounds 2 --conns 40 || fail "round-robin ($m)"
	stop_proxy
	[ "$(served a)" = 20 ] && [ "$(served b)" = 20 ] || fail "round-robin should split 20/20 ($m)"

	# 3. least-conn: with 4 connections held open on a, the next 4 all go to b.
	backend a
	# (--fail-timeout 0: b is down at first, and must not be skipped once it is up)
	start $m --balance least-conn --fail-timeout 0 "$T/a.sock" "$T/b.sock"
	# The holder creates $T/held once its 4 connections are served, and keeps them open until
	# the file is removed (for 30 s at most).
	rm -f "$T/held"
	PORT=$PORT HELD=$T/held python3 - <<'PY' &
import os, socket, time
held = [socket.create_connection(("127.0.0.1", int(os.environ["PORT"]))) for _ in range(4)]
for s in held:
    s.sendall(b"x"); s.recv(1)
open(os.environ["HELD"], "w").close()
end = time.time() + 30
while os.path.exists(os.environ["HELD"]) and time.time() < end:
    time.sleep(0.05)
PY
	holder=$!
	wait_for "4 connections held on a" 10 test -e "$T/held"
	backend b
	client --test rr --size 1K --rounds 2 --conns 4 || fail "least-conn ($m)"
	rm "$T/held"
	wait $holder || true
	stop_proxy
	[ "$(served b)" = 4 ] || fail "least-conn should send the 4 new connections to b ($m)"
	[ "$(served a)" = 4 ] || fail "a should have served the 4 held connections ($m)"

	# 4. A backend that appears 2 s late is used as soon as it appears.
	start $m "$T/late.sock"
	t0=$(date +%s%N)
	client --test rr --size 64K --rounds 10 --timeout 20 >"$T/late.out" 2>&1 &
	cpid=$!
	sleep 2
	backend late
	wait $cpid || fail "the client was not served once the backend appeared ($m): $(cat "$T/late.out")"
	ms=$((($(date +%s%N) - t0) / 1000000))
	log "served after ${ms} ms"
	[ $ms -ge 1900 ] && [ $ms -lt 4000 ] || fail "served after $ms ms, want a little over 2000 ($m)"
	stop_proxy
	served late >/dev/null

	# 5. Nothing appears: the client is closed once --connect-timeout has passed.
	start $m --connect-timeout 1s "$T/never.sock"
	t0=$(date +%s%N)
	client --test connect-only --expect-eof-within 3000 || fail "no EOF after --connect-timeout ($m)"
	ms=$((($(date +%s%N) - t0) / 1000000))
	log "EOF after ${ms} ms with --connect-timeout 1s"
	[ $ms -ge 900 ] && [ $ms -lt 2500 ] || fail "EOF after $ms ms, want about 1000 ($m)"
	stop_proxy
	grep -q "Failed to connect to backend $T/never.sock: No such file or directory" "$PROXY_LOG" ||
		fail "the failure was not logged with its reason ($m)"
}
for m in "--mode bpf" "--mode splice"; do
	log "mode: $m"
	one_mode "$m"
done
echo "ok"
