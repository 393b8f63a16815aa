#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Self-test of the test peer: every srpeer client test against the matching backend directly on
# a Unix socket (no proxy), plus negative checks that a flipped byte, a missing banner, a silent
# peer and bad usage are all caught. The end-to-end tests trust srpeer's verdicts; this is what
# earns that trust.
#
#   tests/srpeer-selftest.sh           (SRPEER=path overrides .output/srpeer)
#
# Exits non-zero if any check fails. Needs bash >= 5; uses curl and socat when present.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$ROOT/tests/srpeer.c
SRPEER=${SRPEER:-$ROOT/.output/srpeer}
CFLAGS=(-std=gnu11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -pthread)

if [[ ! -x $SRPEER || $SRC -nt $SRPEER ]]; then
	echo "building $SRPEER"
	mkdir -p "$(dirname "$SRPEER")"
	gcc "${CFLAGS[@]}" -o "$SRPEER" "$SRC"
fi

TMP=$(mktemp -d /tmp/srpeer-selftest.XXXXXX)
declare -A BE_PID BE_LOG BE_ADDR
BG_PIDS=()
PASSED=0
FAILED=0
T0=$EPOCHREALTIME

cleanup() {
	local pid
	for pid in "${BG_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

elapsed() { # START -> seconds since START, 2 decimals
	awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'
}

pass() {
	PASSED=$((PASSED + 1))
	printf 'ok    %-58s %6s s\n' "$1" "$2"
}

fail() {
	FAILED=$((FAILED + 1))
	printf 'FAIL  %s\n' "$1"
	shift
	local f
	for f in "$@"; do
		[[ -s $f ]] && sed 's/^/      | /' "$f" | head -20
	done
	return 0
}

# start_backend NAME MODE LISTEN [backend options...]: LISTEN "-" means $TMP/NAME.sock.
start_backend() {
	local name=$1 mode=$2 listen=$3 i
	shift 3
	[[ $listen == - ]] && listen=$TMP/$name.sock
	BE_LOG[$name]=$TMP/$name.log
	"$SRPEER" backend --listen "$listen" --mode "$mode" --ready-file "$TMP/$name.ready" "$@" \
		2>"${BE_LOG[$name]}" &
	BE_PID[$name]=$!
	BG_PIDS+=("$!")
	for ((i = 0; i < 100; i++)); do
		if [[ -s $TMP/$name.ready ]]; then
			BE_ADDR[$name]=$(<"$TMP/$name.ready")
			return 0
		fi
		kill -0 "${BE_PID[$name]}" 2>/dev/null || break
		sleep 0.05
	done
	fail "backend $name ($mode on $listen) did not become ready" "${BE_LOG[$name]}"
	return 1
}

# stop_backend NAME [ERRORS]: SIGTERM; it must exit 0 and report ERRORS errors ("any": unchecked).
stop_backend() {
	local name=$1 want=${2:-0} rc=0 summary
	local re='^srpeer backend: [0-9]+ connections, [0-9]+ errors$'
	kill -TERM "${BE_PID[$name]}"
	wait "${BE_PID[$name]}" || rc=$?
	summary=$(grep -E "$re" "${BE_LOG[$name]}" || true)
	if ((rc != 0)) || [[ -z $summary ]]; then
		fail "backend $name: exit $rc, no summary" "${BE_LOG[$name]}"
	elif [[ $want != any && $summary != *" $want errors" ]]; then
		fail "backend $name: expected $want errors, got: $summary" "${BE_LOG[$name]}"
	elif [[ -e $TMP/$name.sock || -e $TMP/$name.ready ]]; then
		fail "backend $name left its socket or ready file behind"
	else
		pass "backend $name: ${summary#srpeer backend: }" "-"
	fi
}

# client_ok DESC ADDR CLIENT-ARGS...: the client must succeed and print its ok line.
client_ok() {
	local desc=$1 addr=$2 t=$EPOCHREALTIME rc=0
	shift 2
	"$SRPEER" client --connect "$addr" "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
	if ((rc == 0)) && grep -q '^srpeer: ok test=' "$TMP/out" && [[ ! -s $TMP/err ]]; then
		pass "$desc" "$(elapsed "$t")"
		sed 's/^/      /' "$TMP/out"
	else
		fail "$desc: exit $rc" "$TMP/out" "$TMP/err"
	fi
}

# client_fails DESC ADDR PATTERN CLIENT-ARGS...: the client must exit 1, its stderr matching
# the extended regex PATTERN.
client_fails() {
	local desc=$1 addr=$2 pattern=$3 t=$EPOCHREALTIME rc=0
	shift 3
	"$SRPEER" client --connect "$addr" "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
	if ((rc == 1)) && grep -Eq -- "$pattern" "$TMP/err"; then
		pass "$desc" "$(elapsed "$t")"
		sed 's/^/      /' "$TMP/err"
	else
		fail "$desc: exit $rc, stderr does not match /$pattern/" "$TMP/out" "$TMP/err"
	fi
}

# usage_fails DESC ARGS...: bad usage must exit 2.
usage_fails() {
	local desc=$1 rc=0
	shift
	"$SRPEER" "$@" >/dev/null 2>"$TMP/err" || rc=$?
	if ((rc == 2)); then
		pass "usage: $desc" "-"
	else
		fail "usage: $desc: exit $rc, expected 2" "$TMP/err"
	fi
}

EXP_GOT='expected 0x[0-9a-f]{2}, got 0x[0-9a-f]{2}'

echo "== echo backend"
start_backend echo echo -
A=${BE_ADDR[echo]}
client_ok "rr 1000 rounds x 1 B" "$A" --test rr --size 1 --rounds 1000
client_ok "rr 100 rounds x 64 KiB" "$A" --test rr --size 64K --rounds 100
client_ok "rr 256 MiB in one round" "$A" --test rr --size 256M
client_ok "rr 64 conns x 4 threads x 3 rounds x 1 MiB" "$A" --test rr --conns 64 --parallel 4 \
	--size 1M --rounds 3
client_ok "rr 1000 conns at once (--barrier), 2 x 16 KiB" "$A" --test rr --conns 1000 --barrier \
	--size 16K --rounds 2
stop_backend echo 0
# Negative checks get their own backend: a failing client may close mid-stream and reset it.
start_backend echo-neg echo -
A=${BE_ADDR[echo-neg]}
client_fails "rr detects a flipped byte at offset 100000" "$A" \
	"FAIL conn=0 test=rr: round 1/1: echo data mismatch \(stream offset 100000, $EXP_GOT\)" \
	--test rr --conns 3 --size 1M --corrupt-at 100000
if grep -q '^srpeer: 1 of 3 connections failed$' "$TMP/err"; then
	pass "  ... and only conn 0 failed" "-"
else
	fail "corrupt rr: expected '1 of 3 connections failed'" "$TMP/err"
fi
client_fails "connect-only: an open connection is not an EOF" "$A" \
	'still open after 300 ms, expected EOF or reset' --test connect-only --expect-eof-within 300
client_fails "banner: no banner at all (echo backend)" "$A" \
	'banner not first/whole: echoed payload arrived after 0 of 4096 banner bytes' --test banner
stop_backend echo-neg any

echo "== proto backend"
start_backend proto proto -
A=${BE_ADDR[proto]}
client_ok "up 64 MiB" "$A" --test up --size 64M
client_ok "down 64 MiB" "$A" --test down --size 64M
client_ok "halfclose 50 x 1 MiB" "$A" --test halfclose --conns 50 --parallel 4 --size 1M
client_ok "replyclose 200 conns, reply sizes 1 .. 1 MiB" "$A" --test replyclose --conns 200 \
	--parallel 8 --size 1M
client_ok "sendclose 200 x 64 KiB" "$A" --test sendclose --conns 200 --parallel 8 --size 64K
client_ok "sendclose 20 x 1 MiB (more than one send)" "$A" --test sendclose --conns 20 --size 1M
client_ok "up, down, halfclose of 0 bytes" "$A" --test up --size 0
client_ok "  down 0" "$A" --test down --size 0
client_ok "  halfclose 0" "$A" --test halfclose --size 0
client_ok "down 1000 conns at once (--barrier), 16 KiB each" "$A" --test down --conns 1000 \
	--barrier --size 16K
client_fails "up: the backend detects a flipped byte at offset 12345" "$A" \
	'FAIL conn=0 test=up: backend reported payload mismatch \(stream offset 12345\)' \
	--test up --conns 2 --size 1M --corrupt-at 12345
if grep -Eq "conn [0-9]+: proto: payload mismatch \(stream offset 12345, $EXP_GOT\)" \
	"${BE_LOG[proto]}"; then
	pass "  ... and the backend says where" "-"
else
	fail "corrupt up: backend did not report the mismatch" "${BE_LOG[proto]}"
fi
client_fails "sendclose: a flipped last byte" "$A" \
	'backend reported payload mismatch \(stream offset 4095\)' \
	--test sendclose --size 4096 --corrupt-at 4095
client_ok "duplex 60 conns x 4 MiB each way, unpaced, every half-close variant" "$A" \
	--test duplex --conns 60 --parallel 12 --size 4M
t=$EPOCHREALTIME
client_ok "duplex 120 conns at once (--barrier), 256 KiB each way over 1 s" "$A" \
	--test duplex --conns 120 --barrier --size 256K --duration 1000
secs=$(grep -o 'seconds=[0-9.]*' "$TMP/out" | cut -d= -f2)
if [[ -n $secs ]] && awk -v s="$secs" 'BEGIN { exit !(s >= 0.95 && s < 5) }'; then
	pass "  ... and the pace held it to ${secs} s" "-"
else
	fail "duplex --duration 1000: took '${secs}' s, want about 1" "$TMP/out"
fi
client_fails "duplex: the backend detects a flipped upload byte at offset 5000" "$A" \
	'FAIL conn=0 test=duplex: backend reported payload mismatch \(stream offset 5000\)' \
	--test duplex --conns 6 --barrier --size 1M --duration 300 --corrupt-at 5000
if grep -q '^srpeer: failed by kind: other 0, reset 0, early EOF 0, data 1, timeout 0$' \
	"$TMP/err"; then
	pass "  ... and counts it as data" "-"
else
	fail "duplex corrupt: expected one failure of kind data" "$TMP/err"
fi
stop_backend proto 3

# A backend that dies mid-transfer: every connection fails, as a reset or an early EOF (the
# kinds a proxy that loses connections shows), never as bad data.
start_backend proto-kill proto -
(sleep 0.5 && kill -KILL "${BE_PID[proto-kill]}") &
BG_PIDS+=("$!")
client_fails "duplex: the backend is killed after 0.5 s of 3 s" "${BE_ADDR[proto-kill]}" \
	'^srpeer: 12 of 12 connections failed$' \
	--test duplex --conns 12 --barrier --size 1M --duration 3000 --timeout 10
if grep -Eq '^srpeer: failed by kind: other 0, reset [0-9]+, early EOF [0-9]+, data 0, timeout 0$' \
	"$TMP/err"; then
	pass "  ... each as a reset or an early EOF: $(grep -o 'reset [0-9]*, early EOF [0-9]*' "$TMP/err")" "-"
else
	fail "duplex with a killed backend: want only resets and early EOFs" "$TMP/err"
fi
wait "${BE_PID[proto-kill]}" 2>/dev/null || true
rm -f "$TMP/proto-kill.sock" "$TMP/proto-kill.ready"

echo "== banner backend"
start_backend banner banner -
A=${BE_ADDR[banner]}
client_ok "banner 200 conns x 3 rounds x 64 KiB" "$A" --test banner --conns 200 --parallel 8 \
	--size 64K --rounds 3
client_ok "banner 1 MiB sent at once (banner must still come first)" "$A" --test banner --size 1M
stop_backend banner 0
start_backend banner-slow banner - --banner-delay-us 20000 --banner-size 100000
client_ok "banner of 100000 B after 20 ms, 50 conns at once" "${BE_ADDR[banner-slow]}" \
	--test banner --banner-size 100000 --conns 50 --barrier --size 4K --rounds 2
client_fails "banner: a wrong --banner-size is explained" "${BE_ADDR[banner-slow]}" \
	'banner longer than the 4096 bytes expected' --test banner --size 4K
stop_backend banner-slow any

echo "== sink-slow backend"
start_backend sink sink-slow -
client_ok "up 4 MiB into a slow reader" "${BE_ADDR[sink]}" --test up --size 4M
stop_backend sink 0
start_backend sink-neg sink-slow -
t=$EPOCHREALTIME
client_fails "rr against a silent peer times out (--timeout 1)" "${BE_ADDR[sink-neg]}" \
	'timed out \(--timeout 1 s\): sent 65536 of 65536 bytes, received 0 of 65536 bytes' \
	--test rr --timeout 1 --conns 2 --parallel 2
stop_backend sink-neg any

echo "== other addresses"
start_backend tcp4 echo 127.0.0.1:0
client_ok "rr over TCP ${BE_ADDR[tcp4]}" "${BE_ADDR[tcp4]}" --test rr --conns 20 --parallel 4 \
	--size 256K --rounds 2
stop_backend tcp4 0
if [[ -e /proc/net/if_inet6 ]] && start_backend tcp6 proto '[::1]:0'; then
	client_ok "halfclose over TCP ${BE_ADDR[tcp6]}" "${BE_ADDR[tcp6]}" --test halfclose \
		--conns 20 --parallel 4 --size 256K
	stop_backend tcp6 0
fi
start_backend abstract proto "@srpeer-selftest-$$"
client_ok "replyclose over ${BE_ADDR[abstract]}" "${BE_ADDR[abstract]}" --test replyclose \
	--conns 50 --parallel 4 --size 256K
stop_backend abstract 0
start_backend unixprefix echo "unix:$TMP/unixprefix.sock"
client_ok "rr over unix:PATH" "unix:$TMP/unixprefix.sock" --test rr
stop_backend unixprefix 0

echo "== connect-only, EOF when the backend goes away"
start_backend victim echo -
(sleep 0.3 && kill -TERM "${BE_PID[victim]}") &
BG_PIDS+=("$!")
client_ok "connect-only sees EOF within 3 s, 5 conns at once" "${BE_ADDR[victim]}" \
	--test connect-only --expect-eof-within 3000 --conns 5 --barrier
wait "${BE_PID[victim]}" || true
client_fails "connecting to a missing socket fails" "$TMP/victim.sock" \
	"connect to $TMP/victim.sock: No such file or directory" --test rr

echo "== http backend"
if command -v curl >/dev/null; then
	start_backend http http -
	t=$EPOCHREALTIME
	body=$(curl -sS --max-time 5 --unix-socket "$TMP/http.sock" 'http://demo/selftest?x=1' ||
		true)
	want_re='^Hello from the sockredir demo backend \(pid [0-9]+, request #1\)'
	want_re+=$'\n''GET /selftest\?x=1 HTTP/1\.1$'
	if [[ $body =~ $want_re ]]; then
		pass "http: curl gets the greeting and its request line" "$(elapsed "$t")"
	else
		fail "http: unexpected body: $body"
	fi
	stop_backend http 0
else
	echo "skip  http (no curl)"
fi

echo "== notify-listen"
if command -v socat >/dev/null; then
	t=$EPOCHREALTIME
	"$SRPEER" notify-listen "$TMP/notify.sock" --timeout 5 >"$TMP/notify.out" \
		2>"$TMP/notify.err" &
	npid=$!
	BG_PIDS+=("$npid")
	for ((i = 0; i < 100; i++)); do
		[[ -S $TMP/notify.sock ]] && break
		sleep 0.02
	done
	printf 'READY=1\nSTATUS=up\n' | socat -u - "UNIX-SENDTO:$TMP/notify.sock"
	printf 'STOPPING=1\n' | socat -u - "UNIX-SENDTO:$TMP/notify.sock"
	rc=0
	wait $npid || rc=$?
	# Each line names the sender (SO_PASSCRED): socat's pid, one per datagram.
	re=$'^pid=[1-9][0-9]* READY=1 STATUS=up\npid=[1-9][0-9]* STOPPING=1$'
	if ((rc == 0)) && [[ $(<"$TMP/notify.out") =~ $re ]]; then
		pass "notify-listen: READY=1 then STOPPING=1 with their pids, exit 0" "$(elapsed "$t")"
	else
		fail "notify-listen: exit $rc" "$TMP/notify.out" "$TMP/notify.err"
	fi
	rc=0
	"$SRPEER" notify-listen "@srpeer-selftest-notify-$$" --timeout 1 >/dev/null 2>&1 || rc=$?
	if ((rc == 3)); then
		pass "notify-listen: no READY=1 within 1 s, exit 3" "-"
	else
		fail "notify-listen without READY=1: exit $rc, expected 3"
	fi
else
	echo "skip  notify-listen (no socat)"
fi

echo "== usage"
usage_fails "no arguments"
usage_fails "unknown test" client --connect /x --test nope
usage_fails "bad size" client --connect /x --test rr --size 12Q
usage_fails "bad address" client --connect 1.2.3:4 --test rr
usage_fails "--barrier with fewer threads" client --connect /x --test rr --conns 4 --parallel 2 \
	--barrier
usage_fails "--hold without --barrier" client --connect /x --test rr --hold /tmp/x
usage_fails "--expect-eof-within outside connect-only" client --connect /x --test rr \
	--expect-eof-within 5
usage_fails "--duration outside duplex" client --connect /x --test rr --duration 5
usage_fails "unknown mode" backend --listen /x --mode nope

echo
echo "srpeer selftest: $PASSED passed, $FAILED failed in $(elapsed "$T0") s"
((FAILED == 0))
