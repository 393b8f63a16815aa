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

# healthy_start / healthy_check: a transfer on the healthy backend during the fault. srpeer
# creates the hold file once all 4 connections are through their first round trip; removing it
# lets them go on, so they are surely running when the fault comes.
healthy_start() {
	rm -f "$T/healthy-hold"
	"$SRPEER" client --connect 127.0.0.1:$((PORT + 1)) --test rr --size 64K --rounds 3000 \
		--conns 4 --barrier --hold "$T/healthy-hold" >"$T/healthy.out" 2>&1 &
	healthy_pid=$!
	wait_for "the healthy connections" 10 test -e "$T/healthy-hold"
	rm "$T/healthy-hold"
}
healthy_check() {
	wait $healthy_pid || fail "a connection that was not faulted failed ($1): $(cat "$T/healthy.out")"
}
fds_settle() { wait_for "proxy sockets back to $1" 10 proxy_sockets_at_most "$1"; }

# kill_backend_during up|down MODE: a 2 GiB transfer through the victim listener, its backend
# killed with SIGKILL once the transfer is under way (fault-client.py waits for 16 MiB, so the
# proxy has surely reached the backend). The client must get a FIN, not a reset, within 1 s: on a
# download the last bytes come first, and on an upload the proxy keeps reading what the client
# still sends, so that it sees the FIN (a lingering close). Prints the delay in seconds.
kill_backend_during() {
	rm -f "$T/under-way" "$T/killed"
	backend victim proto
	python3 "$TOP/tests/fault-client.py" $PORT "$1" "$T/under-way" "$T/killed" >"$T/victim.out" 2>&1 &
	local vpid=$! end delay
	wait_for "the $1 to be under way ($2)" 20 test -e "$T/under-way"
	date +%s.%N >"$T/killed"
	kill -KILL "$pid_victim"
	wait $vpid || fail "the fault client failed: $(cat "$T/victim.out")"
	end=$(cat "$T/victim.out")
	delay=$(sed -n 's/^FIN after \([0-9.]*\) s$/\1/p' "$T/victim.out")
	[ -n "$delay" ] || fail "backend SIGKILL during a 2 GiB $1: $end, want a FIN ($2)"
	awk -v f="$delay" 'BEGIN { exit !(f < 1) }' ||
		fail "backend SIGKILL during a 2 GiB $1: $end, want a FIN within 1 s ($2)"
	echo "$delay"
}

# delay_stats SECONDS...: "median M ms, max X ms" of the delays.
delay_stats() {
	printf '%s\n' "$@" | sort -n | awk '{ d[NR] = $1 * 1000 }
		END {
			med = NR % 2 ? d[(NR + 1) / 2] : (d[NR / 2] + d[NR / 2 + 1]) / 2
			printf "median %.0f ms, max %.0f ms over %d", med, d[NR], NR
		}'
}

# FAULT_RUNS: how many times cases 1 and 1b run per mode (20 to measure the FIN delay).
FAULT_RUNS=${FAULT_RUNS:-3}
for m in "${SR_MODES[@]}" "--mode bpf --workers 2"; do
	log "mode: $m"
	backend healthy echo
	backend victim proto
	proxy $m
	fds=$(proxy_sockets)

	# 1. The backend dies with SIGKILL during a download, and 1b. during an upload (its reply
	# direction is idle), while other connections go on.
	for dir in down up; do
		healthy_start
		delays=()
		for ((i = 0; i < FAULT_RUNS; i++)); do
			delays+=("$(kill_backend_during $dir "$m")")
		done
		log "backend SIGKILL during a 2 GiB $dir: FIN $(delay_stats "${delays[@]}") ($m)"
		healthy_check "backend SIGKILL during a $dir, $m"
		fds_settle "$fds"
	done

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
