#!/bin/bash
# `sockredir stats` against running instances: the text view, --json (checked against the
# traffic sent), --watch, a named instance, and a clear message when there is nothing to read.
. "$(dirname "$0")/lib.sh"
setup "$@"

start_backend proto
start_proxy --mode bpf
proxy_activate
client --test up --size 8M --conns 3 || fail "uploads"
client --test down --size 4M --conns 2 || fail "downloads"
first=$PROXY_NAME

"$SOCKREDIR" stats "$first" >"$T/text.out" || fail "stats $first failed"
cat "$T/text.out"
grep -q "^$first\$" "$T/text.out" || fail "the instance name is missing"
grep -Eq 'connections +0 open, 6 accepted' "$T/text.out" || fail "want 6 accepted (with the activation)"
grep -Eq 'path +5 kernel' "$T/text.out" || fail "want 5 on the kernel path"
grep -Eq 'dispatch +down in the kernel, up by splice .*; 1 worker' "$T/text.out" ||
	fail "want the dispatch: down in the kernel, up by splice, 1 worker"

"$SOCKREDIR" stats --json >"$T/all.json" || fail "stats --json failed"
python3 - "$T/all.json" "$first" <<'PY' || fail "--json does not match the traffic"
import json, sys
doc = json.load(open(sys.argv[1]))
inst = {i["name"]: i for i in doc}[sys.argv[2]]
assert inst["accepted"] == 6 and inst["open"] == 0, inst
assert inst["kernel"] == 5 and inst["fallbacks"]["client_half_closed"] == 1, inst
assert inst["bytes"]["down"]["kernel"] >= 2 * 4 << 20, inst
assert inst["bytes"]["up"]["spliced"] >= 3 * 8 << 20, inst
assert inst["dispatch"] == {"down": "kernel", "up": "splice", "workers": 1}, inst
print("json ok:", inst["accepted"], "accepted,", inst["bytes"]["down"]["kernel"], "bytes down in the kernel")
PY

timeout 1.2 "$SOCKREDIR" stats --watch 0.3 "$first" >"$T/watch.out" || true
[ "$(grep -c "connections  *0 open, 6 accepted" "$T/watch.out")" -ge 3 ] ||
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
