#!/bin/bash
# Half-close: the client sends 1 MiB and shuts down writing; the backend answers 1 MiB after it
# sees EOF, and the client gets all of it, then EOF. 200 connections per mode.
. "$(dirname "$0")/lib.sh"
setup "$@"

start_backend proto

one_mode() {
	start_proxy $1
	client --test halfclose --size 1M --conns 200 --parallel 4 || fail "half-close ($1)"
	stop_proxy
	[ "$(summary accepted)" = 200 ] || fail "expected 200 connections, got $(summary accepted)"
}
run_modes one_mode

stop_backend
[ "$(backend_errors)" = 0 ] || fail "the backend counted errors"
echo "ok"
