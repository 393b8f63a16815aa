#!/bin/bash
# Routing by name: --route-host peeks at the HTTP Host: header or the TLS SNI, matches exact
# names then *.domain wildcards, and falls back to the default BACKEND. Checked with curl
# --resolve and openssl s_client (the TLS bytes pass through untouched, to real TLS servers).
# A malformed, truncated, oversized or slow request gets the default route, or is closed with
# --peek-fail close; the peeked bytes reach the backend unchanged.
. "$(dirname "$0")/lib.sh"
need_cmd curl openssl
setup "$@"
PROXY_BACKEND= # every start_proxy below names its own default backend

# Three HTTP backends, told apart by the pid in their answer.
declare -A pid
for b in app wild default; do
	"$SRPEER" backend --listen "$T/$b.sock" --mode http --ready-file "$T/$b.ready" 2>>"$T/backend.log" &
	BG_PIDS+=($!)
	pid[$b]=$!
done
# Two TLS servers (openssl s_server, reversing each line), told apart by their certificate.
# s_server quits at EOF on its stdin: give it a FIFO that stays open.
mkfifo "$T/tls.stdin"
exec 9<>"$T/tls.stdin"
# s_server also fails on a Unix socket path of 40 characters or more: use a short link to $T.
S=/tmp/srt.$$
ln -s "$T" "$S"
CLEANUP_PATHS+=("$S")
for b in tls-a tls-b; do
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$T/$b.key" -out "$T/$b.crt" -days 1 \
		-subj "/CN=$b" 2>/dev/null
	openssl s_server -unix "$S/$b.sock" -cert "$T/$b.crt" -key "$T/$b.key" -rev -quiet \
		<&9 >"$T/$b.log" 2>&1 &
	BG_PIDS+=($!)
done
# An echo backend for the default route of the malformed cases.
"$SRPEER" backend --listen "$T/echo.sock" --mode echo --ready-file "$T/echo.ready" 2>>"$T/backend.log" &
BG_PIDS+=($!)
for f in app wild default echo; do wait_for "backend $f" 5 test -e "$T/$f.ready"; done
for b in tls-a tls-b; do wait_for "TLS server $b" 5 test -S "$T/$b.sock"; done

# http_to HOST: the pid of the backend that answered a request for HOST.
http_to() {
	curl -sS --max-time 5 --resolve "$1:$PORT:127.0.0.1" "http://$1:$PORT/" |
		sed -n 's/.*(pid \([0-9]*\),.*/\1/p'
}

# tls_to NAME: the certificate CN of the server reached with SNI NAME (tls-a or tls-b), after
# checking that a line went through and came back reversed. Timeouts are generous: a loaded
# machine (or an ASan build) can make the handshake slow.
tls_to() {
	PORT=$PORT python3 - "$1" <<'PY'
import os, socket, ssl, sys
name = sys.argv[1]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
try:
    raw = socket.create_connection(("127.0.0.1", int(os.environ["PORT"])), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname=name)
    der = s.getpeercert(binary_form=True)
    line = f"sockredir-{name}\n".encode()
    s.sendall(line)
    got = b""
    while not got.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
except OSError as e:
    print(f"error: {e}")
    sys.exit(0)
if got.rstrip(b"\n") != line.rstrip(b"\n")[::-1]:
    print("no echo")
    sys.exit(0)
print("tls-a" if b"tls-a" in der else "tls-b" if b"tls-b" in der else "unknown")
PY
}

one_mode() {
	start_proxy $1 --route-host "app.example.com=$T/app.sock" --route-host "*.example.com=$T/wild.sock" \
		--route-host "secure.example.org=$T/tls-a.sock" --route-host "*.tls.example=$T/tls-a.sock" \
		"$T/default.sock"
	[ "$(http_to app.example.com)" = "${pid[app]}" ] || fail "app.example.com: exact match ($1)"
	[ "$(http_to APP.Example.COM)" = "${pid[app]}" ] || fail "names are matched without case ($1)"
	[ "$(http_to x.example.com)" = "${pid[wild]}" ] || fail "x.example.com: wildcard ($1)"
	[ "$(http_to a.b.example.com)" = "${pid[wild]}" ] || fail "a.b.example.com: wildcard ($1)"
	[ "$(http_to example.com)" = "${pid[default]}" ] || fail "example.com: not the wildcard ($1)"
	[ "$(http_to other.org)" = "${pid[default]}" ] || fail "other.org: default ($1)"
	[ "$(tls_to secure.example.org)" = tls-a ] || fail "SNI secure.example.org ($1)"
	[ "$(tls_to www.tls.example)" = tls-a ] || fail "SNI wildcard *.tls.example ($1)"
	stop_proxy
	[ "$(summary 'accepted')" -ge 8 ] || fail "expected at least 8 connections"

	# Without a default backend, an unmatched name is closed; TLS to the default goes to tls-b.
	start_proxy $1 --route-host "secure.example.org=$T/tls-a.sock" "$T/tls-b.sock"
	[ "$(tls_to secure.example.org)" = tls-a ] || fail "SNI to tls-a ($1)"
	[ "$(tls_to unknown.example.org)" = tls-b ] || fail "SNI fallback to the default ($1)"
	stop_proxy

	# Malformed, truncated, oversized and slow first bytes: --peek-fail default (the echo
	# backend gets them unchanged) and --peek-fail close (closed before any backend).
	start_proxy $1 --route-host "app.example.com=$T/app.sock" --peek-timeout 500ms "$T/echo.sock"
	python3 - "$PORT" <<'PY' || fail "peek failures with --peek-fail default ($1)"
import socket, sys, time
port = int(sys.argv[1])

def exchange(data, shut=False, delay=0.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(data)
    if delay:
        time.sleep(delay)
    if shut:
        s.shutdown(socket.SHUT_WR)
    got = b""
    while len(got) < len(data):
        c = s.recv(65536)
        if not c:
            break
        got += c
    s.close()
    return got

cases = {
    "garbage": b"\x01\x02\x03 not a request\r\n\r\n",
    "SSH banner": b"SSH-2.0-OpenSSH_9.2\r\n",
    "bad HTTP version": b"GET / HTTP/2.0\r\nHost: app.example.com\r\n\r\n",
    "bad Host": b"GET / HTTP/1.1\r\nHost: app example.com\r\n\r\n",
    "oversized": b"GET / HTTP/1.1\r\n" + b"X-Pad: " + b"a" * 17000 + b"\r\n",
}
for name, data in cases.items():
    got = exchange(data)
    if got != data:
        sys.exit(f"{name}: echo backend got {len(got)} of {len(data)} bytes back")
# Truncated: half a request, then the client shuts down writing.
data = b"GET / HTTP/1.1\r\nHo"
if exchange(data, shut=True) != data:
    sys.exit("truncated request not passed to the default route")
# Slow: an incomplete request and nothing more; after --peek-timeout it goes to the default.
start = time.time()
data = b"GET / HTTP/1.1\r\n"
if exchange(data) != data:
    sys.exit("slow request not passed to the default route")
took = time.time() - start
if not 0.4 < took < 3:
    sys.exit(f"the peek timeout took {took:.2f} s, want about 0.5")
print("all malformed first bytes reached the default route unchanged")
PY
	stop_proxy
	[ "$(summary 'peek failures')" -ge 7 ] || fail "peek failures were not counted"

	start_proxy $1 --route-host "app.example.com=$T/app.sock" --peek-fail close --peek-timeout 500ms \
		"$T/echo.sock"
	python3 - "$PORT" <<'PY' || fail "--peek-fail close ($1)"
import socket, sys
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(b"\x01\x02 garbage\r\n")
try:
    got = s.recv(100)
except ConnectionResetError:
    got = b""
if got:
    sys.exit(f"got {got!r}, want the connection closed")
print("garbage closed with --peek-fail close")
PY
	[ "$(http_to app.example.com)" = "${pid[app]}" ] || fail "valid request with --peek-fail close ($1)"
	stop_proxy
}
for m in "--mode bpf" "--mode bpf --kernel-upload --allow-unbounded-upload" "--mode splice"; do
	log "mode: $m"
	one_mode "$m"
done
echo "ok"
