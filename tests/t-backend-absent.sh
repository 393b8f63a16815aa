#!/bin/bash
# With no backend listening, a client gets EOF within 1 s (with --connect-timeout 0: a single
# attempt; the default waits for the backend to appear, see t-failover) and the proxy keeps
# serving; once the backend is back, the next client is served.
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
	grep -q 'Failed to connect to backend' "$PROXY_LOG" || fail "the connect failure was not logged"
	[ "$(grep -c 'Failed to connect to backend' "$PROXY_LOG")" = 1 ] ||
		fail "connect failures in one burst must be logged once"
	[ "$(summary 'backend connect failures')" = 3 ] || fail "expected 3 connect failures counted"
}
run_modes one_mode
echo "ok"
