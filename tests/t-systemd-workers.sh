#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# --workers under a real systemd (252, PID 1 in a container), with the shipped units plus only
# /etc/sockredir/w.conf (which sets workers = 2) and the listen drop-in:
#
# - the main pid is the supervisor, and it alone talks to systemd about the instance: READY=1
#   (systemctl start returns), STATUS= and WATCHDOG=1 arrive under NotifyAccess=main (a drop-in:
#   the unit ships NotifyAccess=all, which workers need to store their connections' fds, see
#   t-systemd-keep.sh), the journal has no refused notification, and sockredir says that with
#   NotifyAccess=main connections will not survive a restart;
# - both workers serve, every byte right, on the kernel path;
# - systemctl reload returns once both workers have reloaded;
# - systemctl stop sends SIGTERM to every process of the unit (KillMode=control-group): a
#   transfer in flight finishes, Result=success, the pins are gone.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/systemd-lib.sh"
sd_setup "$@"

P=8301
U=sockredir@w.service

sd_backend be-app /run/app/app.sock echo
printf 'backend = /run/app/app.sock\nworkers = 2\n' | ct_write /etc/sockredir/w.conf 0644
sd_instance w $P
printf '[Service]\nNotifyAccess=main\n' | ct_write /etc/systemd/system/$U.d/notify-main.conf 0644
ct_systemctl daemon-reload
ct_systemctl start "$U" || fail "systemctl start $U failed"

# The supervisor and its two workers, all in the unit's cgroup.
main=$(sd_main_pid "$U")
n=$(ct sh -c "cat /sys/fs/cgroup\$(systemctl show -P ControlGroup $U)/cgroup.procs" | wc -l)
[ "$n" = 3 ] || fail "want 3 processes (the supervisor and 2 workers) in $U, got $n"
log "main pid $main, $n processes"

sd_lone $P
"$SRPEER" client --connect 127.0.0.1:$P --timeout 30 --test rr --conns 40 --parallel 8 --size 64K \
	--rounds 4 --quiet || fail "round trips through 2 workers"
j=$(sd_stats w) || fail "sockredir stats --json w failed inside the container"
log "stats w: $j"
[ "$(sd_stat_field "$j" dispatch.workers)" = 2 ] || fail "sockredir stats does not show 2 workers: $j"
sd_kernel_served "$j" 41 || fail "did not take the kernel path as dispatched: $j"
ct_journal "$U" -o cat >"$T/journal.txt"
grep -q '^worker 1: Forwarding' "$T/journal.txt" && grep -q '^worker 2: Forwarding' "$T/journal.txt" ||
	fail "both workers should have started serving"

# STATUS= and WATCHDOG=1 come from the main pid, so NotifyAccess=main takes them.
status_ok() { ct_systemctl show -P StatusText "$U" | grep -q '^Kernel path: [0-9]* open, [0-9]* accepted'; }
wait_for "STATUS= with the counts" 5 status_ok
ts0=$(ct_systemctl show -P WatchdogTimestampMonotonic "$U")
wd_moved() { [ "$(ct_systemctl show -P WatchdogTimestampMonotonic "$U")" != "$ts0" ]; }
wait_for "a WATCHDOG=1 from the supervisor" 30 wd_moved

# systemctl reload: sockredir reload waits for both workers.
ct_systemctl reload "$U" || fail "systemctl reload with 2 workers failed: $(ct_journal "$U" -o cat | tail -n 5)"
ct_journal "$U" -o cat >"$T/journal.txt"
grep -q '^worker 1: Reloaded' "$T/journal.txt" && grep -q '^worker 2: Reloaded' "$T/journal.txt" ||
	fail "systemctl reload returned before both workers had reloaded"
[ "$(sd_stat_field "$(sd_stats w)" reloads)" = 2 ] || fail "want 2 reloads counted (one per worker)"

# systemctl stop with a transfer in flight: every process gets SIGTERM, the transfer finishes.
"$SRPEER" client --connect 127.0.0.1:$P --timeout 30 --test rr --size 16M --rounds 32 >"$T/down.out" 2>&1 &
dpid=$!
BG_PIDS+=("$dpid")
in_flight() { [ "$(sd_stat_field "$(sd_stats w)" open)" -ge 1 ]; }
wait_for "the transfer to be accepted" 10 in_flight
ct_systemctl stop sockredir@w.socket "$U" || fail "systemctl stop $U failed"
wait "$dpid" || fail "the transfer in flight at systemctl stop did not finish: $(cat "$T/down.out")"
result=$(ct_systemctl show -P Result "$U")
[ "$result" = success ] || fail "$U ended with Result=$result"
ct test ! -e /sys/fs/bpf/sockredir/w || fail "pins left in /sys/fs/bpf/sockredir/w after stop"

grep -q 'with --workers, each worker stores its own, which systemd accepts only with NotifyAccess=all' \
	"$T/journal.txt" || fail "no word that connections won't survive a restart under NotifyAccess=main"
# Nothing refused: every notification came from the main pid.
ct_journal "$U" -o cat >"$T/journal.txt"
! grep -i 'reception only permitted for main PID' "$T/journal.txt" ||
	fail "systemd refused a notification from a worker (above)"
log "ok"
