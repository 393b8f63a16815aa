#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Routing and `systemctl reload` under a real systemd (252, PID 1 in a container), with the
# shipped units exactly as `make install` puts them plus only /etc/sockredir/NAME.conf and the
# listen drop-in. Clients run outside the container and check every byte.
#
# - Routing by Host: route-host a.example and b.example, and a default backend, each an srpeer
#   http backend whose reply names its pid and counts its requests, so a reply says which
#   backend answered; curl with --resolve (a Host: with the port) and with -H Host:.
# - `systemctl reload` with 100 connections open (a Python client here, an echo on each before
#   and after): the config moves the default route from one backend to another. The 100 stay on
#   the first and keep echoing; the next connection, opened as soon as `systemctl reload`
#   returns, lands on the second, with no retry.
# - A bad config (`mode = fast`, then an unknown key): `systemctl reload` fails, the unit's
#   journal has the error with file and line at priority err, the service stays active with the
#   same pid, and the old config stays in force.
# - Journal priorities: a backend the sandbox hides (a warning at start), a connect failure (a
#   warning), a backend not there yet (a notice) and the start line (info) carry those
#   priorities, and no "<N>" prefix shows up as text.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/systemd-lib.sh"
sd_setup "$@"
need_cmd curl ss

R=8101 # instance r: Host routing and the reloads
W=8102 # instance warn: the journal priorities

# --- The backends: http ones for the routes, echo ones for the default route of the reloads.
sd_backend be-a /run/a/a.sock http
sd_backend be-b /run/b/b.sock http
sd_backend be-d /run/d/d.sock http
sd_backend be-e1 /run/e1/e1.sock echo
sd_backend be-e2 /run/e2/e2.sock echo
declare -A BE_PID NREQ
for b in a b d; do
	BE_PID[$b]=$(sd_main_pid "be-$b.service")
	[ "${BE_PID[$b]}" -gt 0 ] || fail "no pid for be-$b.service"
	NREQ[$b]=0
done

# which_backend PID: the name of the http backend with that pid, for messages.
which_backend() {
	local b
	for b in a b d; do [ "${BE_PID[$b]}" = "$1" ] && echo "be-$b" && return; done
	echo "pid $1 (no http backend of this test)"
}

# http_check BACKEND PATH CURL-ARGS... URL: one request with curl, and the whole reply (status
# line, headers and body) compared byte for byte with what srpeer's http backend BACKEND sends
# for its next request: its pid, its request count, the request line.
http_check() {
	local be=$1 path=$2 body got_pid
	shift 2
	NREQ[$be]=$((NREQ[$be] + 1))
	body=$(printf 'Hello from the sockredir demo backend (pid %s, request #%s)\nGET %s HTTP/1.1' \
		"${BE_PID[$be]}" "${NREQ[$be]}" "$path")
	body+=$'\n'
	printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
		"${#body}" "$body" >"$T/http.want"
	rm -f "$T/http.got"
	curl -sS --max-time 15 -i -o "$T/http.got" "$@" 2>"$T/curl.err" ||
		fail "curl $* (for be-$be): $(cat "$T/curl.err")"
	if ! cmp -s "$T/http.want" "$T/http.got"; then
		got_pid=$(grep -ao 'backend (pid [0-9]*' "$T/http.got" | grep -o '[0-9]*$' || true)
		fail "curl $*: answered by $(which_backend "${got_pid:-0}"), want be-$be; got:
$(cat -v "$T/http.got")
want:
$(cat -v "$T/http.want")"
	fi
}

# check_all_kernel NAME: the instance took the kernel path as dispatched (sd_kernel_served), and
# every peek found its Host.
check_all_kernel() {
	local j
	j=$(sd_stats "$1") || fail "sockredir stats --json $1 failed inside the container"
	log "stats $1: $j"
	sd_kernel_served "$j" 1 || fail "$1: did not take the kernel path as dispatched: $j"
	[ "$(sd_stat_field "$j" peek_failed)" = 0 ] || fail "$1: peeks failed: $j"
}

# --- Instance r: routing by Host, default route to be-d.
conf_r() { # DEFAULT-BACKEND [more lines...]
	local d=$1
	shift
	{
		printf '# sockredir@r\nroute-host = a.example=/run/a/a.sock\n'
		printf 'route-host = b.example=/run/b/b.sock\nbackend = %s\n' "$d"
		[ $# = 0 ] || printf '%s\n' "$@"
	} | ct_write /etc/sockredir/r.conf 0644
}
conf_r /run/d/d.sock
sd_instance r $R

# curl --resolve sends "Host: a.example:8101": the port is not part of the name.
http_check a /a1 --resolve "a.example:$R:127.0.0.1" "http://a.example:$R/a1"
http_check b /b1 --resolve "b.example:$R:127.0.0.1" "http://b.example:$R/b1"
http_check a /a2 -H 'Host: a.example' "http://127.0.0.1:$R/a2"
http_check b /b2 -H 'Host: B.Example' "http://127.0.0.1:$R/b2"
# No route for the name: the default route.
http_check d /d1 -H 'Host: c.example' "http://127.0.0.1:$R/d1"
http_check d /d2 --resolve "a.example.org:$R:127.0.0.1" "http://a.example.org:$R/d2"
http_check d /d3 "http://127.0.0.1:$R/d3"
check_all_kernel r
log "routing by Host: a.example, b.example and the default route answered as configured"

# --- Reload to the echo backend e1 as the default route (the routes stay).
conf_r /run/e1/e1.sock
ct_systemctl reload sockredir@r.service || fail "systemctl reload sockredir@r.service failed"
http_check a /a3 -H 'Host: a.example' "http://127.0.0.1:$R/a3"
R_PID=$(sd_main_pid sockredir@r.service)

# --- 100 connections across a reload that moves the default route from e1 to e2. The client is
# driven line by line: "open N": N new connections, each sends an HTTP head for a name without
# a route (so the default route) followed by its own bytes and gets all of it back; "echo": 64 KiB
# more on every open connection; "close": close them all. It answers "ok" or exits with why.
cat >"$T/holder.py" <<'PY'
import socket, sys

port = int(sys.argv[1])
conns = []

def echo(s, data):
    s.sendall(data)
    got = bytearray()
    while len(got) < len(data):
        c = s.recv(min(65536, len(data) - len(got)))
        if not c:
            raise SystemExit(f"connection {conns.index(s) if s in conns else 'new'}: EOF after {len(got)} of {len(data)} bytes")
        got += c
    if got != data:
        bad = next(i for i in range(len(data)) if got[i] != data[i])
        raise SystemExit(f"echo mismatch at byte {bad}")

for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "open":
        for _ in range(int(cmd[1])):
            i = len(conns)
            s = socket.create_connection(("127.0.0.1", port), timeout=20)
            conns.append(s)
            echo(s, f"GET /conn-{i} HTTP/1.1\r\nHost: c.example\r\n\r\n".encode() + bytes([i % 256]) * 4096)
    elif cmd[0] == "echo":
        for i, s in enumerate(conns):
            echo(s, bytes([(i * 7 + 1) % 256]) * 65536)
    elif cmd[0] == "close":
        for s in conns:
            s.close()
        conns = []
    else:
        raise SystemExit(f"unknown command {cmd}")
    print("ok", flush=True)
PY
coproc HOLDER { exec python3 "$T/holder.py" $R 2>"$T/holder.err"; }
BG_PIDS+=("$HOLDER_PID")
HOLDER_IN=${HOLDER[1]}
HOLDER_OUT=${HOLDER[0]}
hold() {
	local reply=""
	echo "$*" >&"$HOLDER_IN" || fail "the Python client is gone: $(cat "$T/holder.err")"
	read -r -t 60 -u "$HOLDER_OUT" reply || true
	[ "$reply" = ok ] || fail "Python client, '$*': ${reply:-no answer within 60s}: $(cat "$T/holder.err")"
}
# conns_are E1 E2: the connections e1 and e2 hold now.
conns_are() {
	local e1 e2
	e1=$(sd_unix_conns sockredir@r.service /run/e1/e1.sock)
	e2=$(sd_unix_conns sockredir@r.service /run/e2/e2.sock)
	[ "$e1" = "$1" ] && [ "$e2" = "$2" ] || {
		CONNS_SEEN="e1 $e1, e2 $e2"
		return 1
	}
}
expect_conns() { # E1 E2 WHAT
	conns_are "$1" "$2" || fail "$3: the backends hold $CONNS_SEEN connections, want e1 $1, e2 $2"
}
conns_fail() { fail "$* (the backends hold $CONNS_SEEN)"; }

hold open 100
expect_conns 100 0 "100 connections on the default route e1"
conf_r /run/e2/e2.sock
start=$EPOCHREALTIME
ct_systemctl reload sockredir@r.service || fail "systemctl reload sockredir@r.service failed"
log "systemctl reload with 100 connections open took $(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')s"
# At once: one new connection, which must reach e2 (no retry: "open" fails on any error).
hold open 1
hold echo
expect_conns 100 1 "after the reload to e2 (the 100 stay on e1, the new one goes to e2)"
hold close
WAIT_FOR_FAIL=conns_fail wait_for "the backends to see the 101 connections closed" 10 conns_are 0 0
[ "$(sd_main_pid sockredir@r.service)" = "$R_PID" ] || fail "sockredir@r was restarted by a reload"

# --- Bad configs: systemctl reload fails, the error is in the unit's journal with file and line
# (at priority err), the service stays active with the same pid, and e2 stays the default.
# bad_reload LINE MESSAGE TAG: LINE is the config's 5th line; TAG names the request after it.
bad_reload() {
	local line=$1 msg=$2 rc=0 j
	conf_r /run/e1/e1.sock "$line"
	ct_systemctl reload sockredir@r.service >"$T/reload.out" 2>&1 || rc=$?
	[ $rc != 0 ] || fail "systemctl reload succeeded with '$line' in r.conf"
	log "systemctl reload with '$line': status $rc: $(tr '\n' ' ' <"$T/reload.out")"
	ct_journal sockredir@r.service -o cat | tail -n 5 | sed 's/^/# journal: /'
	j=$(ct_journal sockredir@r.service -o json --output-fields=MESSAGE,PRIORITY)
	python3 -c 'import json, sys
msg = sys.argv[2]
prios = [e["PRIORITY"] for e in map(json.loads, sys.argv[1].splitlines()) if e.get("MESSAGE") == msg]
if prios != ["3"]:
	sys.exit(f"want one entry at priority 3 (err), found {prios}")' "$j" "$msg" ||
		fail "the journal of sockredir@r.service: '$msg': not there once at priority err:
$(ct_journal sockredir@r.service -o cat | tail -n 15)"
	[ "$(ct_systemctl show -P ActiveState sockredir@r.service)" = active ] ||
		fail "sockredir@r.service is not active after the refused reload"
	[ "$(sd_main_pid sockredir@r.service)" = "$R_PID" ] ||
		fail "sockredir@r.service has a new pid after the refused reload"
	hold open 1
	expect_conns 0 1 "after the refused reload ('$line'), a new connection"
	hold close
	WAIT_FOR_FAIL=conns_fail wait_for "the connection to close" 10 conns_are 0 0
	http_check b "/b-after-$3" -H 'Host: b.example' "http://127.0.0.1:$R/b-after-$3"
}
bad_reload 'mode = fast' "/etc/sockredir/r.conf:5: Invalid mode 'fast': expected auto, bpf or splice." mode
bad_reload 'no-such-key = 1' "/etc/sockredir/r.conf:5: Unknown option 'no-such-key'." key
j=$(sd_stats r)
[ "$(sd_stat_field "$j" reloads)" = 2 ] && [ "$(sd_stat_field "$j" reloads_failed)" = 2 ] ||
	fail "sockredir@r counted other reloads than 2 done and 2 refused: $j"
check_all_kernel r

# --- Journal priorities. Instance warn: its default backend is under /home, which the unit hides
# (ProtectHome=yes): a warning at start and one per failed connect (connect-timeout 0: one try).
# Its Host route's socket does not exist yet: a notice.
ct install -d -m 0755 /run/n
printf 'backend = /home/nobody/app.sock\nroute-host = n.example=/run/n/n.sock\nconnect-timeout = 0\n' |
	ct_write /etc/sockredir/warn.conf 0644
sd_instance warn $W
ct_systemctl start sockredir@warn.service || fail "systemctl start sockredir@warn.service failed"
rc=0
curl -sS --max-time 15 -o /dev/null -H 'Host: z.example' "http://127.0.0.1:$W/" 2>"$T/curl.err" || rc=$?
[ $rc = 52 ] || fail "curl through sockredir@warn to a hidden backend: status $rc, want 52 (empty reply): $(cat "$T/curl.err")"
W_WARN1="Backend /home/nobody/app.sock can't be reached: Permission denied. The socket file needs write permission for sockredir's user (uid 0), and every directory above it search permission. Under systemd, check User= and the sandbox: ProtectHome= hides /home, /root and /run/user."
W_WARN2="Failed to connect to backend /home/nobody/app.sock: Permission denied. Closing the client. The socket needs write permission for sockredir's user, and the service's sandbox must let it reach the path (see README.md, \"Where backend sockets may live\")."
W_NOTICE="Backend /run/n/n.sock does not exist yet: clients wait for it up to the --connect-timeout."
W_INFO="Forwarding 1 listener(s) on the kernel path: 1 default backend(s), 0 listener route(s), 1 host route(s)."
connect_warned() { ct_journal sockredir@warn.service -o cat | grep -qF "$W_WARN2"; }
wait_for "the connect failure in the journal of sockredir@warn" 10 connect_warned
ct_journal sockredir@warn.service -o json --output-fields=MESSAGE,PRIORITY >"$T/warn.json"
python3 - "$T/warn.json" "4=$W_WARN1" "4=$W_WARN2" "5=$W_NOTICE" "6=$W_INFO" <<'PY' ||
import json, sys
entries = [json.loads(l) for l in open(sys.argv[1])]
bad = []
for want in sys.argv[2:]:
    prio, msg = want.split("=", 1)
    got = [e["PRIORITY"] for e in entries if e.get("MESSAGE") == msg]
    if got != [prio]:
        bad.append(f"  '{msg}': want one entry at priority {prio}, found {got}")
if bad:
    print("\n".join(bad))
    print("the journal of sockredir@warn.service (PRIORITY MESSAGE):")
    for e in entries:
        print(f"  {e.get('PRIORITY')} {e.get('MESSAGE')}")
    sys.exit(1)
PY
	fail "sockredir@warn's messages are not at their priorities (above)"
# `journalctl -p warning` shows the warnings and not the notice.
ct_journal sockredir@warn.service -p warning -o cat >"$T/warn.txt"
grep -qxF "$W_WARN1" "$T/warn.txt" && grep -qxF "$W_WARN2" "$T/warn.txt" ||
	fail "journalctl -p warning lacks sockredir's warnings: $(cat "$T/warn.txt")"
! grep -qF "$W_NOTICE" "$T/warn.txt" || fail "journalctl -p warning shows a notice"
# No priority prefix left as text, in anything the sockredir units logged (ExecReload= included).
ct journalctl --no-pager -b -o cat -u 'sockredir@*' >"$T/all.txt"
[ "$(wc -l <"$T/all.txt")" -gt 20 ] || fail "the sockredir units logged almost nothing: $(cat "$T/all.txt")"
if grep -nE '<[0-7]>' "$T/all.txt"; then
	fail "a '<N>' priority prefix shows up as text in the journal (above)"
fi
check_all_kernel r
log "ok"
