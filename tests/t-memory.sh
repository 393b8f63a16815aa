#!/bin/bash
# Kernel memory stays bounded per connection when a client uploads to a slow backend (one that
# reads 16 KiB every 100 µs): a 1 GiB upload, then 50 at once, in the default layout (upload
# spliced, so TCP flow control holds the client back) and in --mode splice. Every byte is
# checked by the backend. --kernel-upload has no such bound (README, "Known limits"), which is
# why it is refused without --allow-unbounded-upload; its growth is measured and reported here.
. "$(dirname "$0")/lib.sh"
setup "$@"

start_backend sink-slow
SIZE=${MEMORY_TEST_SIZE:-1G}
PER_CONN_MIB=16	 # allowed growth per connection: TCP receive buffer + Unix buffers + a pipe
CONST_MIB=96	 # allowed growth independent of connections: page cache, slab, noise

mem_kib() { awk '/^MemAvailable:/ {print $2}' /proc/meminfo; }
# Memory charged to TCP sockets, system-wide, in KiB (sockstat counts 4 KiB pages).
tcp_kib() { awk '/^TCP:/ {for (i = 1; i < NF; i++) if ($i == "mem") print $(i + 1) * 4}' /proc/net/sockstat; }

# measure N [sockredir options]: N uploads of SIZE at once; prints the largest drop of
# MemAvailable during the run, in MiB, and logs the peak of TCP socket memory.
measure() {
	local n=$1 base min v tcp tcp_max=0
	shift
	start_proxy "$@"
	proxy_activate
	sleep 0.5
	base=$(mem_kib)
	min=$base
	client --test up --size "$SIZE" --conns "$n" --parallel "$n" --timeout 300 >"$T/client.out" 2>&1 &
	local cpid=$!
	while kill -0 $cpid 2>/dev/null; do
		v=$(mem_kib)
		[ "$v" -lt "$min" ] && min=$v
		tcp=$(tcp_kib)
		[ "$tcp" -gt "$tcp_max" ] && tcp_max=$tcp
		sleep 0.1
	done
	log "$* x$n: TCP socket memory peaked at $((tcp_max / 1024)) MiB" >&2
	wait $cpid || fail "uploads failed ($*): $(cat "$T/client.out")"
	stop_proxy
	echo $(((base - min) / 1024))
}

# bounded N MODE...: N uploads stay within N * PER_CONN_MIB + CONST_MIB. MemAvailable is the
# whole machine's, so another process can make one run look worse: a run over the bound is
# repeated once, and both must be over it to fail. (An unbounded mode is over it every time.)
bounded() {
	local n=$1 got limit
	shift
	limit=$((n * PER_CONN_MIB + CONST_MIB))
	for attempt in 1 2; do
		got=$(measure "$n" "$@")
		log "$*: $n x $SIZE at once: MemAvailable fell by at most $got MiB (bound $limit)"
		[ "$got" -le "$limit" ] && return 0
	done
	fail "$*: $n uploads took $got MiB, over $limit twice"
}

for m in "--mode auto" "--mode bpf" "--mode splice"; do
	bounded 1 $m
	bounded 50 $m
done

unbounded=$(measure 1 --mode bpf --kernel-upload --allow-unbounded-upload)
log "--kernel-upload --allow-unbounded-upload: one $SIZE upload: MemAvailable fell by $unbounded MiB (no bound: the reason it must be asked for)"

stop_backend
[ "$(backend_errors)" = 0 ] || fail "the backend counted errors (a byte was wrong or missing)"
echo "ok"
