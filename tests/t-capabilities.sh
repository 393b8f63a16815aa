#!/bin/bash
# Least privilege, measured: which capabilities loading needs (each one is taken away in turn),
# that sockredir keeps only CAP_BPF (and CAP_NET_ADMIN with --kernel-upload) once the kernel
# path is attached and still moves every byte, and that the pins are 0600 so another uid can't
# open the maps even with CAP_BPF.
. "$(dirname "$0")/lib.sh"
need_cmd setpriv bpftool
setup "$@"

start_backend proto

# run_with CAPS: start sockredir --mode bpf as root with only CAPS (e.g. "bpf,perfmon") in its
# bounding set; print "ok" (served a 16 MiB upload), "broken" or "refused" (did not start).
# CAP_SYS_ADMIN stands in for CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN in the kernel's checks,
# so it must be gone for the others to be measured.
run_with() {
	local name=cap$$-${1//,/-} rc=0
	PIN_NAMES+=("$name")
	setpriv --bounding-set "-all,+${1//,/,+}" --inh-caps "-all" -- "$SOCKREDIR" --mode bpf \
		--name "$name" --listen 127.0.0.1:$PORT "$T/backend.sock" 2>"$T/cap-$1.log" &
	local pid=$!
	# --listen binds before BPF loads: wait for "Forwarding" (serving) or the exit.
	for _ in $(seq 100); do
		grep -q 'Forwarding' "$T/cap-$1.log" && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.05
	done
	if kill -0 $pid 2>/dev/null; then
		client --test up --size 16M >/dev/null || rc=1
		kill -TERM $pid
		wait $pid || rc=1
		[ $rc = 0 ] && echo ok || echo broken
	else
		wait $pid || true
		echo refused
	fi
}

declare -A want=([bpf,net_admin,perfmon]=ok [net_admin,perfmon]=refused [bpf,perfmon]=refused
	[bpf,net_admin]=refused [sys_admin]=ok)
for caps in bpf,net_admin,perfmon net_admin,perfmon bpf,perfmon bpf,net_admin sys_admin; do
	got=$(run_with $caps)
	why=$(grep -o 'failed to [a-z ]*: [A-Za-z ]*' "$T/cap-$caps.log" | head -n 1 || true)
	log "with only ${caps}: $got${why:+ ($why)}"
	[ "$got" = "${want[$caps]}" ] || fail "with only $caps: $got, want ${want[$caps]}"
done

# After start-up: only CAP_BPF (bit 39) is left, or CAP_BPF and CAP_NET_ADMIN (bit 12).
for m in "--mode bpf" "--mode bpf --kernel-upload --allow-unbounded-upload"; do
	start_proxy $m
	proxy_activate
	client --test up --size 64M || fail "upload after dropping capabilities ($m)"
	client --test down --size 64M || fail "download after dropping capabilities ($m)"
	eff=$(awk '/^CapEff/ {print $2}' "/proc/$PROXY_PID/status")
	case $m in
	*kernel-upload*) want_eff=0000008000001000 ;;
	*) want_eff=0000008000000000 ;;
	esac
	log "$m: CapEff $eff"
	[ "$eff" = "$want_eff" ] || fail "CapEff $eff, want $want_eff ($m)"
	bnd=$(awk '/^CapBnd/ {print $2}' "/proc/$PROXY_PID/status")
	[ "$bnd" = "$want_eff" ] || fail "CapBnd $bnd, want $want_eff ($m)"

	# The pins: 0600, owned by root; uid 65534 with CAP_BPF still can't open them.
	pins=/sys/fs/bpf/sockredir/$PROXY_NAME
	[ "$(stat -c %a "$pins/sr_peers")" = 600 ] || fail "pins are not 0600"
	# Opening a pin checks the file's mode, so not even a read-only open works for another uid
	# (and a read-write one, for an update, asks for more).
	if setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=+bpf --ambient-caps=+bpf -- \
		"$SOCKREDIR" stats --pin-path "$pins" >"$T/other-uid.out" 2>&1; then
		fail "another uid could open the pinned maps"
	fi
	grep -q 'Permission denied' "$T/other-uid.out" ||
		fail "unexpected error for another uid: $(cat "$T/other-uid.out")"
	# The owner, with CAP_BPF only, can read them.
	setpriv --bounding-set -all,+bpf --inh-caps -all -- "$SOCKREDIR" stats --pin-path "$pins" \
		>"$T/owner.out" 2>&1 || fail "root with CAP_BPF only could not read the stats: $(cat "$T/owner.out")"
	stop_proxy
done
echo "ok"
