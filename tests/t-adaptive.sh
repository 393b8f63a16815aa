#!/bin/bash
# Adaptive dispatch. --mode auto (the default) puts a connection's download on the kernel path
# while no more connections are open than CPUs, and carries it in userspace past that. Every
# flow in userspace starts on recv()/send() and moves to splice once it carries bulk. Every byte
# is checked by srpeer both ways; the exit counters say which mover carried what:
#  1. auto, one connection: the kernel path;
#  2. auto, more connections than CPUs held open: small messages stay on recv()/send(), with no
#     map entry and nothing spliced;
#  3. auto under the same load: 4 MiB request-response rounds move both flows to splice, and
#     the download to the kernel path at the next request (promote_download());
#  4. --mode splice: recv()/send(), then splice, at any load;
#  5. --mode bpf: the download in the kernel at any load, the upload adapts;
#  6. auto under load, every byte checked: 40 connections at once in 1 MiB rounds (downloads
#     moving to the kernel path between rounds), and the duplex, half-close and reply-then-close
#     shapes (no request boundary: none moves).
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

log "3. auto, under load: bulk moves to splice, then the download to the kernel"
start_proxy
load
client --test rr --size 4M --rounds 8 --conns 2 --parallel 2 || fail "4 MiB rr (auto, loaded)"
unload
stop_proxy
grep -Eq 'promoted to splice 2 down, 2 up, downloads to the kernel 2;' "$PROXY_LOG" ||
	fail "want both flows of both connections promoted to splice, then both downloads to" \
		"the kernel: $(grep Movers "$PROXY_LOG")"
# Round 1's reply is spliced; from round 2 on the download is in the kernel.
[ "$(summary 'spliced down')" -ge $((2 * 3 << 20)) ] || fail "too little spliced down"
[ "$(summary 'kernel down')" -ge $((2 * 7 << 20)) ] || fail "too little in the kernel down"
expect 'on the kernel path' $((CPUS + 2))
movers 0 0 $((CPUS + 2))

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
moved=$(summary 'downloads to the kernel')
log "$moved downloads moved to the kernel path between rounds"
[ "$moved" -ge 1 ] || fail "expected downloads to move to the kernel path between rounds"
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
