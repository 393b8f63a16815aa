#!/bin/bash
# While sockredir runs, bpftool lists its program and maps under their names and the pins exist;
# after SIGTERM the pins are gone and the exit status is 0.
. "$(dirname "$0")/lib.sh"
need_cmd bpftool
setup "$@"

start_backend echo
start_proxy --mode bpf
proxy_activate
client --test rr --size 1K --rounds 10 || fail "round trips"

pins=/sys/fs/bpf/sockredir/$PROXY_NAME
for obj in sr_verdict sr_targets sr_peers sr_kstats sr_proxy_stats sr_redirect sr_drain_probe; do
	[ -e "$pins/$obj" ] || fail "pin $pins/$obj missing"
done
# has PATTERN COMMAND...: COMMAND's output matches PATTERN (no pipe, so no SIGPIPE).
has() {
	local pattern=$1
	shift
	"$@" >"$T/out" 2>&1 || fail "'$*' failed: $(cat "$T/out")"
	grep -q -- "$pattern" "$T/out"
}
has 'sk_skb  *name sr_redirect' bpftool prog show pinned "$pins/sr_redirect" ||
	fail "bpftool does not show sr_redirect as an sk_skb program"
has 'sched_cls  *name sr_drain_probe' bpftool prog show pinned "$pins/sr_drain_probe" ||
	fail "bpftool does not show sr_drain_probe"
has 'name sr_redirect' bpftool prog show name sr_redirect || fail "bpftool prog show name sr_redirect"
for m in sr_verdict:sockhash sr_targets:sockhash sr_peers:hash sr_kstats:percpu_array sr_proxy_stats:array; do
	has "${m#*:}  *name ${m%%:*} " bpftool map show pinned "$pins/${m%%:*}" ||
		fail "bpftool does not show map ${m%%:*} as ${m#*:}"
done
# The counters are BTF-typed: bpftool prints them by field name.
has '"accepted": [1-9]' bpftool map dump pinned "$pins/sr_proxy_stats" ||
	fail "sr_proxy_stats does not count the accepted connections"
has '"bytes"' bpftool map dump pinned "$pins/sr_kstats" || fail "sr_kstats not readable"
stop_proxy
[ ! -e "$pins" ] || fail "pins still there after exit"
echo "ok"
