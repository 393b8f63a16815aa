#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Established connections kept across `systemctl restart` and across a crash (SIGKILL of the main
# process, then the shipped Restart=on-failure), through systemd's fd store, under a real
# systemd (252, PID 1 in a container) with the shipped units plus only /etc/sockredir/NAME.conf
# and the listen drop-in.
#
# For each mover (mode = bpf; bpf with kernel-upload; splice; auto, which carries all but the first
# connections in userspace at this load, on recv()/send() while paced), then bpf with workers = 2: 1,000
# connections (srpeer client --test duplex, from outside the container) upload and download at
# once, paced over 40 s, some half-closing mid-way either way (see srpeer --help); once the events
# are over the rest goes unpaced (srpeer --unpace-file, both ends), so that a slow machine still
# has every transfer running through every event, and a fast one doesn't wait. 2 s after all
# are established: `systemctl restart` (it must return within 2 s); 2 s later, with every
# transfer still running: `systemctl kill --kill-whom=main --signal=SIGKILL` and Restart=on-failure
# brings it back (RestartSec= as shipped: the default, 100 ms); with workers, 1.5 s later, a
# SIGKILL of one worker, which restarts the whole instance so that the next one takes every
# connection over, the dead worker's too. Then:
# - srpeer checks every byte both ways (the backend checks the upload), and that no connection
#   saw a reset or an early EOF; the backend saw each connection exactly once (nothing was
#   reconnected behind the client's back) and counted no error;
# - after each event the new process's journal says "Restored N connection(s)" (N summed over
#   "worker K: Restored ..." lines when there are workers), and `sockredir stats --json` has
#   "restored" = N = 1,000; before each event "kept" = 1,000 (every connection is over 1 s old);
# - once every connection has closed, NFileDescriptorStore is back to its value right after
#   `systemctl start` within 4 s, "kept" is 0, and after `systemctl stop` it is 0.
# It prints how long each restart took, and PID 1's CPU time (utime + stime of the container's
# systemd, from /proc/PID/stat) across each event: figures, not checked.
#
# The instances set drain-timeout = 2s. The drain is for stop only; a restart that still drained
# would otherwise let these transfers finish inside the default 10 s drain and look kept.
#
# A failed check is recorded and the test goes on to the next one and the next mover, so that a
# run shows every check that fails; it fails at the end with the list.
#
#   KEEP_EVENTS=no   the dry run: the same load and checks, without restart or kill (what must
#                    pass on a build without the feature too)
#   KEEP_CONNS, KEEP_SIZE, KEEP_DURATION_MS   the load (1000, 256K each way, 40000)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/systemd-lib.sh"
sd_setup "$@"
need_cmd ss awk getconf

CONNS=${KEEP_CONNS:-1000}
SIZE=${KEEP_SIZE:-256K}
DURATION_MS=${KEEP_DURATION_MS:-40000}
EVENTS=${KEEP_EVENTS:-yes}
# How long after the last connection closed NFileDescriptorStore may take to come back.
STORE_SECS=4
CLK_TCK=$(getconf CLK_TCK)

FAILS=()
PHASE=""
CPU_NOTES=()
SUMMARY=() # one line per phase
EV_NOTES="" # the current phase's event timings, for its summary line

# kfail MESSAGE: record a failed check of the current phase and go on.
kfail() {
	echo "# FAIL ($PHASE): $*" >&2
	FAILS+=("$PHASE: $*")
}

# PID 1's CPU time (utime + stime) in ms: the container's systemd, which keeps the fd store.
pid1_cpu_ms() {
	awk -v hz="$CLK_TCK" '{ print int(($14 + $15) * 1000 / hz) }' "/proc/$SD_PID1/stat"
}

show() { # UNIT PROPERTY
	ct_systemctl show -P "$2" "$1"
}

# stat_of NAME KEY: an integer field of `sockredir stats --json NAME`, or "missing".
stat_of() {
	local j
	j=$(sd_stats "$1" 2>/dev/null) || {
		echo "no-stats"
		return
	}
	python3 -c 'import json, sys
v = json.loads(sys.argv[1]).get(sys.argv[2])
print(v if isinstance(v, int) and not isinstance(v, bool) else "missing" if v is None else repr(v))' "$j" "$2"
}

journal_cursor() {
	ct journalctl -q -n 0 --show-cursor | sed -n 's/^-- cursor: //p'
}

# restored_since UNIT CURSOR: N of "Restored N connection(s)" logged by UNIT after CURSOR, or
# "none". Workers each log their own line ("worker K: Restored ..."), which add up; a line
# without that prefix is taken as the total.
restored_since() {
	{ ct_journal "$1" --after-cursor="$2" -o cat || true; } | python3 -c 'import re, sys
total, workers, seen = None, 0, False
for line in sys.stdin:
    m = re.search(r"Restored (\d+) connection\(s\)", line)
    if not m:
        continue
    seen = True
    if re.match(r"worker \d+: ", line):
        workers += int(m.group(1))
    else:
        total = (total or 0) + int(m.group(1))
print(total if total is not None else workers if seen else "none")'
}

client_running() { kill -0 "$CLIENT_PID" 2>/dev/null; }
client_gone() { ! client_running; }

# check_restored UNIT NAME CURSOR EVENT: the journal line and the stats, after EVENT.
check_restored() {
	local unit=$1 name=$2 cur=$3 ev=$4 n r
	restored_logged() { [ "$(restored_since "$unit" "$cur")" != none ]; }
	poll 5 restored_logged || true
	n=$(restored_since "$unit" "$cur")
	r=$(stat_of "$name" restored)
	log "$PHASE: after $ev: journal 'Restored N connection(s)': N=$n; stats restored=$r"
	if [ "$n" = none ]; then
		kfail "after $ev: no 'Restored N connection(s)' in the journal within 5 s, want N=$CONNS"
	elif [ "$n" != "$CONNS" ]; then
		kfail "after $ev: the journal says 'Restored $n connection(s)', want $CONNS"
	fi
	[ "$r" = "$CONNS" ] || kfail "after $ev: stats restored=$r, want $CONNS"
}

# check_kept NAME UNIT WHEN: before an event, every connection is in the fd store.
check_kept() {
	local k
	k=$(stat_of "$1" kept)
	log "$PHASE: $3: stats kept=$k, open=$(stat_of "$1" open)," \
		"NFileDescriptorStore=$(show "$2" NFileDescriptorStore)"
	[ "$k" = "$CONNS" ] || kfail "$3: stats kept=$k, want $CONNS (every connection is over 1 s old)"
}

event_restart() {
	local unit=$1 name=$2 cur t0 dt c0 c1 pid0
	cur=$(journal_cursor)
	pid0=$(sd_main_pid "$unit")
	c0=$(pid1_cpu_ms)
	t0=$EPOCHREALTIME
	ct timeout 60 systemctl --no-pager restart "$unit" || kfail "systemctl restart failed"
	dt=$(since "$t0")
	c1=$(pid1_cpu_ms)
	log "$PHASE: systemctl restart took ${dt}s (main pid $pid0 -> $(sd_main_pid "$unit"));" \
		"PID 1 CPU across it: $((c1 - c0)) ms"
	CPU_NOTES+=("$PHASE restart: ${dt}s, PID 1 CPU $((c1 - c0)) ms")
	EV_NOTES+="restart ${dt}s; "
	awk -v d="$dt" 'BEGIN { exit !(d < 2) }' ||
		kfail "systemctl restart took ${dt}s with $CONNS transfers running, want < 2 s"
	client_running || kfail "no transfer was left running after the restart"
	check_restored "$unit" "$name" "$cur" restart
}

back_up() { # UNIT OLD-PID OLD-NRESTARTS: a new main process, active, restarted once more
	local p
	p=$(sd_main_pid "$1")
	[ "${p:-0}" -gt 0 ] && [ "$p" != "$2" ] && [ "$(show "$1" ActiveState)" = active ] &&
		[ "$(show "$1" NRestarts)" -gt "$3" ]
}

event_kill() {
	local unit=$1 name=$2 cur t0 dt c0 c1 pid0 nr0
	cur=$(journal_cursor)
	pid0=$(sd_main_pid "$unit")
	nr0=$(show "$unit" NRestarts)
	c0=$(pid1_cpu_ms)
	t0=$EPOCHREALTIME
	ct_systemctl kill --kill-whom=main --signal=SIGKILL "$unit" ||
		kfail "systemctl kill --kill-whom=main --signal=SIGKILL failed"
	if ! poll 15 back_up "$unit" "$pid0" "$nr0"; then
		kfail "not back within 15 s of the SIGKILL: $(ct_systemctl show -p ActiveState \
			-p SubState -p Result -p MainPID -p NRestarts "$unit" | tr '\n' ' ')"
		return
	fi
	dt=$(since "$t0")
	c1=$(pid1_cpu_ms)
	log "$PHASE: SIGKILL of main pid $pid0: back as pid $(sd_main_pid "$unit") (Restart=on-failure," \
		"RestartSec=$(show "$unit" RestartUSec)) after ${dt}s; PID 1 CPU across it: $((c1 - c0)) ms"
	CPU_NOTES+=("$PHASE SIGKILL+auto-restart: ${dt}s, PID 1 CPU $((c1 - c0)) ms")
	EV_NOTES+="back ${dt}s after the SIGKILL; "
	client_running || kfail "no transfer was left running after the SIGKILL"
	check_restored "$unit" "$name" "$cur" "SIGKILL"
}

# With workers: SIGKILL of one worker. Its connections are in the store, which only a new process
# can take them back from, so the supervisor restarts the whole instance (exit 1, then
# Restart=on-failure), the other worker handing its connections over on the way.
event_kill_worker() {
	local unit=$1 name=$2 cur t0 dt pid0 nr0 w
	cur=$(journal_cursor)
	pid0=$(sd_main_pid "$unit")
	nr0=$(show "$unit" NRestarts)
	w=$(ct sh -c "cat /sys/fs/cgroup\$(systemctl show -P ControlGroup $unit)/cgroup.procs" |
		grep -vx "$pid0" | head -n 1 || true)
	if [ -z "$w" ]; then
		kfail "no worker process to kill in $unit"
		return
	fi
	t0=$EPOCHREALTIME
	ct kill -KILL "$w" || kfail "kill -KILL of worker $w failed"
	if ! poll 15 back_up "$unit" "$pid0" "$nr0"; then
		kfail "not back within 15 s of a worker's SIGKILL: $(ct_systemctl show -p ActiveState \
			-p SubState -p Result -p MainPID -p NRestarts "$unit" | tr '\n' ' ')"
		return
	fi
	dt=$(since "$t0")
	log "$PHASE: SIGKILL of worker $w: the instance restarted (main pid $pid0 ->" \
		"$(sd_main_pid "$unit")), back after ${dt}s"
	EV_NOTES+="back ${dt}s after a worker's SIGKILL; "
	client_running || kfail "no transfer was left running after the worker's SIGKILL"
	check_restored "$unit" "$name" "$cur" "a worker's SIGKILL"
}

# The backend's summary ("srpeer backend: N connections, M errors", at SIGTERM), and its errors.
check_backend() {
	local unit=$1 line n e
	ct_systemctl stop "$unit"
	ct_journal "$unit" -o cat >"$T/$unit.log"
	line=$(grep -E '^srpeer backend: [0-9]+ connections, [0-9]+ errors$' "$T/$unit.log" |
		tail -n 1 || true)
	n=$(echo "$line" | awk '{ print $3 }')
	e=$(echo "$line" | awk '{ print $5 }')
	log "$PHASE: backend: ${line:-no summary}"
	[ "${n:-x}" = "$CONNS" ] ||
		kfail "the backend saw ${n:-?} connections, want $CONNS (one per client connection: none reconnected)"
	if [ "${e:-x}" != 0 ]; then
		grep 'srpeer backend: conn' "$T/$unit.log" | grep -v ': note: ' |
			sed -E 's/conn [0-9]+: //; s/[0-9]+/N/g' | sort | uniq -c | sort -rn | head -n 5 |
			sed 's/^/#   backend errors: /' || true
		kfail "the backend counted ${e:-?} errors (the upload of the connections whose backend half-closed first is checked there)"
	fi
}

# phase NAME PORT [CONFIG LINES...]: one instance, the load, the events, the checks.
phase() {
	local name=$1 port=$2 unit=sockredir@$1.service be=be-$1 base t_rel rc t0 line result late
	local nfails=${#FAILS[@]}
	shift 2
	PHASE=$name
	EV_NOTES=""
	log "--- $name: $* ($CONNS connections, $SIZE each way over ${DURATION_MS} ms," \
		"events: $EVENTS)"
	sd_backend "$be" "/run/$name/app.sock" proto --unpace-file "/run/$name/unpace"
	{
		printf 'backend = /run/%s/app.sock\ndrain-timeout = 2s\n' "$name"
		[ $# = 0 ] || printf '%s\n' "$@"
	} | ct_write "/etc/sockredir/$name.conf" 0644
	sd_instance "$name" "$port"
	ct_systemctl start "$unit" || fail "systemctl start $unit failed"
	sleep 0.5
	base=$(show "$unit" NFileDescriptorStore)
	log "$name: NFileDescriptorStore=$base after start (the baseline);" \
		"FileDescriptorStoreMax=$(show "$unit" FileDescriptorStoreMax)"

	# --hold: the client creates the file once every connection is open, and sends the requests
	# and starts the paced transfers when the test removes it.
	rm -f "$T/hold"
	# shellcheck disable=SC2086 # CLIENT_OPTS: words
	"$SRPEER" client --connect "127.0.0.1:$port" --test duplex --conns "$CONNS" --barrier \
		--hold "$T/hold" --size "$SIZE" --duration "$DURATION_MS" ${CLIENT_OPTS:-} \
		--unpace-file "$T/unpace-$name" \
		--timeout $((DURATION_MS / 1000 + 40)) >"$T/client-$name.log" 2>&1 &
	CLIENT_PID=$!
	BG_PIDS+=("$CLIENT_PID")
	hold_or_gone() { [ -e "$T/hold" ] || ! client_running; }
	poll 30 hold_or_gone || fail "$CONNS connections not open within 30 s: $(tail -n 3 "$T/client-$name.log")"
	[ -e "$T/hold" ] || fail "the client ended before all $CONNS connections were open: $(tail -n 5 "$T/client-$name.log")"
	# Every connection is open: the proxy holds them all, each with its backend connection.
	all_open() { [ "$(stat_of "$name" open)" = "$CONNS" ]; }
	poll 10 all_open || fail "sockredir@$name does not hold $CONNS connections: $(sd_stats "$name")"
	rm -f "$T/hold"
	t_rel=$EPOCHREALTIME
	log "$name: $CONNS connections open, transferring from now"

	if [ "$EVENTS" = yes ]; then
		sleep "$(awk -v t="$(since "$t_rel")" 'BEGIN { d = 2 - t; print (d > 0 ? d : 0) }')"
		check_kept "$name" "$unit" "before the restart"
		event_restart "$unit" "$name"
		sleep 2
		check_kept "$name" "$unit" "before the SIGKILL"
		# The SIGKILL must find every transfer running, with time left to see them go on.
		late=$(awk -v t="$(since "$t_rel")" -v d="$DURATION_MS" \
			'BEGIN { print (t > d / 1000 - 3) ? t : "" }')
		[ -z "$late" ] || ! client_running ||
			kfail "this machine is too slow for the test: the SIGKILL comes" \
				"${late}s into transfers of ${DURATION_MS} ms (raise KEEP_DURATION_MS)"
		event_kill "$unit" "$name"
		if [ "$name" = workers ]; then
			sleep 1.5
			check_kept "$name" "$unit" "before a worker's SIGKILL"
			event_kill_worker "$unit" "$name"
		fi
		# The events are over: the rest of every transfer goes unpaced, both ends.
		touch "$T/unpace-$name"
		ct touch "/run/$name/unpace"
	fi

	# srpeer bounds itself (--timeout, then its watchdog); this only bounds the wait.
	poll $((DURATION_MS / 1000 + 60)) client_gone || fail "srpeer client did not end"
	rc=0
	wait "$CLIENT_PID" || rc=$?
	log "$name: client done $(since "$t_rel")s after the release, status $rc"
	# The fd store, measured from the client's last close (before the backend goes away).
	t0=$EPOCHREALTIME
	store_back() { [ "$(show "$unit" NFileDescriptorStore)" = "$base" ]; }
	if poll "$STORE_SECS" store_back; then
		log "$name: NFileDescriptorStore back to $base $(since "$t0")s after the last connection closed"
	else
		kfail "NFileDescriptorStore is $(show "$unit" NFileDescriptorStore), not back to $base within ${STORE_SECS}s of the last close"
	fi
	if [ $rc = 0 ]; then
		log "$name: $(cat "$T/client-$name.log")"
		result="every byte right, no reset"
	else
		grep 'FAIL conn=' "$T/client-$name.log" | head -n 5 | sed 's/^/#   /' || true
		line=$(grep -E '^srpeer: [0-9]+ of [0-9]+ connections failed' "$T/client-$name.log" || true)
		result="${line#srpeer: } ($(grep -o 'failed by kind:.*' "$T/client-$name.log" ||
			tail -n 1 "$T/client-$name.log"))"
		kfail "$result"
	fi
	check_backend "$be"

	if [ "$EVENTS" = yes ]; then
		line=$(stat_of "$name" kept)
		[ "$line" = 0 ] || kfail "stats kept=$line once every connection closed, want 0"
	fi
	ct_systemctl stop "sockredir@$name.socket" "$unit" || kfail "systemctl stop failed"
	line=$(show "$unit" NFileDescriptorStore)
	[ "$line" = 0 ] || kfail "NFileDescriptorStore=$line after systemctl stop, want 0"
	log "$name: done in $(since "$t_rel")s"
	SUMMARY+=("$name: srpeer: $result; ${EV_NOTES}$((${#FAILS[@]} - nfails)) failed checks")
}

# PID 1 keeps the stored fds: 2 per connection, under its own fd limit.
lim=$(ct awk '/^Max open files/ { print $4 }' /proc/1/limits)
log "the container's PID 1: fd limit $lim (needs about $((2 * CONNS)) for the fd store)"
[ "$lim" = unlimited ] || [ "$lim" -ge $((4 * CONNS)) ] ||
	fail "PID 1's fd limit is $lim: too low to store $CONNS connections"

# A warm-up without events, small and short: the load and its checks pass through this harness
# on this build, so that whatever fails below is the events'.
saved="$CONNS $DURATION_MS $EVENTS"
CONNS=120 DURATION_MS=1500 EVENTS=no
phase warmup 8400 'mode = bpf'
[ ${#FAILS[@]} = 0 ] || fail "the warm-up without events failed: ${FAILS[*]}"
read -r CONNS DURATION_MS EVENTS <<<"$saved"

phase bpf 8401 'mode = bpf'
# Without the backend half-closing first: a Unix peer's shutdown() takes our socket out of the
# sockmap and cuts a kernel upload, restart or not (README.md, "Known limits").
CLIENT_OPTS=--no-backend-halfclose \
	phase kupload 8402 'mode = bpf' 'kernel-upload = yes' 'allow-unbounded-upload = yes'
phase splice 8403 'mode = splice'
phase auto 8405 'mode = auto'
phase workers 8404 'mode = bpf' 'workers = 2'

if [ ${#CPU_NOTES[@]} -gt 0 ]; then
	log "restart times and PID 1 CPU per event:"
	printf '#   %s\n' "${CPU_NOTES[@]}"
fi
printf '# %s\n' "${SUMMARY[@]}" >"$T/summary"
if [ ${#FAILS[@]} -gt 0 ]; then
	printf '# %d failed checks:\n' "${#FAILS[@]}" >&2
	printf '#   %s\n' "${FAILS[@]}" >&2
	cat "$T/summary"
	SD_FAIL_SUMMARY=$T/summary
	fail "${#FAILS[@]} checks failed (each above as 'FAIL (mover)'; by mover at the end)"
fi
cat "$T/summary"
sd_check_sanitizers
log "ok"
