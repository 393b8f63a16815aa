#!/bin/bash
# The backend speaks first: a 4 KiB banner the moment it accepts, then echo. The client sends at
# once without waiting, and the banner must arrive whole and first, then the echo. 500
# connections per mode; then again with the proxy pausing before the kernel path is attached,
# so that every banner is queued and the connection stays in userspace (backend_spoke_first);
# then pausing between that check and the insert, so that every banner is queued when the
# socket enters the map and must be settled by hand.
. "$(dirname "$0")/lib.sh"
setup "$@"

start_backend banner

one_mode() {
	start_proxy $1
	client --test banner --size 1K --rounds 3 --conns 500 --parallel 8 || fail "banner ($1)"
	stop_proxy
	[ "$(summary accepted)" = 500 ] || fail "expected 500 connections"
}
run_modes one_mode

# delayed HOOK WHAT MODE...: 500 banner connections with the test hook HOOK pausing 2 ms.
delayed() {
	local hook=$1 what=$2
	shift 2
	PROXY_ENV="-E SOCKREDIR_DEBUG_${hook}_DELAY_USEC=2000" start_proxy "$@"
	client --test banner --size 1K --rounds 3 --conns 500 --parallel 8 ||
		fail "banner, delayed $what ($*)"
	stop_proxy
}

log "with a 2 ms pause before the kernel path is attached (every banner is there before)"
for m in "--mode bpf" "--mode bpf --kernel-upload --allow-unbounded-upload"; do
	delayed ATTACH attach $m
	first=$(summary 'backend spoke first')
	log "$m: $first connections stayed in userspace (backend spoke first)"
	# As below: a loaded machine can make the backend later than 2 ms.
	[ "$first" -ge 400 ] || fail "expected most connections to stay in userspace ($m)"
	[ "$(summary 'moved by hand')" -le $(((500 - first) * 4096)) ] ||
		fail "more settled by hand than the connections on the kernel path could have ($m)"
done

log "with a 2 ms pause between that check and the insert (every banner is queued early)"
for m in "--mode bpf" "--mode bpf --kernel-upload --allow-unbounded-upload"; do
	delayed INSERT insert $m
	by_hand=$(summary 'moved by hand')
	log "$m: $by_hand bytes moved by hand"
	# Nearly every banner is queued before insertion with the pause (a loaded machine can make
	# the backend later than 2 ms); what matters is that many were, and none was wrong.
	[ "$by_hand" -ge $((400 * 4096)) ] || fail "expected most banners to be settled by hand ($m)"
done

stop_backend
[ "$(backend_errors)" = 0 ] || fail "the backend counted errors"

# tests/stream-backend.py N U WAIT: a backend that streams N bytes from accept while it reads a
# U-byte upload, then (U > 0) says whether the upload arrived whole, and shuts down its side.
# With WAIT=1 it sends its first 64 KiB, then waits for the client's first bytes before it sends
# the rest. tests/stream-client.py N U is its client. Every 8-byte word of both streams holds its
# own offset, so a reordered or repeated skb shows wherever it lands.
HERE=$(dirname "$0")
stream_pid=
start_stream_backend() {
	[ -z "$stream_pid" ] || kill "$stream_pid"
	rm -f "$T/backend.sock" "$T/stream.ready"
	python3 "$HERE/stream-backend.py" "$T/backend.sock" "$T/stream.ready" "$@" \
		2>>"$T/backend.log" &
	stream_pid=$!
	BG_PIDS+=($stream_pid)
	wait_for "the streaming backend" 10 test -e "$T/stream.ready"
}

# A backend that pushes 64 MiB the moment it accepts, then shuts down its side: with the pause
# before attach, the push has started when the kernel path would be attached. Settled by hand
# instead, bytes held on our socket would be freed by that shutdown() (2 of 10 arrived cut
# short, at 6-7 MB, before backend_spoke_first).
log "a backend that pushes 64 MiB on accept and shuts down, 10 times"
start_stream_backend $((64 << 20)) 0 0
PROXY_ENV="-E SOCKREDIR_DEBUG_ATTACH_DELAY_USEC=2000" start_proxy --mode bpf
for i in $(seq 10); do
	python3 "$HERE/stream-client.py" "$PORT" $((64 << 20)) 0 || fail "push $i arrived wrong"
done
stop_proxy
log "$(summary 'backend spoke first') of 10 stayed in userspace (backend spoke first)"

# 32 MiB streamed while the client uploads 1 MiB. With the pause between the check and the
# insert, the first 64 KiB are queued when the socket enters the map and are settled by hand; the
# upload waits until they have, and then the backend streams the rest on the kernel path. The
# backend waits for the upload's first bytes after its first block: one that goes on sending
# while the first settle round reads can still reorder one skb, the race described in
# flow_settle() and README "Known limits" (seen here under ASan: the word at 393,216 held offset
# 429,760, one 36,544-byte skb). bench/experiments/settle-stream.sh reproduces that case, and
# the upload's bound on its wait (SOCKREDIR_DEBUG_SETTLE_ROUNDS), by hand.
log "a backend that streams while the client uploads, settled by hand, 5 times per mode"
start_stream_backend $((32 << 20)) $((1 << 20)) 1
for m in "--mode bpf" "--mode bpf --kernel-upload --allow-unbounded-upload"; do
	PROXY_ENV="-E SOCKREDIR_DEBUG_INSERT_DELAY_USEC=2000" start_proxy $m
	for i in $(seq 5); do
		python3 "$HERE/stream-client.py" "$PORT" $((32 << 20)) $((1 << 20)) ||
			fail "stream $i arrived wrong ($m)"
	done
	stop_proxy
	by_hand=$(summary 'moved by hand')
	log "$m: $by_hand bytes moved by hand, $(summary 'backend spoke first') spoke first"
	[ "$by_hand" -gt 0 ] || fail "expected a stream to be settled by hand ($m)"
done
echo "ok"
