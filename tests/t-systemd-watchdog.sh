#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# WatchdogSec= under a real systemd (252, PID 1 in a container): the shipped units, plus
# /etc/sockredir/wd.conf, the listen drop-in and a drop-in that shortens the watchdog.
#
# - Running normally, sockredir pings the watchdog (WatchdogTimestamp moves) and is left alone.
# - Stopped with SIGSTOP, it misses its pings: systemd kills it (watchdog timeout) and starts it
#   again (Restart=on-failure), NRestarts goes up by one, and the old process is gone.
# - The new process holds the pin directory (its flock()), its counters name it (so
#   `systemctl reload`, which signals the pid in the counters, works), and the next client is
#   served byte for byte on the kernel path. Then `systemctl stop`: Result=success, pins gone.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/systemd-lib.sh"
sd_setup "$@"

P=8201
U=sockredir@wd.service
PINS=/sys/fs/bpf/sockredir/wd

# The drop-in, each setting for the test's sake only:
cat >"$T/watchdog.conf" <<'EOF'
[Service]
# 2 s instead of the unit's 30 s, so the test takes seconds. sockredir pings at half of it.
WatchdogSec=2s
# On a watchdog timeout systemd sends SIGABRT (WatchdogSignal=), then SIGCONT, and SIGKILL if the
# process is still there after TimeoutAbortSec=, which defaults to TimeoutStopSec= (20 s in the
# unit). 5 s bounds the kill; with SIGCONT after SIGABRT, SIGABRT alone should be enough.
TimeoutAbortSec=5s
EOF

sd_backend be-app /run/app/app.sock echo
printf 'backend = /run/app/app.sock\n' | ct_write /etc/sockredir/wd.conf 0644
sd_instance wd $P "$T/watchdog.conf"
ct_systemctl start "$U" || fail "systemctl start $U failed"
[ "$(ct_systemctl show -P WatchdogUSec "$U")" = 2s ] ||
	fail "the drop-in did not set WatchdogSec=2s: $(ct_systemctl show -P WatchdogUSec "$U")"

# check_served MIN: round trips through the instance, byte for byte, on a lone connection and on
# 40 more, and the instance accepted at least MIN and took the kernel path as dispatched.
check_served() {
	local j
	sd_lone $P
	sd_client $P --test rr --conns 40 --parallel 8 --size 64K --rounds 4 --quiet ||
		fail "round trips through sockredir@wd"
	! ct_journal "$U" -o cat | grep -i 'kernel path unavailable' ||
		fail "$U fell back to splice (above)"
	j=$(sd_stats wd) || fail "sockredir stats --json wd failed inside the container"
	log "stats wd: $j"
	sd_kernel_served "$j" "$1" || fail "wd: did not take the kernel path as dispatched: $j"
}

# pin_holder: the pid (as the container sees it) holding the flock() on the pin directory.
pin_holder() {
	local ino
	ino=$(ct stat -c %i "$PINS") || return 1
	ct cat /proc/locks | awk -v ino="$ino" '$2 == "FLOCK" && $6 ~ (":" ino "$") { print $5 }'
}
starttime() { ct cat "/proc/$1/stat" 2>/dev/null | sed 's/.*) //' | cut -d' ' -f20; }

check_served 40
pid1=$(sd_main_pid "$U")
start1=$(starttime "$pid1")
[ "$(pin_holder)" = "$pid1" ] || fail "the pin directory is held by '$(pin_holder)', not by the main pid $pid1"
verdict1=$(ct stat -c %i "$PINS/sr_verdict")
[ "$(ct_systemctl show -P NRestarts "$U")" = 0 ] || fail "$U restarted already"

# Running normally, it pings: WatchdogTimestampMonotonic moves, twice.
wd_ts() { ct_systemctl show -P WatchdogTimestampMonotonic "$U"; }
ts0=$(wd_ts)
wd_moved() { [ "$(wd_ts)" != "$ts0" ]; }
wait_for "a WATCHDOG=1 from sockredir" 5 wd_moved
ts0=$(wd_ts)
wait_for "a second WATCHDOG=1 from sockredir" 5 wd_moved
[ "$(sd_main_pid "$U")" = "$pid1" ] && [ "$(ct_systemctl show -P NRestarts "$U")" = 0 ] ||
	fail "systemd restarted a sockredir that pinged its watchdog"

# --- SIGSTOP: killed at the watchdog timeout, then started again.
t0=$SECONDS
ct kill -STOP "$pid1" || fail "kill -STOP $pid1"
# Clients that connect while it hangs wait in the listen backlog, which belongs to the socket
# unit: the next sockredir must serve them.
sd_client $P --test rr --conns 4 --parallel 4 --size 64K --rounds 2 --quiet >"$T/hung-client.log" 2>&1 &
HUNG_CLIENT=$!
BG_PIDS+=("$HUNG_CLIENT")
restarted() {
	local pid
	pid=$(sd_main_pid "$U")
	[ "$(ct_systemctl show -P NRestarts "$U")" = 1 ] && [ "${pid:-0}" -gt 0 ] &&
		[ "$pid" != "$pid1" ] && [ "$(ct_systemctl show -P SubState "$U")" = running ]
}
restart_fail() {
	ct_journal "$U" | tail -n 20 >&2
	fail "$* (NRestarts=$(ct_systemctl show -P NRestarts "$U"), MainPID=$(sd_main_pid "$U"), $(ct_systemctl show -P ActiveState "$U")/$(ct_systemctl show -P SubState "$U"))"
}
# 2 s of watchdog, at most 5 s of TimeoutAbortSec=, the restart: 20 s is plenty.
WAIT_FOR_FAIL=restart_fail wait_for "systemd to kill the stopped sockredir and start it again" 20 restarted
pid2=$(sd_main_pid "$U")
log "stopped pid $pid1 at ${t0}s; pid $pid2 running after $((SECONDS - t0))s"
ct_journal "$U" -o cat >"$T/journal.txt"
for line in "sockredir@wd.service: Watchdog timeout (limit 2s)!" \
	"sockredir@wd.service: Killing process $pid1 (sockredir) with signal SIGABRT." \
	"sockredir@wd.service: Failed with result 'watchdog'." \
	"sockredir@wd.service: Scheduled restart job, restart counter is at 1."; do
	grep -qxF "$line" "$T/journal.txt" || {
		tail -n 30 "$T/journal.txt" >&2
		fail "the journal of $U lacks: $line"
	}
done
grep -E 'Watchdog timeout|Killing process|Main process exited|Failed with result|Scheduled restart|Started sockredir' \
	"$T/journal.txt" | sed 's/^/# journal: /'
if grep -qF "Killing process $pid1 (sockredir) with signal SIGKILL" "$T/journal.txt"; then
	log "note: SIGABRT did not end pid $pid1; systemd needed SIGKILL after TimeoutAbortSec="
fi
# The old process is gone (the same pid now would be another process, with another start time).
[ "$(starttime "$pid1")" != "$start1" ] || fail "the stopped sockredir (pid $pid1) is still there"

# --- The new process owns the pins: it holds the lock, and its counters name it.
ct test -d "$PINS" || fail "no pin directory $PINS for the new pid $pid2"
[ "$(pin_holder)" = "$pid2" ] || fail "the pin directory is held by '$(pin_holder)', not by the new main pid $pid2"
[ "$(ct ls /sys/fs/bpf/sockredir)" = wd ] || fail "other pin directories: $(ct ls /sys/fs/bpf/sockredir)"
verdict2=$(ct stat -c %i "$PINS/sr_verdict")
if [ "$verdict2" = "$verdict1" ]; then
	log "the pins were reused (sr_verdict inode $verdict1)"
else
	log "the pins were replaced (sr_verdict inode $verdict1 -> $verdict2)"
fi
# The clients that connected during the hang, served by the new process (srpeer's --timeout,
# 30 s, bounds them).
wait "$HUNG_CLIENT" || {
	cat "$T/hung-client.log" >&2
	fail "the clients that connected while sockredir was stopped were not served after the restart"
}
check_served 44
ct_systemctl reload "$U" ||
	fail "systemctl reload after the restart failed (do the counters name the new pid $pid2?): $(ct_journal "$U" -o cat | tail -n 5)"
[ "$(sd_stat_field "$(sd_stats wd)" reloads)" = 1 ] || fail "the reload was not counted by the new instance"
[ "$(ct_systemctl show -P NRestarts "$U")" = 1 ] && [ "$(sd_main_pid "$U")" = "$pid2" ] ||
	fail "$U restarted again"

# --- And it stops cleanly.
ct_systemctl stop sockredir@wd.socket "$U" || fail "systemctl stop $U failed"
result=$(ct_systemctl show -P Result "$U")
[ "$result" = success ] || fail "$U ended with Result=$result"
ct test ! -e "$PINS" || fail "pins left in $PINS after stop"
log "ok"
