#!/bin/bash
# The client sends and shuts down writing at once, so its FIN is there before the proxy accepts:
# sockmap refuses a TCP socket in CLOSE_WAIT, and the connection must fall back to splice and
# still deliver every byte both ways. 500 connections per mode.
. "$(dirname "$0")/lib.sh"
setup "$@"

start_backend proto

one_mode() {
	start_proxy $1
	client --test sendclose --size 16K --conns 500 --parallel 8 || fail "send and close ($1)"
	stop_proxy
	local accepted kernel fallback
	accepted=$(summary accepted)
	kernel=$(summary 'on the kernel path')
	fallback=$(summary 'client half-closed')
	log "$accepted connections: $kernel on the kernel path, $fallback fell back (client half-closed)"
	[ "$accepted" = 500 ] || fail "expected 500 connections, got $accepted"
	case $1 in *bpf*)
		[ "$fallback" -gt 0 ] || fail "no connection fell back, so the CLOSE_WAIT case was not tested"
		[ $((kernel + fallback)) = "$accepted" ] || fail "kernel + fallbacks != accepted"
		;;
	esac
}
run_modes one_mode

stop_backend
[ "$(backend_errors)" = 0 ] || fail "the backend counted errors"
echo "ok"
