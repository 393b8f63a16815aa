#!/bin/bash
# The backend replies and closes at once (no shutdown first): 500 connections per mode, with
# replies from 1 byte to 1 MiB. Every reply must arrive whole before the client's EOF.
. "$(dirname "$0")/lib.sh"
setup "$@"

start_backend proto

one_mode() {
	start_proxy $1
	client --test replyclose --size 1M --conns 500 --parallel 8 || fail "reply then close ($1)"
	stop_proxy
	[ "$(summary accepted)" = 500 ] || fail "expected 500 connections, got $(summary accepted)"
}
run_modes one_mode

stop_backend
[ "$(backend_errors)" = 0 ] || fail "the backend counted errors"
echo "ok"
