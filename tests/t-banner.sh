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

# A backend that pushes 64 MiB the moment it accepts, then shuts down its side: with the pause
# before attach, the push has started when the kernel path would be attached. Settled by hand
# instead, bytes held on our socket would be freed by that shutdown() (2 of 10 arrived cut
# short, at 6-7 MB, before backend_spoke_first). Every byte is checked.
log "a backend that pushes 64 MiB on accept and shuts down, 10 times"
cat >"$T/push.py" <<'PY'
import os, socket, sys, threading
N, CHUNK = 64 << 20, bytes((i * 7 + 3) % 251 for i in range(65536))
def serve(c):
    sent = 0
    while sent < N:
        sent += c.send(CHUNK[: min(len(CHUNK), N - sent)])
    c.shutdown(socket.SHUT_WR)
    c.recv(1)
    c.close()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(16)
open(sys.argv[2], "w").close()
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
PY
cat >"$T/pull.py" <<'PY'
import socket, sys
N, CHUNK = 64 << 20, bytes((i * 7 + 3) % 251 for i in range(65536))
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
got = bytearray()
while d := c.recv(1 << 20):
    got += d
for off in range(0, len(got), len(CHUNK)):
    if got[off : off + len(CHUNK)] != CHUNK[: len(got) - off]:
        sys.exit("wrong bytes in the 64 KiB block at %d" % off)
if len(got) != N:
    sys.exit("got %d of %d bytes" % (len(got), N))
PY
rm -f "$T/backend.sock" "$T/push.ready"
python3 "$T/push.py" "$T/backend.sock" "$T/push.ready" 2>>"$T/backend.log" &
BG_PIDS+=($!)
wait_for "the pushing backend" 10 test -e "$T/push.ready"
PROXY_ENV="-E SOCKREDIR_DEBUG_ATTACH_DELAY_USEC=2000" start_proxy --mode bpf
for i in $(seq 10); do
	python3 "$T/pull.py" "$PORT" || fail "push $i arrived wrong"
done
stop_proxy
log "$(summary 'backend spoke first') of 10 stayed in userspace (backend spoke first)"
echo "ok"
