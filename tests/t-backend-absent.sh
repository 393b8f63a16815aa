#!/bin/bash
# With no backend listening, a client gets EOF within 1 s (with --connect-timeout 0: a single
# attempt; the default waits for the backend to appear, see t-failover) and the proxy keeps
# serving; once the backend is back, the next client is served. At start sockredir says what
# connect() will meet at each backend path: not there yet (a notice), unreachable (a warning
# naming what to change), or not a socket.
. "$(dirname "$0")/lib.sh"
setup "$@"

one_mode() {
	stop_backend
	rm -f "$T/backend.sock"
	start_proxy $1 --connect-timeout 0
	for i in 1 2 3; do
		client --test connect-only --expect-eof-within 1000 || fail "no EOF within 1 s without a backend ($1)"
	done
	start_backend echo
	client --test rr --size 64K --rounds 10 || fail "not served once the backend is back ($1)"
	stop_proxy
	grep -q "Backend $T/backend.sock does not exist yet: clients wait for it" "$PROXY_LOG" ||
		fail "a backend missing at start was not noted ($1)"
	grep -q 'Failed to connect to backend' "$PROXY_LOG" || fail "the connect failure was not logged"
	[ "$(grep -c 'Failed to connect to backend' "$PROXY_LOG")" = 1 ] ||
		fail "connect failures in one burst must be logged once"
	[ "$(summary 'backend connect failures')" = 3 ] || fail "expected 3 connect failures counted"
}
run_modes one_mode

# Paths the process can't use, checked with the privileges connect() has: as nobody, a root-only
# socket (the warning names the uid and the sandbox settings), a directory that is not there, and
# a file that is not a socket. A client to the root-only socket gets the hint too. (The backend
# of the last mode still listens.)
chmod 0755 "$T/backend.sock"
printf 'x' >"$T/plain"
chmod 0755 "$T"
setpriv --reuid 65534 --regid 65534 --clear-groups "$SOCKREDIR" --mode splice --connect-timeout 0 \
	--listen 127.0.0.1:$PORT "$T/backend.sock" /nonexistent-dir$$/x.sock "$T/plain" 2>"$T/nobody.log" &
PROXY_PID=$!
wait_for "listener" 5 port_listening "$PORT"
client --test connect-only --expect-eof-within 1000 >/dev/null 2>&1 || true
kill -TERM "$PROXY_PID"
wait "$PROXY_PID" || fail "sockredir as nobody did not exit cleanly: $(cat "$T/nobody.log")"
PROXY_PID=""
cat "$T/nobody.log"
grep -q "Backend $T/backend.sock can't be reached: Permission denied. .*(uid 65534).*ProtectHome=" \
	"$T/nobody.log" || fail "an unwritable socket was not reported at start"
grep -q "Backend /nonexistent-dir$$/x.sock: its directory does not exist. .*ProtectHome=" \
	"$T/nobody.log" || fail "a missing directory was not reported at start"
grep -q "Backend $T/plain is not a socket" "$T/nobody.log" || fail "a plain file was not reported"
grep -q "Failed to connect to backend .*Permission denied. Closing the client. The socket needs write permission" \
	"$T/nobody.log" || fail "the connect failure did not say where to look"
echo "ok"
