#!/bin/bash
# `sockredir stats` against running instances: the text view, --json (checked against the
# traffic sent), --format=openmetrics, --watch, a named instance, and a clear message when there
# is nothing to read.
. "$(dirname "$0")/lib.sh"
setup "$@"

# OpenMetrics on stdin, through prometheus_client's strict parser where it is installed.
om_parse() {
	python3 -c 'import prometheus_client.openmetrics.parser' 2>/dev/null || return 0
	python3 -c '
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse
print("# prometheus_client parsed", len(list(parse(sys.stdin.read()))), "families")'
}

start_backend proto
# A second listener, a Unix one: its clients are spliced (fallback reason client_unix).
PROXY_ENV="-l $T/front.sock" start_proxy --mode bpf
proxy_activate
client --test up --size 8M --conns 3 || fail "uploads"
client --test down --size 4M --conns 2 || fail "downloads"
"$SRPEER" client --connect "$T/front.sock" --test down --size 1M || fail "a Unix client's download"
first=$PROXY_NAME

"$SOCKREDIR" stats "$first" >"$T/text.out" || fail "stats $first failed"
cat "$T/text.out"
grep -q "^$first\$" "$T/text.out" || fail "the instance name is missing"
grep -Eq 'connections +0 open, 7 accepted' "$T/text.out" || fail "want 7 accepted (with the activation)"
grep -Eq 'path +5 kernel \(0 with kernel upload\), 2 splice' "$T/text.out" ||
	fail "want 5 on the kernel path, 2 on splice"
grep -Eq '^  fallbacks +mode 0, client_half_closed 1, backend_refused 0, map_full 0, other 0, client_unix 1, backend_spoke_first 0$' \
	"$T/text.out" || fail "want the fallbacks: the activation (client_half_closed), the Unix client"
grep -Eq 'dispatch +down in the kernel, up in userspace .*; 1 worker' "$T/text.out" ||
	fail "want the dispatch: down in the kernel, up in userspace, 1 worker"
# Under systemd-socket-activate there is no fd store: nothing kept, restored or stored.
grep -Eq '^  fd store +0 connections kept, 0 restored, 0 closed on restore; 0 fds stored$' \
	"$T/text.out" || fail "want the fd store line, all zeros"
# The movers: their values depend on how the data path promotes flows, so only their shape.
grep -Eq '^  carried +copy [0-9]+, splice [0-9]+, kernel [0-9]+ \(closed, by fastest mover\)$' \
	"$T/text.out" || fail "want the carried line: connections by fastest mover"
grep -Eq '^  promoted +[0-9]+ down, [0-9]+ up to splice; [0-9]+ down to the kernel$' \
	"$T/text.out" || fail "want the promoted line"
grep -Eq '^  down \(b->c\) +[0-9]+ bytes in the kernel, [0-9]+ spliced, [0-9]+ copied, [0-9]+ by hand$' \
	"$T/text.out" || fail "want the bytes copied down"

"$SOCKREDIR" stats --json >"$T/all.json" || fail "stats --json failed"
python3 - "$T/all.json" "$first" <<'PY' || fail "--json does not match the traffic"
import json, sys
doc = json.load(open(sys.argv[1]))
inst = {i["name"]: i for i in doc}[sys.argv[2]]
assert inst["accepted"] == 7 and inst["open"] == 0, inst
assert inst["kernel"] == 5 and inst["splice"] == 2, inst
assert inst["fallbacks"] == {"mode": 0, "client_half_closed": 1, "backend_refused": 0,
                             "map_full": 0, "other": 0, "client_unix": 1,
                             "backend_spoke_first": 0}, inst
assert inst["bytes"]["down"]["kernel"] >= 2 * 4 << 20, inst
# Bytes in userspace: recv()/send() first, then splice once a flow carries bulk.
user = lambda d: inst["bytes"][d]["spliced"] + inst["bytes"][d]["copied"]
assert user("down") >= 1 << 20, inst
assert user("up") >= 3 * 8 << 20, inst
assert inst["dispatch"] == {"down": "kernel", "up": "splice", "workers": 1}, inst
assert inst["bytes"]["up"]["by_hand"] == 0 and inst["bytes"]["down"]["by_hand"] >= 0, inst
assert all(inst[k] == 0 for k in ("kept", "restored", "restore_closed", "store_fds")), inst
# The movers: present and numbers; their values are the data path's to decide.
isnum = lambda v: type(v) is int and v >= 0
assert all(isnum(inst["bytes"][d]["copied"]) for d in ("down", "up")), inst
assert set(inst["promoted_splice"]) == {"down", "up"}, inst
assert all(isnum(v) for v in inst["promoted_splice"].values()), inst
assert set(inst["promoted_kernel"]) == {"down"} and isnum(inst["promoted_kernel"]["down"]), inst
assert set(inst["carried"]) == {"copy", "splice", "kernel"}, inst
assert all(isnum(v) for v in inst["carried"].values()), inst
print("json ok:", inst["accepted"], "accepted,", inst["bytes"]["down"]["kernel"], "bytes down in the kernel")
PY

"$SOCKREDIR" stats --format=json "$first" | cmp -s - <("$SOCKREDIR" stats --json "$first") ||
	fail "--format=json and --json differ"
grep -Eq 'up \(c->b\) +[0-9]+ bytes in the kernel, [0-9]+ spliced, [0-9]+ copied, 0 by hand' \
	"$T/text.out" ||
	fail "the text view lacks the bytes moved up by hand"

"$SOCKREDIR" stats --format=openmetrics "$first" >"$T/om.out" || fail "--format=openmetrics failed"
head -n 40 "$T/om.out"
[ "$(tail -n 1 "$T/om.out")" = "# EOF" ] && [ "$(grep -c '^# EOF$' "$T/om.out")" = 1 ] ||
	fail "OpenMetrics must end with one # EOF"
for line in "sockredir_connections_accepted_total{name=\"$first\"} 7" \
	"sockredir_info{name=\"$first\",mode=\"bpf\",dispatch=\"kernel_download\"} 1" \
	"sockredir_fallbacks_total{name=\"$first\",reason=\"client_half_closed\"} 1" \
	"sockredir_fallbacks_total{name=\"$first\",reason=\"client_unix\"} 1" \
	"sockredir_connections_kept{name=\"$first\"} 0" \
	"sockredir_connections_restored_total{name=\"$first\"} 0" \
	"sockredir_connections_restore_closed_total{name=\"$first\"} 0" \
	"sockredir_fdstore_fds{name=\"$first\"} 0"; do
	grep -qxF "$line" "$T/om.out" || fail "OpenMetrics lacks: $line"
done
series="sockredir_bytes_total{name=\"$first\",direction=\"down\",mover=\"kernel\"}"
down=$(grep -F "$series " "$T/om.out" | cut -d' ' -f2)
[ "${down:-0}" -ge $((2 * 4 << 20)) ] || fail "OpenMetrics: kernel bytes down $down, want >= 8 MiB"
# The movers' series, each a number: copy and splice, and on the kernel path the kernel too.
for series in "sockredir_bytes_total{name=\"$first\",direction=\"down\",mover=\"copy\"}" \
	"sockredir_bytes_total{name=\"$first\",direction=\"up\",mover=\"copy\"}" \
	"sockredir_promotions_total{name=\"$first\",direction=\"down\",mover=\"splice\"}" \
	"sockredir_promotions_total{name=\"$first\",direction=\"up\",mover=\"splice\"}" \
	"sockredir_promotions_total{name=\"$first\",direction=\"down\",mover=\"kernel\"}" \
	"sockredir_connections_carried_total{name=\"$first\",mover=\"copy\"}" \
	"sockredir_connections_carried_total{name=\"$first\",mover=\"splice\"}" \
	"sockredir_connections_carried_total{name=\"$first\",mover=\"kernel\"}"; do
	v=$(grep -F "$series " "$T/om.out" | cut -d' ' -f2)
	[[ $v =~ ^[0-9]+$ ]] || fail "OpenMetrics: $series is '$v', want a number"
done
! grep -q '^sockredir_promotions_total{.*direction="up",mover="kernel"' "$T/om.out" ||
	fail "OpenMetrics: an upload promoted to the kernel, which never happens"
om_parse <"$T/om.out" || fail "prometheus_client rejects the OpenMetrics output"
# Two instances, one on the kernel path and one splice only: one exposition, each family once,
# a name label on every sample, and the kernel path's families only for the first.
first_pid=$PROXY_PID first_port=$PORT
PORT=$((PORT + 1))
start_proxy --mode splice
proxy_activate
second=$PROXY_NAME
"$SOCKREDIR" stats --format=openmetrics "$first" "$second" >"$T/om2.out" ||
	fail "--format=openmetrics with two instances failed"
[ "$(tail -n 1 "$T/om2.out")" = "# EOF" ] && [ "$(grep -c '^# EOF$' "$T/om2.out")" = 1 ] ||
	fail "two instances: want one # EOF, at the end"
dup=$(grep '^# TYPE ' "$T/om2.out" | sort | uniq -d)
[ -z "$dup" ] || fail "two instances: a family written twice: $dup"
grep -qxF "sockredir_info{name=\"$second\",mode=\"splice\",dispatch=\"splice\"} 1" "$T/om2.out" ||
	fail "two instances: no info sample for the splice-only one"
carried="sockredir_connections_carried_total{name=\"$second\""
grep -q "^$carried,mover=\"copy\"} [0-9]" "$T/om2.out" &&
	! grep -q "^$carried,mover=\"kernel\"}" "$T/om2.out" ||
	fail "two instances: the splice-only one has carried series, but none for the kernel"
! grep -q "^sockredir_promotions_total{name=\"$second\",.*mover=\"kernel\"}" "$T/om2.out" ||
	fail "two instances: the splice-only one has a promotion series for the kernel"
grep -q "^sockredir_kernel_drain_checks_total{name=\"$first\"} " "$T/om2.out" &&
	! grep -q "^sockredir_kernel_drain_checks_total{name=\"$second\"}" "$T/om2.out" ||
	fail "two instances: the kernel path's families must be the first one's only"
[ "$(grep -v '^#' "$T/om2.out" | grep -vc '{name="')" = 0 ] ||
	fail "two instances: a sample without the name label"
om_parse <"$T/om2.out" || fail "prometheus_client rejects the OpenMetrics output of two instances"
stop_proxy
PROXY_PID=$first_pid PROXY_NAME=$first PORT=$first_port

rc=0
"$SOCKREDIR" stats --format=xml >"$T/badfmt.out" 2>&1 || rc=$?
[ $rc = 2 ] && grep -q "Invalid --format 'xml'" "$T/badfmt.out" ||
	fail "a bad --format must exit 2 with a clear message: $rc $(cat "$T/badfmt.out")"

timeout 1.2 "$SOCKREDIR" stats --watch 0.3 "$first" >"$T/watch.out" || true
[ "$(grep -c "connections  *0 open, 7 accepted" "$T/watch.out")" -ge 3 ] ||
	fail "--watch did not print repeatedly"

# Nothing to read: a clear message and a failure status.
stop_proxy
rc=0
"$SOCKREDIR" stats "$first" >"$T/none.out" 2>&1 || rc=$?
[ $rc != 0 ] && grep -q "No readable instance '$first'" "$T/none.out" ||
	fail "a missing instance must fail with a clear message: $(cat "$T/none.out")"
rc=0
"$SOCKREDIR" stats --pin-path /sys/fs/bpf/sockredir/nosuch >"$T/none2.out" 2>&1 || rc=$?
[ $rc != 0 ] && grep -q 'Failed to read the pins in /sys/fs/bpf/sockredir/nosuch' "$T/none2.out" ||
	fail "a missing --pin-path must fail with a clear message"
rc=0
"$SOCKREDIR" stats --watch 0 >"$T/bad.out" 2>&1 || rc=$?
[ $rc = 2 ] || fail "a bad --watch must exit 2"
echo "ok"
