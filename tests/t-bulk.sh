#!/bin/bash
# 256 MiB client->backend and 256 MiB backend->client in every mode, every byte checked.
. "$(dirname "$0")/lib.sh"
setup "$@"

start_backend proto

one_mode() {
	start_proxy $1
	client --test up --size 256M || fail "256 MiB upload ($1)"
	client --test down --size 256M || fail "256 MiB download ($1)"
	stop_proxy
	case $1 in
	*kernel-upload*)
		[ "$(summary 'kernel up')" -ge $((256 << 20)) ] || fail "upload did not move in the kernel"
		;;
	*bpf*)
		[ "$(summary 'kernel down')" -ge $((256 << 20)) ] || fail "download did not move in the kernel"
		[ "$(summary 'spliced up')" -ge $((256 << 20)) ] || fail "upload was not spliced"
		;;
	*splice*)
		[ "$(summary 'spliced down')" -ge $((256 << 20)) ] || fail "download was not spliced"
		;;
	esac
}
run_modes one_mode

stop_backend
[ "$(backend_errors)" = 0 ] || fail "the backend counted errors"
echo "ok"
