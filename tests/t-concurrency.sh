#!/bin/bash
# 1,000 connections open at the same time, all served correctly; afterwards the proxy holds no
# more fds than before them.
. "$(dirname "$0")/lib.sh"
setup "$@"

start_backend echo

one_mode() {
	start_proxy $1
	# One connection first, so that the proxy is fully up before counting its fds.
	client --test rr --size 1 --quiet || fail "first connection ($1)"
	sleep 0.3
	local before after
	before=$(proxy_fds)
	client --test rr --size 4K --rounds 5 --conns 1000 --barrier || fail "1000 concurrent connections ($1)"
	# The last connections close right after the client's EOF; give the proxy a moment.
	wait_for "fds to return to $before" 10 proxy_fds_at_most "$before"
	after=$(proxy_fds)
	log "proxy fds before $before, after $after"
	stop_proxy
	[ "$(summary accepted)" -ge 1000 ] || fail "expected 1000 connections"
}
run_modes one_mode

stop_backend
[ "$(backend_errors)" = 0 ] || fail "the backend counted errors"
echo "ok"
