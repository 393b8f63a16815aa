#!/bin/bash
# GET /metrics end to end, on the inherited socket named "metrics" (or --metrics-listen), with
# real traffic through the proxy and every byte checked by srpeer:
#   1. every mover (kernel, splice, copy, by hand) in each mode: promtool accepts the exposition
#      with no lint warning, the byte counters equal what srpeer moved, accepted and open are right,
#      sockredir_info names the mode and dispatch;
#   2. per route and backend: a dead backend's connect failures and backend_up 0 under
#      --max-fails 1, the live one's open connections while they are held, the labels of a
#      listener route and of host routes;
#   3. a backend path with a quote, a backslash, a space, '%', control characters, UTF-8 and an
#      invalid byte: traffic works, the label is escaped exactly as documented and undoes to the
#      configured bytes (a newline is refused when the options are read);
#   4. OpenMetrics on Accept: its Content-Type, "# EOF", prometheus_client's parser, and each
#      family typed once, before its samples, which stay within it;
#   5. bad scrapers while a transfer runs: 431, a silent client closed after ~5 s, 100 at once,
#      405 and 404; no fd left behind; scrapes are no connections, and are served at
#      --max-connections;
#   6. --workers 2: both workers accept, every scrape (by either worker) shows the shared totals.
. "$(dirname "$0")/lib.sh"
need_cmd curl promtool ss
setup "$@"

PY=/usr/bin/python3
"$PY" -c 'import prometheus_client.openmetrics.parser' 2>/dev/null ||
	skip "needs python3-prometheus-client (run 'make deps' as root)"
VERSION=$("$SOCKREDIR" --version | awk '{ print $2 }')
PROXY_BACKEND= # every instance below names its backends

# ------------------------------------------------------------------------------------------
# Instances and scrapes

# start_sr FDNAMES [sockredir options...]: socket-activated on 127.0.0.1:$PORT and the ports
# after it, one per name in FDNAMES (e.g. main:metrics; the first is $PORT), which
# systemd-socket-activate passes on as LISTEN_FDNAMES. PORT_OF[NAME] is each one's port.
declare -A PORT_OF
start_sr() {
	local names=$1 i=0 args=() n f
	shift
	IFS=: read -ra n <<<"$names"
	PORT_OF=()
	for f in "${n[@]}"; do
		PORT_OF[$f]=$((PORT + i))
		args+=(-l "127.0.0.1:$((PORT + i))")
		i=$((i + 1))
	done
	PROXY_N=$((PROXY_N + 1))
	PROXY_NAME=test$$-$PROXY_N
	PIN_NAMES+=("$PROXY_NAME")
	PROXY_LOG=$T/proxy$PROXY_N.log
	systemd-socket-activate "${args[@]}" --fdname="$names" ${PROXY_ENV:-} \
		"$SOCKREDIR" --name "$PROXY_NAME" "$@" 2>"$PROXY_LOG" &
	PROXY_PID=$!
	BG_PIDS+=($PROXY_PID)
	wait_for "listeners on ports $PORT-$((PORT + i - 1))" 5 port_listening $((PORT + i - 1))
	if [ -n "${PORT_OF[metrics]:-}" ]; then
		MCURL=("http://127.0.0.1:${PORT_OF[metrics]}/metrics")
	fi
}

# scrape OUT [curl options...]: GET /metrics into OUT (the body) and OUT.h (the head); true on
# a 200. The first scrape of a socket-activated instance starts it: the connection waits in
# the backlog of the socket named metrics until sockredir takes it.
scrape() {
	local out=$1
	shift
	rm -f "$out" "$out.h"
	curl -sS --max-time 10 -D "$out.h" -o "$out" "$@" "${MCURL[@]}" || return 1
	head -n 1 "$out.h" | grep -q '^HTTP/1.1 200 '
}

# Start the instance with a scrape, without a proxied connection, so that none is counted.
activate_by_scrape() {
	scrape "$T/first" || fail "the first scrape (which starts sockredir) failed"
	wait_for "sockredir to start" 5 proxy_is_running
}

# value FILE SERIES: the value of SERIES (name{labels}, exactly as written), or "" if absent.
# Bytes, not characters: a label may hold bytes that are not UTF-8.
value() {
	S=$2 LC_ALL=C awk 'index($0, ENVIRON["S"] " ") == 1 { v = substr($0, length(ENVIRON["S"]) + 2) }
		END { print v }' "$1"
}

value_or_0() {
	local v
	v=$(value "$@")
	echo "${v:-0}"
}

# want FILE SERIES VALUE
want() {
	local v
	v=$(value "$1" "$2")
	[ "$v" = "$3" ] || fail "$2 is '$v', want $3 (in $1)"
}

# want_gt FILE SERIES N
want_gt() {
	local v
	v=$(value "$1" "$2")
	[ -n "$v" ] && [ "$v" -gt "$3" ] || fail "$2 is '$v', want more than $3 (in $1)"
}

# want_number FILE SERIES: SERIES is there, and a number (a value the data path decides).
want_number() {
	local v
	v=$(value "$1" "$2")
	[[ $v =~ ^[0-9]+$ ]] || fail "$2 is '$v', want a number (in $1)"
}

# scraped_is SERIES VALUE: for wait_for.
scraped_is() {
	scrape "$T/poll" && [ "$(value "$T/poll" "$1")" = "$2" ]
}

# promtool_ok FILE: promtool check metrics accepts it, with no lint warning either (it prints
# nothing). It also passes an empty input, so the file must hold the families first.
promtool_ok() {
	local out
	grep -q '^# TYPE sockredir_connections_accepted_total counter$' "$1" ||
		fail "$1 is no text exposition of sockredir's families"
	out=$(promtool check metrics <"$1" 2>&1) || fail "promtool rejects $1: $out"
	[ -z "$out" ] || fail "promtool warns about $1: $out"
}

# The OpenMetrics checks of part 4, on a body (argument 1): prometheus_client's strict parser,
# and the structure checked here line by line.
cat >"$T/om_check.py" <<'PY'
import re, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse

def die(msg):
	print("OpenMetrics:", msg, file=sys.stderr)
	sys.exit(1)

raw = open(sys.argv[1], "rb").read()
try:
	text = raw.decode("utf-8")
except UnicodeDecodeError as e:
	die("not UTF-8: %s" % e)
if not text.endswith("\n# EOF\n"):
	die("does not end with '# EOF\\n'")
lines = text.split("\n")[:-1]
if lines.count("# EOF") != 1:
	die("'# EOF' more than once")
suffixes = {"counter": ("_total", "_created"), "gauge": ("",), "info": ("_info",),
	    "histogram": ("_bucket", "_count", "_sum", "_created"), "unknown": ("",),
	    "stateset": ("",), "gaugehistogram": ("_bucket", "_gcount", "_gsum"), "summary":
	    ("", "_count", "_sum", "_created")}
types = {}    # family: type, in the order declared
samples = {}  # family: how many samples
cur = None    # the family whose block this is
sample_re = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$')
for no, line in enumerate(lines[:-1], 1):
	if line.startswith("#"):
		parts = line.split(" ", 3)
		if len(parts) < 3 or parts[0] != "#":
			die("line %d: malformed: %r" % (no, line))
		kw, name = parts[1], parts[2]
		if kw == "TYPE":
			if name in types:
				die("line %d: a second TYPE for %s" % (no, name))
			if len(parts) != 4 or parts[3] not in suffixes:
				die("line %d: bad TYPE: %r" % (no, line))
			types[name] = parts[3]
			samples[name] = 0
			cur = name
		elif kw in ("HELP", "UNIT"):
			if name != cur:
				die("line %d: %s of %s outside its family (in %s)" % (no, kw, name, cur))
		else:
			die("line %d: unknown keyword: %r" % (no, line))
		continue
	m = sample_re.match(line)
	if not m:
		die("line %d: not a sample: %r" % (no, line))
	sname = m.group(1)
	fams = [f for f, t in types.items() if any(sname == f + s for s in suffixes[t])]
	if not fams:
		die("line %d: sample %s before the TYPE of its family, or of no family" % (no, sname))
	if cur not in fams:
		die("line %d: sample %s outside the block of its family %s (in %s)"
		    % (no, sname, fams[0], cur))
	samples[cur] += 1
empty = [f for f, n in samples.items() if n == 0]
if empty:
	die("families without samples: %s" % empty)
parsed = list(parse(text))
if len(parsed) != len(types):
	die("prometheus_client parsed %d families, the file types %d" % (len(parsed), len(types)))
print("# OpenMetrics ok: %d families, %d samples" % (len(types), sum(samples.values())))
PY

# om_ok FILE: the headers (FILE.h) and body of an OpenMetrics scrape pass part 4's checks.
om_ok() {
	grep -qix 'content-type: application/openmetrics-text; version=1.0.0; charset=utf-8.' \
		"$1.h" || fail "OpenMetrics Content-Type: $(grep -i '^content-type' "$1.h")"
	"$PY" "$T/om_check.py" "$1" || fail "the OpenMetrics body $1 fails the checks"
}

# check_expositions NAME: scrape both formats now; promtool on the text, part 4 on OpenMetrics.
# Leaves them in $T/NAME.prom and $T/NAME.om.
check_expositions() {
	scrape "$T/$1.prom" || fail "scrape ($1)"
	grep -qix 'content-type: text/plain; version=0.0.4; charset=utf-8.' "$T/$1.prom.h" ||
		fail "text Content-Type: $(grep -i '^content-type' "$T/$1.prom.h")"
	promtool_ok "$T/$1.prom"
	scrape "$T/$1.om" -H 'Accept: application/openmetrics-text' || fail "OpenMetrics scrape ($1)"
	om_ok "$T/$1.om"
}

# Backends: proto (default route), banner (the route of the listener named banner), echo.
start_backend proto
"$SRPEER" backend --listen "$T/banner.sock" --mode banner --ready-file "$T/banner.ready" \
	2>"$T/backend-banner.log" &
BG_PIDS+=($!)
"$SRPEER" backend --listen "$T/echo.sock" --mode echo --ready-file "$T/echo.ready" \
	2>"$T/backend-echo.log" &
BG_PIDS+=($!)
wait_for "banner backend" 5 test -e "$T/banner.ready"
wait_for "echo backend" 5 test -e "$T/echo.ready"

# moved_client PORT [srpeer client options...]: a client whose "sent=" and "received=" add up
# in $T/moved.
moved_client() {
	local port=$1
	shift
	"$SRPEER" client --connect "127.0.0.1:$port" "$@" >"$T/client.out" ||
		fail "srpeer client $*: $(cat "$T/client.out")"
	cat "$T/client.out" >>"$T/moved"
}
moved() {
	grep -o " $1=[0-9]*" "$T/moved" | cut -d= -f2 | awk '{ s += $1 } END { print s + 0 }'
}

# ------------------------------------------------------------------------------------------
# 1. Every mover, in each mode.
test_movers() {
	local opts=$1 mode=$2 dispatch=$3 m sent received up down s
	log "movers: $opts"
	# Every connection pauses 2 ms before its sockets enter the map, so the banners, sent by
	# the backend at once, are queued before the kernel path takes over: moved by hand.
	PROXY_ENV="-E SOCKREDIR_DEBUG_INSERT_DELAY_USEC=2000" start_sr main:metrics:banner $opts \
		--route "banner=$T/banner.sock" "$T/backend.sock"
	activate_by_scrape
	: >"$T/moved"
	moved_client $PORT --test up --size 8M --conns 3
	moved_client $PORT --test down --size 8M --conns 2
	moved_client $PORT --test halfclose --size 1M --conns 4
	moved_client ${PORT_OF[banner]} --test banner --size 1K --rounds 3 --conns 50 --parallel 8
	sent=$(moved sent) received=$(moved received)
	wait_for "no connection open" 10 scraped_is sockredir_connections_open 0
	check_expositions "movers-$mode-$dispatch"
	m=$T/movers-$mode-$dispatch.prom

	want "$m" "sockredir_info{version=\"$VERSION\",mode=\"$mode\",dispatch=\"$dispatch\"}" 1
	[ "$(grep -c '^sockredir_info{' "$m")" = 1 ] || fail "more than one sockredir_info sample"
	want "$m" sockredir_connections_accepted_total 59
	want "$m" sockredir_connections_open 0
	want "$m" sockredir_workers 1
	want "$m" sockredir_connect_failures_total 0
	# Under systemd-socket-activate there is no fd store: nothing kept, restored or stored.
	want "$m" sockredir_connections_kept 0
	want "$m" sockredir_connections_restored_total 0
	want "$m" sockredir_connections_restore_closed_total 0
	want "$m" sockredir_fdstore_fds 0
	want "$m" sockredir_connect_duration_seconds_count 59
	want "$m" "sockredir_backend_connections_open{route=\"default\",backend=\"$T/backend.sock\"}" 0
	want "$m" "sockredir_backend_up{route=\"listener:banner\",backend=\"$T/banner.sock\"}" 1
	# Every reason has its series, client_unix too (all the clients here are TCP).
	[ "$(grep -c '^sockredir_fallbacks_total{reason=' "$m")" = 7 ] ||
		fail "want 7 sockredir_fallbacks_total series, one per reason"
	want "$m" 'sockredir_fallbacks_total{reason="client_unix"}' 0

	# What srpeer sent went up, what it received came down: the movers' sum, to the byte.
	up=0 down=0
	for s in copy splice kernel by_hand; do
		up=$((up + $(value_or_0 "$m" "sockredir_bytes_total{direction=\"up\",mover=\"$s\"}")))
		down=$((down + $(value_or_0 "$m" "sockredir_bytes_total{direction=\"down\",mover=\"$s\"}")))
	done
	log "srpeer sent $sent and received $received; sockredir counted $up up and $down down"
	grep '^sockredir_bytes_total' "$m" | sed 's/^/#   /'
	[ "$up" = "$sent" ] || fail "bytes up: sockredir counted $up, srpeer sent $sent ($opts)"
	[ "$down" = "$received" ] ||
		fail "bytes down: sockredir counted $down, srpeer received $received ($opts)"

	# The movers' other series: numbers, whose values are the data path's to decide (how soon
	# it promotes); the kernel's only where there is a kernel path.
	for s in 'sockredir_promotions_total{direction="down",mover="splice"}' \
		'sockredir_promotions_total{direction="up",mover="splice"}' \
		'sockredir_connections_carried_total{mover="copy"}' \
		'sockredir_connections_carried_total{mover="splice"}'; do
		want_number "$m" "$s"
	done
	for s in 'sockredir_connections_carried_total{mover="kernel"}'; do
		if [ "$dispatch" = splice ]; then
			[ -z "$(value "$m" "$s")" ] || fail "the splice path shows $s"
		else
			want_number "$m" "$s"
		fi
	done

	case $dispatch in
	splice)
		# Userspace both ways: recv()/send() first, then splice.
		s=$(($(value_or_0 "$m" 'sockredir_bytes_total{direction="up",mover="copy"}') +
			$(value "$m" 'sockredir_bytes_total{direction="up",mover="splice"}')))
		[ "$s" = "$sent" ] || fail "bytes up by copy and splice: $s, want $sent"
		s=$(($(value_or_0 "$m" 'sockredir_bytes_total{direction="down",mover="copy"}') +
			$(value "$m" 'sockredir_bytes_total{direction="down",mover="splice"}')))
		[ "$s" = "$received" ] || fail "bytes down by copy and splice: $s, want $received"
		grep -q 'mover="kernel"\|mover="by_hand"\|^sockredir_kernel_' "$m" &&
			fail "the splice path shows kernel series"
		want "$m" 'sockredir_fallbacks_total{reason="mode"}' 59
		;;
	kernel_download)
		want_gt "$m" 'sockredir_bytes_total{direction="down",mover="kernel"}' 0
		want_gt "$m" 'sockredir_bytes_total{direction="up",mover="splice"}' 0
		want_gt "$m" 'sockredir_bytes_total{direction="down",mover="by_hand"}' 0
		want "$m" 'sockredir_bytes_total{direction="up",mover="kernel"}' 0
		;;
	kernel_both)
		want_gt "$m" 'sockredir_bytes_total{direction="down",mover="kernel"}' 0
		want_gt "$m" 'sockredir_bytes_total{direction="up",mover="kernel"}' 0
		want_gt "$m" 'sockredir_bytes_total{direction="down",mover="by_hand"}' 0
		;;
	esac
	stop_proxy
}
test_movers "--mode bpf" bpf kernel_download
test_movers "--mode bpf --kernel-upload --allow-unbounded-upload" bpf kernel_both
test_movers "--mode splice" splice splice

# ------------------------------------------------------------------------------------------
# 2. Per route and backend; 4. OpenMetrics on this instance, with every kind of route.
log "backend failures, listener and host routes"
# A socket file that nobody listens on: connect() gets ECONNREFUSED.
"$PY" -c 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])' "$T/dead.sock"
for b in api app wild; do
	"$SRPEER" backend --listen "$T/$b.sock" --mode http --ready-file "$T/$b.ready" \
		2>"$T/backend-$b.log" &
	BG_PIDS+=($!)
	wait_for "backend $b" 5 test -e "$T/$b.ready"
done
start_sr main:metrics:api --mode bpf --max-fails 1 --fail-timeout 10min \
	--route "api=$T/api.sock" --route-host "app.test=$T/app.sock" \
	--route-host "*.wild.test=$T/wild.sock" "$T/echo.sock" "$T/dead.sock"
activate_by_scrape
live="route=\"default\",backend=\"$T/echo.sock\""
dead="route=\"default\",backend=\"$T/dead.sock\""
m=$T/routes.prom
# Round robin sends one of these to the dead backend: refused, marked down, and the connection
# goes on to the live one.
client --test rr --size 1K --conns 4 || fail "rr through a route with a dead backend"
scrape "$m" || fail "scrape"
want "$m" "sockredir_backend_connect_failures_total{$dead}" 1
want "$m" "sockredir_backend_up{$dead}" 0
want "$m" "sockredir_backend_up{$live}" 1
want "$m" "sockredir_backend_connect_failures_total{$live}" 0
wait_for "no connection open" 10 scraped_is sockredir_connections_open 0
# Held open after their first round trip: the live backend has exactly these.
rm -f "$T/hold"
client --test rr --size 1K --rounds 2 --conns 5 --barrier --hold "$T/hold" --timeout 30 \
	>"$T/hold.out" 2>&1 &
hold_pid=$!
wait_for "5 connections held" 20 test -e "$T/hold"
kill -0 $hold_pid 2>/dev/null || fail "the held client ended early: $(cat "$T/hold.out")"
scrape "$m" || fail "scrape"
want "$m" "sockredir_backend_connections_open{$live}" 5
want "$m" "sockredir_backend_connections_open{$dead}" 0
want "$m" sockredir_connections_open 5
rm -f "$T/hold"
wait $hold_pid || fail "the held connections failed: $(cat "$T/hold.out")"
wait_for "the live backend's connections to close" 10 scraped_is \
	"sockredir_backend_connections_open{$live}" 0
# A listener route and two host routes.
for url in "http://127.0.0.1:${PORT_OF[api]}/" "http://127.0.0.1:${PORT_OF[api]}/again" \
	"http://app.test:$PORT/" "http://a.wild.test:$PORT/"; do
	curl -sS --max-time 10 --resolve "app.test:$PORT:127.0.0.1" \
		--resolve "a.wild.test:$PORT:127.0.0.1" "$url" -o "$T/curl.out" || fail "curl $url"
	grep -q 'pid' "$T/curl.out" || fail "curl $url: $(cat "$T/curl.out")"
done
wait_for "no connection open" 10 scraped_is sockredir_connections_open 0
check_expositions routes
m=$T/routes.prom
grep '^sockredir_backend' "$m" | sed 's/^/#   /'
want "$m" sockredir_connections_accepted_total 13
for rb in "route=\"listener:api\",backend=\"$T/api.sock\"" \
	"route=\"host:app.test\",backend=\"$T/app.sock\"" \
	"route=\"host:*.wild.test\",backend=\"$T/wild.sock\""; do
	want "$m" "sockredir_backend_up{$rb}" 1
	want "$m" "sockredir_backend_connect_failures_total{$rb}" 0
	want "$m" "sockredir_backend_connections_open{$rb}" 0
done
[ "$(grep -c '^sockredir_backend_up{' "$m")" = 5 ] || fail "want 5 route and backend pairs"
# The same in OpenMetrics.
want "$T/routes.om" "sockredir_backend_up{$dead}" 0
want "$T/routes.om" "sockredir_backend_connect_failures_total{$dead}" 1
want "$T/routes.om" sockredir_connections_accepted_total 13
grep -q '^# UNIT sockredir_connect_duration_seconds seconds$' "$T/routes.om" ||
	fail "OpenMetrics: no UNIT for the histogram"
stop_proxy

# ------------------------------------------------------------------------------------------
# 3. A backend path with every kind of byte a label escapes (and --metrics-listen on a Unix
# socket). A newline can't be configured at all: the address parser refuses it.
log "a backend path with odd bytes"
rc=0
"$SOCKREDIR" --mode splice "$T/"$'new\nline.sock' >"$T/newline.out" 2>&1 || rc=$?
[ $rc = 2 ] && grep -q 'control characters' "$T/newline.out" ||
	fail "a backend path with a newline: status $rc, $(cat "$T/newline.out")"
odd_name=$'q"b\\s %p\tt\x7fn\xc3\xa9\xff.sock'
odd=$T/$odd_name
odd_label="$T/"'q\"b\\s %25p%09t%7Fné%FF.sock'
"$SRPEER" backend --listen "$odd" --mode proto --ready-file "$T/odd.ready" 2>"$T/backend-odd.log" &
BG_PIDS+=($!)
wait_for "the odd backend" 5 test -e "$T/odd.ready"
start_sr main --mode splice --metrics-listen "$T/metrics.sock" "$odd"
MCURL=(--unix-socket "$T/metrics.sock" http://localhost/metrics)
proxy_activate # by a connection: the metrics socket is sockredir's own
wait_for "the metrics socket" 5 test -S "$T/metrics.sock"
client --test up --size 1M --conns 2 || fail "up through the odd backend path"
client --test down --size 1M --conns 2 || fail "down through the odd backend path"
client --test halfclose --size 1M --conns 1 || fail "halfclose through the odd backend path"
wait_for "no connection open" 10 scraped_is sockredir_connections_open 0
check_expositions odd
grep -a 'backend=' "$T/odd.prom" | sed 's/^/#   /'
for f in "$T/odd.prom" "$T/odd.om"; do
	want "$f" "sockredir_backend_up{route=\"default\",backend=\"$odd_label\"}" 1
	want "$f" "sockredir_backend_connect_failures_total{route=\"default\",backend=\"$odd_label\"}" 0
	want "$f" sockredir_connections_accepted_total 6
done
# Undoing the escapes (a parser's \\ \" \n, then %XX) gives back the path, byte for byte.
"$PY" - "$T/odd.prom" "$T/odd.om" "$odd" <<'PY' || fail "the odd label does not undo to the path"
import os, re, sys
from prometheus_client.parser import text_string_to_metric_families as parse_text
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
want = os.fsencode(sys.argv[3])
def unpct(s):
	return re.sub(rb"%([0-9A-F]{2})", lambda m: bytes([int(m.group(1), 16)]), s.encode("utf-8"))
for path, parse in ((sys.argv[1], parse_text), (sys.argv[2], parse_om)):
	got = [unpct(s.labels["backend"]) for f in parse(open(path, encoding="utf-8").read())
	       for s in f.samples if "backend" in s.labels]
	assert got and all(g == want for g in got), (path, got, want)
print("# the label undoes to the path in both formats:", want)
PY
stop_proxy

# ------------------------------------------------------------------------------------------
# 5. Bad scrapers, while transfers run through the proxy.
cat >"$T/rawscrape.py" <<'PY'
import socket, sys, threading, time

host, port, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def die(msg):
	print("rawscrape.py %s: %s" % (what, msg), file=sys.stderr)
	sys.exit(1)

def read_all(s):
	data = b""
	while True:
		b = s.recv(65536)
		if not b:
			return data
		data += b

def reply(data):
	head, _, body = data.partition(b"\r\n\r\n")
	lines = head.decode("latin-1").split("\r\n")
	hdrs = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
	return lines[0], hdrs, body

if what == "size":
	# A request of exactly N bytes: the status line, the answer ends with EOF.
	n = int(sys.argv[4])
	start, end = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ", b"\r\n\r\n"
	req = start + b"a" * (n - len(start) - len(end)) + end
	assert len(req) == n
	s = socket.create_connection((host, port), timeout=10)
	s.sendall(req)
	try:
		status, hdrs, body = reply(read_all(s))
	except socket.timeout:
		die("no EOF within 10 s")
	if int(hdrs.get("content-length", -1)) != len(body):
		die("Content-Length %s, body %d bytes" % (hdrs.get("content-length"), len(body)))
	print(status)
elif what == "silent":
	# Connect, send nothing: how long until the server closes.
	s = socket.create_connection((host, port), timeout=20)
	t0 = time.monotonic()
	try:
		data = read_all(s)
	except ConnectionResetError:
		data = b""
	except socket.timeout:
		die("still open after 20 s")
	if data:
		die("got %r" % data[:100])
	print("%.2f" % (time.monotonic() - t0))
elif what == "many":
	# N scrapers at once (a barrier lines them up before they connect), each must get a whole
	# 200; the bodies go to OUTDIR/scrape.I.
	n, outdir = int(sys.argv[4]), sys.argv[5]
	barrier = threading.Barrier(n)
	errors, times, shapes = [], [], []
	def one(i):
		try:
			barrier.wait(30)
			t0 = time.monotonic()
			s = socket.create_connection((host, port), timeout=30)
			s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: scraper-%d\r\n\r\n" % i)
			status, hdrs, body = reply(read_all(s))
			s.close()
			times.append(time.monotonic() - t0)
			if not status.startswith("HTTP/1.1 200 "):
				raise Exception("status " + status)
			if int(hdrs.get("content-length", -1)) != len(body):
				raise Exception("Content-Length %s, body %d" % (hdrs.get("content-length"), len(body)))
			text = body.decode("utf-8")
			last = text.rstrip("\n").split("\n")[-1]
			if not text.endswith("\n") or not last.startswith("sockredir_connect_duration_seconds_sum "):
				raise Exception("body ends with %r" % text[-80:])
			if "# TYPE sockredir_connections_accepted_total counter\n" not in text:
				raise Exception("no TYPE line for accepted")
			# The shape (every line but the sample values) of each body, to compare.
			shape = []
			for l in text.rstrip("\n").split("\n"):
				if not l.startswith("#"):
					l, v = l.rsplit(" ", 1)
					float(v)
				shape.append(l)
			shapes.append(shape)
			open("%s/scrape.%d" % (outdir, i), "w").write(text)
		except Exception as e:
			errors.append("scraper %d: %r" % (i, e))
	threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
	for t in threads: t.start()
	for t in threads: t.join(90)
	if any(t.is_alive() for t in threads):
		die("scrapers still running after 90 s")
	if errors:
		die("%d of %d failed: %s" % (len(errors), n, "; ".join(errors[:5])))
	# The same families, series and order in every body: what promtool accepts in one (below),
	# it accepts in all.
	if any(sh != shapes[0] for sh in shapes):
		die("the bodies differ in more than their values")
	print("# %d scrapers got a whole 200 each, the slowest in %.2f s" % (n, max(times)))
PY
http() { "$PY" "$T/rawscrape.py" 127.0.0.1 "${PORT_OF[metrics]}" "$@"; }

# The fds of the proxy that are not pipes: the pool of spare pipes grows with the traffic and
# is no leak (see lib.sh).
fds_no_pipes() { find "/proc/$PROXY_PID/fd" -mindepth 1 ! -lname 'pipe:*' 2>/dev/null | wc -l; }
fds_are() { [ "$(fds_no_pipes)" = "$1" ]; }

log "bad scrapers while transfers run"
start_sr main:metrics:echo --mode bpf --route "echo=$T/echo.sock" "$T/backend.sock"
activate_by_scrape
# One connection first, so that anything sockredir opens once, lazily, is open.
client --test up --size 64K || fail "the first upload"
wait_for "no connection open" 10 scraped_is sockredir_connections_open 0
fds_before=$(fds_no_pipes)
scrape "$T/bad0" || fail "scrape"
accepted0=$(value "$T/bad0" sockredir_connections_accepted_total)
[ "$accepted0" = 1 ] || fail "want 1 accepted after the first upload, have $accepted0"

# Through all the bad scrapers: two connections held open with a round trip left to do, and
# transfers one after another until told to stop (at most 1000, within 120 s).
rm -f "$T/hold" "$T/traffic.stop" "$T/traffic.n"
"$SRPEER" client --connect "127.0.0.1:${PORT_OF[echo]}" --test rr --size 16K --rounds 3 \
	--conns 2 --barrier --hold "$T/hold" --timeout 120 >"$T/hold.out" 2>&1 &
hold_pid=$!
traffic() {
	local i=0 end=$((SECONDS + 120))
	while [ ! -e "$T/traffic.stop" ]; do
		if [ $i -ge 1000 ] || [ $SECONDS -ge $end ]; then
			echo "traffic: not stopped after $i rounds" >&2
			return 1
		fi
		client --test up --size 4M --timeout 30 --quiet || return 1
		client --test down --size 4M --timeout 30 --quiet || return 1
		i=$((i + 1))
		echo $i >"$T/traffic.n.tmp" && mv "$T/traffic.n.tmp" "$T/traffic.n"
	done
}
traffic >"$T/traffic.out" 2>&1 &
traffic_pid=$!
wait_for "the held connections" 20 test -e "$T/hold"
wait_for "a first round of transfers" 20 test -e "$T/traffic.n"

# (b) Silent: in the background while the others run, taking one of the four slots.
http silent >"$T/silent.out" 2>&1 &
silent_pid=$!
# (a) Too long a request; and the longest that is not.
st=$(http size 8193) || fail "a request of 8193 bytes"
[[ $st == "HTTP/1.1 431 "* ]] || fail "a request of 8193 bytes got: $st"
st=$(http size 20000) || fail "a request of 20000 bytes"
[[ $st == "HTTP/1.1 431 "* ]] || fail "a request of 20000 bytes got: $st"
st=$(http size 8192) || fail "a request of 8192 bytes"
[[ $st == "HTTP/1.1 200 "* ]] || fail "a request of 8192 bytes got: $st"
# (d) Methods and paths.
curl -sS --max-time 10 -X POST -d x -D "$T/post.h" -o "$T/post" "${MCURL[@]}" || fail "POST"
head -n 1 "$T/post.h" | grep -q '^HTTP/1.1 405 ' || fail "POST: $(head -n 1 "$T/post.h")"
grep -qix 'allow: GET, HEAD.' "$T/post.h" || fail "405 without 'Allow: GET, HEAD': $(cat "$T/post.h")"
curl -sS --max-time 10 -D "$T/nope.h" -o "$T/nope" "http://127.0.0.1:${PORT_OF[metrics]}/nope" ||
	fail "GET /nope"
head -n 1 "$T/nope.h" | grep -q '^HTTP/1.1 404 ' || fail "GET /nope: $(head -n 1 "$T/nope.h")"
curl -sS --max-time 10 -I -o "$T/head.h" "${MCURL[@]}" || fail "HEAD"
head -n 1 "$T/head.h" | grep -q '^HTTP/1.1 200 ' || fail "HEAD: $(head -n 1 "$T/head.h")"
# (c) 100 at once.
mkdir "$T/many"
http many 100 "$T/many" || fail "100 scrapers at once"
for i in 0 50 99; do promtool_ok "$T/many/scrape.$i"; done
# (b) closed at the deadline, 5 s after the accept.
wait $silent_pid || fail "the silent client: $(cat "$T/silent.out")"
secs=$(cat "$T/silent.out")
log "a silent client was closed after $secs s"
awk -v s="$secs" 'BEGIN { exit !(s >= 4.0 && s <= 15) }' ||
	fail "a silent client was closed after $secs s, want about 5"

# The transfers went on through all of it, every byte right.
n=$(cat "$T/traffic.n")
wait_for "another round of transfers" 30 bash -c "[ \$(cat '$T/traffic.n') -gt $n ]"
touch "$T/traffic.stop"
wait $traffic_pid || fail "a transfer failed during the bad scrapers: $(cat "$T/traffic.out")"
rm -f "$T/hold"
wait $hold_pid || fail "the held connections failed: $(cat "$T/hold.out")"
rounds=$(cat "$T/traffic.n")
log "$rounds rounds of transfers (4 MiB up, 4 MiB down) ran during the bad scrapers"
# (e) Nothing left behind, and no scrape counted as a connection.
wait_for "no connection open" 10 scraped_is sockredir_connections_open 0
fds_fail() { fail "$1: $(fds_no_pipes) now: $(ls -l "/proc/$PROXY_PID/fd")"; }
WAIT_FOR_FAIL=fds_fail wait_for "the proxy's fds other than pipes to return to $fds_before" 10 \
	fds_are "$fds_before"
scrape "$T/bad1" || fail "scrape"
want "$T/bad1" sockredir_connections_accepted_total $((accepted0 + 2 + 2 * rounds))
promtool_ok "$T/bad1"
stop_proxy

# Scrapes are served while --max-connections holds the proxy's listener: another socket.
log "--max-connections 1"
start_sr main:metrics --mode splice --max-connections 1 "$T/echo.sock"
activate_by_scrape
rm -f "$T/hold"
client --test rr --size 1K --rounds 2 --conns 1 --barrier --hold "$T/hold" --timeout 60 \
	>"$T/hold.out" 2>&1 &
hold_pid=$!
wait_for "a connection held" 20 test -e "$T/hold"
# A second client waits in the backlog: not accepted while the first is open.
client --test rr --size 1K --conns 1 --timeout 60 >"$T/second.out" 2>&1 &
second_pid=$!
for i in 1 2 3 4 5; do
	scrape "$T/max" || fail "scrape $i at --max-connections with one connection open"
	want "$T/max" sockredir_connections_open 1
	want "$T/max" sockredir_connections_accepted_total 1
done
promtool_ok "$T/max"
rm -f "$T/hold"
wait $hold_pid || fail "the held connection: $(cat "$T/hold.out")"
wait $second_pid || fail "the second connection: $(cat "$T/second.out")"
wait_for "no connection open" 10 scraped_is sockredir_connections_open 0
scrape "$T/max" || fail "scrape"
want "$T/max" sockredir_connections_accepted_total 2
stop_proxy

# ------------------------------------------------------------------------------------------
# 6. --workers 2: every worker serves the metrics socket, from the shared counters.
log "--workers 2"
workers_of() { pgrep -P "$PROXY_PID" -x sockredir | sort -n; }
two_workers() { [ "$(workers_of | wc -l)" = 2 ]; }
start_sr main:metrics --mode bpf --workers 2 -v "$T/echo.sock"
activate_by_scrape
wait_for "2 workers" 5 two_workers
read -r w1 w2 <<<"$(workers_of | tr '\n' ' ')"
# Held at once, so that each accept found the other connections open: both workers take some.
# Up to 5 rounds of 40 until both have.
N=0
for round in 1 2 3 4 5; do
	rm -f "$T/hold"
	client --test rr --size 1K --rounds 2 --conns 40 --barrier --hold "$T/hold" --timeout 60 \
		>"$T/hold.out" 2>&1 &
	hold_pid=$!
	wait_for "40 connections held" 30 test -e "$T/hold"
	N=$((N + 40))
	ss -Htnp state established "( sport = :$PORT )" >"$T/ss.out"
	c1=$(grep -c "pid=$w1," "$T/ss.out" || true)
	c2=$(grep -c "pid=$w2," "$T/ss.out" || true)
	log "round $round: worker $w1 holds $c1, worker $w2 holds $c2"
	[ $((c1 + c2)) = 40 ] || fail "the workers hold $((c1 + c2)) of the 40 connections"
	rm -f "$T/hold"
	wait $hold_pid || fail "40 held connections: $(cat "$T/hold.out")"
	wait_for "no connection open" 10 scraped_is sockredir_connections_open 0
	[ "$c1" -gt 0 ] && [ "$c2" -gt 0 ] && break
done
[ "$c1" -gt 0 ] && [ "$c2" -gt 0 ] || fail "one worker accepted every connection in 5 rounds"
client --test rr --size 64K --rounds 3 --conns 20 || fail "rr with 2 workers"
N=$((N + 20))
wait_for "no connection open" 10 scraped_is sockredir_connections_open 0
"$SOCKREDIR" stats --json "$PROXY_NAME" >"$T/stats.json" || fail "sockredir stats --json"
stats_accepted=$("$PY" -c 'import json, sys; print(json.load(open(sys.argv[1]))[0]["accepted"])' \
	"$T/stats.json")
[ "$stats_accepted" = $N ] || fail "sockredir stats --json: $stats_accepted accepted, want $N"
# Each scrape may be answered by either worker: the same totals from both. Up to 60 scrapes,
# until both have answered at least 3.
scrapes_by() { grep -c "^worker $1: .*Scrape [0-9]*: GET /metrics: 200" "$PROXY_LOG" || true; }
declare -A first_of
for i in $(seq 60); do
	scrape "$T/w" || fail "scrape $i with 2 workers"
	want "$T/w" sockredir_connections_accepted_total $N
	want "$T/w" sockredir_workers 2
	want "$T/w" sockredir_connections_open 0
	# The movers' counters live in the same shared page: the first scrape's values, from both.
	for s in 'sockredir_connections_carried_total{mover="copy"}' \
		'sockredir_connections_carried_total{mover="splice"}' \
		'sockredir_connections_carried_total{mover="kernel"}' \
		'sockredir_bytes_total{direction="up",mover="copy"}'; do
		want_number "$T/w" "$s"
		[ "$i" = 1 ] && first_of[$s]=$(value "$T/w" "$s")
		want "$T/w" "$s" "${first_of[$s]}"
	done
	[ "$i" -ge 6 ] && [ "$(scrapes_by 1)" -ge 3 ] && [ "$(scrapes_by 2)" -ge 3 ] && break
done
log "scrapes answered: worker 1 $(scrapes_by 1), worker 2 $(scrapes_by 2)"
[ "$(scrapes_by 1)" -ge 1 ] && [ "$(scrapes_by 2)" -ge 1 ] || fail "one worker answered every scrape"
promtool_ok "$T/w"
scrape "$T/w.om" -H 'Accept: application/openmetrics-text' || fail "OpenMetrics scrape, 2 workers"
om_ok "$T/w.om"
want "$T/w.om" sockredir_connections_accepted_total $N
stop_proxy

stop_backend
[ "$(backend_errors)" = 0 ] || fail "the proto backend counted errors"
echo "ok"
