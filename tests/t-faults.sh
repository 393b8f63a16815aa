#!/bin/bash
# Faults, on both data paths. For each: the faulted connection ends promptly, the connections
# that were not faulted lose no byte (srpeer checks every one), and the proxy holds no more fds
# afterwards than before.
#   - the backend is killed with SIGKILL mid-transfer
#   - the client resets mid-transfer (SO_LINGER 0)
#   - the backend socket file is deleted, then created again
#   - the sockhash is full (--map-entries 4): the rest go to splice, counted
#   - SIGTERM with 500 connections open: they finish, then exit 0
#   - kill -9, then a restart with the same name: the stale pins are replaced
# (Running out of fds is t-emfile.) The fd check counts sockets: spare pipes are pooled.
. "$(dirname "$0")/lib.sh"
setup "$@"

# backend NAME MODE: a srpeer backend on $T/NAME.sock.
backend() {
	rm -f "$T/$1.ready"
	"$SRPEER" backend --listen "$T/$1.sock" --mode "$2" --ready-file "$T/$1.ready" 2>>"$T/backend-$1.log" &
	BG_PIDS+=($!)
	eval "pid_$1=\$!"
	wait_for "backend $1" 5 test -e "$T/$1.ready"
}

# proxy MODE...: sockredir with two named listeners: "victim" on $PORT, "healthy" on $PORT+1.
proxy() {
	PROXY_N=$((PROXY_N + 1))
	PROXY_NAME=fault$$-$PROXY_N
	PIN_NAMES+=("$PROXY_NAME")
	PROXY_LOG=$T/proxy$PROXY_N.log
	systemd-socket-activate -l 127.0.0.1:$PORT -l 127.0.0.1:$((PORT + 1)) --fdname=victim:healthy \
		"$SOCKREDIR" --name "$PROXY_NAME" "$@" --route "victim=$T/victim.sock" \
		--route "healthy=$T/healthy.sock" 2>"$PROXY_LOG" &
	PROXY_PID=$!
	BG_PIDS+=($PROXY_PID)
	wait_for "listeners" 5 port_listening $((PORT + 1))
	"$SRPEER" client --connect 127.0.0.1:$((PORT + 1)) --test rr --size 1K --quiet ||
		fail "first connection ($*)"
	sleep 0.3
}

# healthy_start / healthy_check: a transfer on the healthy backend during the fault.
healthy_start() {
	"$SRPEER" client --connect 127.0.0.1:$((PORT + 1)) --test rr --size 64K --rounds 3000 \
		--conns 4 --parallel 4 >"$T/healthy.out" 2>&1 &
	healthy_pid=$!
	sleep 0.3
}
healthy_check() {
	wait $healthy_pid || fail "a connection that was not faulted failed ($1): $(cat "$T/healthy.out")"
}
fds_settle() { wait_for "proxy sockets back to $1" 10 proxy_sockets_at_most "$1"; }

for m in "--mode bpf" "--mode splice"; do
	log "mode: $m"
	backend healthy echo

	# 1. The backend dies with SIGKILL during a 2 GiB download.
	backend victim proto
	proxy $m
	fds=$(proxy_sockets)
	healthy_start
	"$SRPEER" client --connect 127.0.0.1:$PORT --test down --size 2G --timeout 10 >"$T/victim.out" 2>&1 &
	vpid=$!
	sleep 0.5
	kill -KILL "$pid_victim"
	t0=$(date +%s%N)
	wait $vpid && fail "the victim's download should have failed ($m)"
	ms=$((($(date +%s%N) - t0) / 1000000))
	log "backend SIGKILL: the client saw the end after $ms ms: $(grep -o 'EOF\|reset[a-z ]*' "$T/victim.out" | head -n 1)"
	[ $ms -lt 1000 ] || fail "the client learned of the dead backend after $ms ms ($m)"
	healthy_check "backend SIGKILL, $m"
	fds_settle "$fds"

	# 1b. The backend dies with SIGKILL during an upload (its reply direction is idle): the
	# client gets a FIN promptly; what it still sends is read and dropped for a while
	# (a lingering close, so that it sees the FIN and not a reset), then the connection ends.
	backend victim proto
	healthy_start
	KILLED=$T/killed PORT=$PORT python3 - <<'PY' >"$T/victim.out" 2>&1 &
import os, select, socket, struct, time
s = socket.create_connection(("127.0.0.1", int(os.environ["PORT"])))
s.sendall(struct.pack("<IIQQQ", 0x51505253, 0, 7, 1 << 31, 0))  # a 2 GiB upload
s.setblocking(False)
chunk, start, killed_at = b"\0" * 65536, time.time(), None
while time.time() - start < 20:
    r, w, _ = select.select([s], [s], [], 1)
    if r:
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            data = b""
        if data == b"":
            print(f"FIN after {time.time() - float(open(os.environ['KILLED']).read()):.3f} s")
            break
    if w:
        try:
            s.send(chunk)
        except BlockingIOError:
            pass
        except (BrokenPipeError, ConnectionResetError):
            print("reset before a FIN")
            break
PY
	vpid=$!
	sleep 0.5
	date +%s.%N >"$T/killed"
	kill -KILL "$pid_victim"
	wait $vpid || true
	log "backend SIGKILL during an upload: $(cat "$T/victim.out")"
	fin=$(sed -n 's/^FIN after \([0-9.]*\) s$/\1/p' "$T/victim.out")
	[ -n "$fin" ] && awk -v f="$fin" 'BEGIN { exit !(f < 1) }' ||
		fail "the uploading client did not get a FIN within 1 s ($m)"
	healthy_check "backend SIGKILL during an upload, $m"
	fds_settle "$fds"

	# 2. The client resets during a download.
	backend victim proto
	healthy_start
	PORT=$PORT python3 - <<'PY' || fail "client reset ($m)"
import os, socket, struct, time
s = socket.create_connection(("127.0.0.1", int(os.environ["PORT"])))
s.sendall(struct.pack("<IIQQQ", 0x51505253, 0, 7, 0, 1 << 31))  # 2 GiB download
got = 0
while got < 20 << 20:
    got += len(s.recv(1 << 20))
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()  # RST
print(f"reset after {got >> 20} MiB")
PY
	healthy_check "client reset, $m"
	fds_settle "$fds"

	# 3. The backend socket file goes away, then comes back (a backend restarting).
	rm -f "$T/victim.sock"
	healthy_start
	"$SRPEER" client --connect 127.0.0.1:$PORT --test up --size 16M --timeout 10 >"$T/late.out" 2>&1 &
	lpid=$!
	sleep 1
	kill -TERM "$pid_victim"
	backend victim proto
	wait $lpid || fail "a client waiting while the socket was gone was not served ($m): $(cat "$T/late.out")"
	healthy_check "socket deleted and re-created, $m"
	fds_settle "$fds"
	kill -TERM "$pid_victim"
	stop_proxy
	kill -TERM "$pid_healthy"
done

# 4. A full sockhash: the connections that don't fit use splice, every byte right, counted.
backend healthy echo
backend victim proto
proxy --mode bpf --map-entries 4
"$SRPEER" client --connect 127.0.0.1:$((PORT + 1)) --test rr --size 16K --rounds 50 --conns 12 --barrier ||
	fail "connections with a full sockhash"
stop_proxy
log "map full: $(summary 'on the kernel path') on the kernel path, $(summary 'map full') map full"
[ "$(summary 'map full')" -ge 6 ] || fail "connections past --map-entries should fall back (map full)"

# 5. SIGTERM with 500 connections open: every one finishes its work, then the exit is 0.
proxy --mode bpf
"$SRPEER" client --connect 127.0.0.1:$((PORT + 1)) --test rr --size 4K --rounds 200 --conns 500 \
	--barrier --hold "$T/hold" --timeout 60 >"$T/drain.out" 2>&1 &
dpid=$!
# srpeer creates the hold file once all 500 are through their first round trip (so sockredir has
# accepted every one), and keeps them there, with 199 rounds to go, until the file is removed.
wait_for "500 connections through their first round trip" 30 test -e "$T/hold"
kill -TERM "$PROXY_PID"
wait_for "the drain of 500 connections to be announced" 10 \
	grep -q 'waiting up to 10000 ms for 500 connection' "$PROXY_LOG"
rm "$T/hold"
wait $dpid || fail "connections open at SIGTERM did not finish: $(cat "$T/drain.out")"
wait_proxy

# 6. kill -9, then a restart with the same name: the stale pins are replaced, and it serves.
proxy --mode bpf --name stale$$
PIN_NAMES+=(stale$$)
kill -KILL "$PROXY_PID"
wait "$PROXY_PID" 2>/dev/null || true
[ -e /sys/fs/bpf/sockredir/stale$$/sr_verdict ] || fail "kill -9 should leave the pins behind"
old_id=$(bpftool map show pinned /sys/fs/bpf/sockredir/stale$$/sr_verdict | cut -d: -f1)
proxy --mode bpf --name stale$$
new_id=$(bpftool map show pinned /sys/fs/bpf/sockredir/stale$$/sr_verdict | cut -d: -f1)
[ "$old_id" != "$new_id" ] || fail "the stale pins were not replaced"
"$SRPEER" client --connect 127.0.0.1:$((PORT + 1)) --test rr --size 64K --rounds 100 || fail "after restart"
stop_proxy
[ "$(summary 'on the kernel path')" -ge 2 ] || fail "the restarted instance should use the kernel path"
echo "ok"
