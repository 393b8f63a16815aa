#!/bin/bash
# Adaptive dispatch. --mode auto (the default) puts a connection's download on the kernel path
# while no more connections are open than CPUs, and carries it in userspace past that. Every
# flow in userspace starts on recv()/send() and moves to splice once it carries bulk. Every byte
# is checked by srpeer both ways; the exit counters say which mover carried what:
#  1. auto, one connection: the kernel path;
#  2. auto, more connections than CPUs held open: small messages stay on recv()/send(), with no
#     map entry and nothing spliced; and clients still in the accept queue count as open;
#  3. auto under the same load: 4 MiB request-response rounds move both flows to splice; a
#     1 MiB response to an HTTP request moves the download to the kernel path at the next
#     HTTP request (promote_download()), every word of it checked; one to a bare request line
#     stays spliced;
#  4. --mode splice: recv()/send(), then splice, at any load;
#  5. --mode bpf: the download in the kernel at any load, the upload adapts;
#  6. auto under load, every byte checked: 40 connections at once in 1 MiB rounds, and the
#     duplex, half-close, reply-then-close and send-then-close shapes (no HTTP request: no
#     download moves to the kernel path).
. "$(dirname "$0")/lib.sh"
setup "$@"

CPUS=$(nproc)
start_backend echo

# expect FIELD VALUE [what]: the exit summary's FIELD is VALUE.
expect() {
	local got
	got=$(summary "$1")
	[ "$got" = "$2" ] || fail "${3:-$1}: expected $2, got $got"
}
# movers COPY SPLICE KERNEL: connections closed, by the fastest mover they used.
movers() {
	grep -Eq "closed by fastest mover: copy $1, splice $2, kernel $3\." "$PROXY_LOG" ||
		fail "expected copy $1, splice $2, kernel $3: $(grep Movers "$PROXY_LOG")"
}
peers() { # entries in this instance's sr_peers now
	bpftool map dump pinned "/sys/fs/bpf/sockredir/$PROXY_NAME/sr_peers" 2>/dev/null |
		grep -c '"key"' || true
}
# load [TEST]: hold CPUS idle connections open (after a first exchange: an rr round trip for
# the echo backend, the status of a download for the proto one), until unload.
load() {
	rm -f "$T/held"
	client --test "${1:-rr}" --size 64 --rounds 1 --conns "$CPUS" --barrier --hold "$T/held" \
		>"$T/load.out" 2>&1 &
	LOAD_PID=$!
	wait_for "$CPUS connections held open" 10 test -e "$T/held"
}
unload() {
	rm -f "$T/held"
	wait "$LOAD_PID" || fail "the held connections failed: $(cat "$T/load.out")"
}

log "1. auto, one connection: the kernel path"
start_proxy
client --test rr --size 64 --rounds 100 || fail "64 B rr (auto, alone)"
stop_proxy
expect 'on the kernel path' 1
movers 0 0 1

log "2. auto, $CPUS connections open already: small messages on recv()/send()"
start_proxy
load
client --test rr --size 64 --rounds 300 --conns 4 --parallel 4 --barrier \
	--hold "$T/held4" >"$T/c2.out" 2>&1 &
cpid=$!
wait_for "4 more connections past their first round trip" 10 test -e "$T/held4"
[ "$(peers)" = "$CPUS" ] || fail "want only the $CPUS first connections in sr_peers, have $(peers)"
rm -f "$T/held4"
wait $cpid || fail "chatty rr: $(cat "$T/c2.out")"
unload
stop_proxy
expect 'on the kernel path' "$CPUS"
expect 'promoted to splice' 0
expect 'spliced up' 0
expect 'spliced down' 0
expect 'copied down' $((4 * 300 * 64))
expect 'copied up' $((4 * 300 * 64 + CPUS * 64)) "copied up (and the held connections' requests)"
movers 4 0 "$CPUS"

log "2b. auto, $((CPUS + 2)) clients queued at once: the queue counts as open"
# wrk connects all its clients at once, faster than sockredir accepts them; counting only the
# open ones put the first few of a burst on the kernel path for good.
start_proxy
client --test rr --size 64 --rounds 10 || fail "64 B rr (auto, alone)"
kill -STOP "$PROXY_PID"
client --test rr --size 64 --rounds 50 --conns $((CPUS + 2)) --parallel $((CPUS + 2)) \
	>"$T/c2b.out" 2>&1 &
cpid=$!
accept_queue() { # clients waiting in the listener's accept queue (its Recv-Q)
	[ "$(ss -Hltn "sport = :$PORT" | awk '{ print $2 }')" -ge "$1" ]
}
wait_for "$((CPUS + 2)) clients in the accept queue" 10 accept_queue $((CPUS + 2))
kill -CONT "$PROXY_PID"
wait $cpid || fail "the burst: $(cat "$T/c2b.out")"
stop_proxy
expect 'on the kernel path' 1 "on the kernel path (only the lone first connection)"
movers $((CPUS + 2)) 0 1

log "3. auto, under load: bulk moves to splice"
start_proxy
load
client --test rr --size 4M --rounds 8 --conns 2 --parallel 2 || fail "4 MiB rr (auto, loaded)"
unload
stop_proxy
grep -Eq 'promoted to splice 2 down, 2 up' "$PROXY_LOG" ||
	fail "want both flows of both connections promoted to splice: $(grep Movers "$PROXY_LOG")"
[ "$(summary 'spliced down')" -gt 0 ] || fail "nothing spliced down"
stop_backend

# A backend that answers "GET /N HTTP/1.1" (and its headers), or a bare "GET N" line, with N
# bytes, each 8-byte word holding (round << 40 | offset), and echoes anything else (the held
# load's 64 B round trips).
cat >"$T/reqresp.py" <<'PY'
import socket, struct, sys, threading
def block(rnd, n):
    return b"".join(struct.pack("<Q", rnd << 40 | o) for o in range(0, n, 8))
def serve(c):
    f, rnd = c.makefile("rb"), 0
    first = f.peek(4)[:4]
    if first != b"GET ":
        while d := f.read1(65536):
            c.sendall(d)
        return
    while line := f.readline():
        while b" HTTP/1." in line and f.readline() not in (b"\r\n", b""):
            pass
        rnd += 1
        c.sendall(block(rnd, int(line.split()[1].lstrip(b"/"))))
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(64)
open(sys.argv[2], "w").close()
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
PY
cat >"$T/fetch.py" <<'PY'
import array, socket, struct, sys
port, rounds, n, http = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "http"
c = socket.create_connection(("127.0.0.1", port), timeout=30)
for rnd in range(1, rounds + 1):
    c.sendall(b"GET /%d HTTP/1.1\r\nHost: t\r\n\r\n" % n if http else b"GET %d\n" % n)
    got = bytearray()
    while len(got) < n and (d := c.recv(1 << 20)):
        got += d
    words = array.array("Q")
    words.frombytes(bytes(got[:n]))
    if len(got) != n or any(v != (rnd << 40 | i * 8) for i, v in enumerate(words)):
        sys.exit("round %d: %d of %d bytes, or a word out of place" % (rnd, len(got), n))
c.shutdown(socket.SHUT_WR)
if c.recv(1):
    sys.exit("bytes after the last response")
PY
rm -f "$T/backend.sock" "$T/reqresp.ready"
python3 "$T/reqresp.py" "$T/backend.sock" "$T/reqresp.ready" 2>>"$T/backend.log" &
reqresp_pid=$!
BG_PIDS+=($reqresp_pid)
wait_for "the request-response backend" 10 test -e "$T/reqresp.ready"

log "3b. auto, under load: a bulk response moves the download to the kernel at the next HTTP request"
start_proxy
load
pids=()
for how in http http line; do
	python3 "$T/fetch.py" "$PORT" 8 $((1 << 20)) $how >"$T/fetch${#pids[@]}.out" 2>&1 &
	pids+=($!)
done
for i in 0 1 2; do
	wait "${pids[$i]}" || fail "fetch $i: $(cat "$T/fetch$i.out")"
done
unload
stop_proxy
# Round 1's response is spliced; from round 2 on the download is in the kernel. Not for the
# bare "GET N" lines: no HTTP/1.x request line, no proof that the backend only answers.
expect 'downloads to the kernel' 2 "downloads moved to the kernel"
[ "$(summary 'spliced down')" -ge $(((2 * 512 << 10) + (7 << 20))) ] || fail "too little spliced down"
[ "$(summary 'kernel down')" -ge $((2 * 7 << 20)) ] || fail "too little in the kernel down"
expect 'on the kernel path' $((CPUS + 2))
movers 0 1 $((CPUS + 2))
kill "$reqresp_pid"
rm -f "$T/backend.sock"
start_backend echo

log "4. --mode splice: recv()/send(), then splice; never the kernel"
start_proxy --mode splice
client --test rr --size 4M --rounds 4 --conns 2 --parallel 2 || fail "4 MiB rr (splice)"
client --test rr --size 64 --rounds 100 || fail "64 B rr (splice)"
stop_proxy
expect 'on the kernel path' 0
movers 1 2 0

log "5. --mode bpf: the download in the kernel at any load"
start_proxy --mode bpf
load
client --test rr --size 64 --rounds 100 --conns 2 --parallel 2 || fail "64 B rr (bpf)"
unload
stop_proxy
expect 'on the kernel path' $((CPUS + 2))
expect 'copied up' $((2 * 100 * 64 + CPUS * 64)) "the upload on recv()/send()"
movers 0 0 $((CPUS + 2))

log "6. auto under load, every byte checked"
start_proxy
load
client --test rr --size 1M --rounds 10 --conns 40 --parallel 40 || fail "40 x 1 MiB rr (auto)"
client --test rr --size 100K --rounds 50 --conns 20 --parallel 20 --seed 7 ||
	fail "20 x 100 KiB rr (auto)"
unload
stop_proxy
log "$(summary 'downloads to the kernel') downloads moved to the kernel path between rounds"
stop_backend
[ "$(backend_errors)" = 0 ] || fail "the echo backend counted errors"

start_backend proto
start_proxy
load down
client --test duplex --size 8M --conns 24 --parallel 12 || fail "duplex (auto)"
client --test halfclose --size 4M --conns 12 --parallel 6 || fail "half-close (auto)"
client --test replyclose --size 4M --conns 12 --parallel 6 || fail "reply then close (auto)"
client --test sendclose --size 4M --conns 12 --parallel 6 || fail "send then close (auto)"
unload
stop_proxy
[ "$(summary 'on the kernel path')" = "$CPUS" ] || fail "only the held connections take the kernel path"
expect 'downloads to the kernel' 0 "downloads moved to the kernel with no request boundary"
stop_backend
[ "$(backend_errors)" = 0 ] || fail "the proto backend counted errors"
echo "ok"
