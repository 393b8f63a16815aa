#!/bin/bash
# 10,000 round trips of 1 B and of 64 KiB through an echo backend, in every mode; every byte is
# compared where it arrives.
. "$(dirname "$0")/lib.sh"
setup "$@"

start_backend echo

one_mode() {
	start_proxy $1
	client --test rr --size 1 --rounds 10000 || fail "1 B round trips ($1)"
	client --test rr --size 64K --rounds 10000 || fail "64 KiB round trips ($1)"
	stop_proxy
	[ "$(summary accepted)" -ge 2 ] || fail "expected 2 connections in the summary"
	case $1 in *bpf*)
		[ "$(summary 'on the kernel path')" = "$(summary accepted)" ] ||
			fail "every connection should have taken the kernel path ($1)"
		;;
	esac
}
run_modes one_mode

stop_backend
[ "$(backend_errors)" = 0 ] || fail "the backend counted errors"
echo "ok"
