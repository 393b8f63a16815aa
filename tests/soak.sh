#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Soak test: mixed, byte-checked traffic through sockredir for DURATION, with faults at intervals,
# and the proxy's RSS, fds, sockets, open connections and sr_peers entries sampled every 10 s.
#
#   DURATION=10m bash tests/soak.sh        (make soak DURATION=10m; forms: 600, 60s, 10m, 1h30m)
#
# Layout (one network namespace, from lib.sh's setup):
#   - backends (srpeer): echo, banner, proto, and "victim" (proto), which only the faults use;
#   - two sockredir instances, each socket-activated with four named listeners
#     (--fdname=echo:banner:proto:victim, one --route per name), so one proxy serves every kind:
#       bpf     --mode bpf     on 127.0.0.1:8000-8003 (the default layout; 2 runs in 3)
#       splice  --mode splice  on 127.0.0.1:8100-8103 (every third run; SOAK_SPLICE=0: none)
#   - SOAK_PROXY_WORKERS (1) is each instance's --workers; RSS, fds, sockets and pipes are then
#     summed over the supervisor and its workers;
#   - SOAK_WORKERS (4) worker loops cycle through rr 1 B, rr 64 KiB, up and down 64-256 MiB,
#     halfclose, replyclose, sendclose and banner; one more loop churns short connections
#     (1000 x 64 B round trips per run). Every run is srpeer, which checks every byte; a run that
#     fails counts as a failure.
#   - every 20-30 s (SOAK_FAULT_MIN/MAX) the main loop injects one fault, in turn: the victim
#     backend kill -9'd mid-download and mid-upload (then restarted), a client that resets
#     (SO_LINGER 0) mid-download and mid-upload, and the victim's socket file deleted while a
#     client waits, then the backend restarted. The faulted runs are counted apart: they may
#     fail, but the client must learn of the fault (a FIN, an error or its exit) within 5 s
#     (SOAK_STALL_MS), or the soak fails with a STALL. The client waiting for the deleted socket
#     must pass, and so must a run on the victim after each fault.
#   - every 10 s, a CSV row per instance: RSS, fds, sockets, pipes, open connections, sr_peers
#     entries and the byte counters ($SOAK_OUT/trend.csv).
# At the deadline the loops stop starting runs, the open connections must drop to 0, and the
# proxy's sockets and non-pipe fds must come back to their level at the start (spare pipes are
# pooled, so pipes are reported, not compared). Then SIGTERM must give exit status 0.
# Everything lands in $SOAK_OUT (default .output/soak/<date>/): summary.txt, trend.csv,
# runs.txt (one line per run), the proxy and backend logs, and the output of every failed run.
# Exit status: 0 if nothing failed; 1 otherwise (the summary says why); 2 for a bad DURATION.
. "$(dirname "$0")/lib.sh"

# parse_duration 10m -> 600. A number with an optional unit (s, m, h), or several (1h30m).
parse_duration() {
	local s=$1 total=0 n u
	[[ $s =~ ^([0-9]+[smh]?)+$ ]] || return 1
	[[ $s =~ ^[0-9]+$ ]] && s=${s}s
	while [[ $s =~ ^([0-9]+)([smh])(.*)$ ]]; do
		n=$((10#${BASH_REMATCH[1]}))
		u=${BASH_REMATCH[2]}
		s=${BASH_REMATCH[3]}
		case $u in
		s) total=$((total + n)) ;;
		m) total=$((total + n * 60)) ;;
		h) total=$((total + n * 3600)) ;;
		esac
	done
	[ -z "$s" ] && [ $total -gt 0 ] || return 1
	echo $total
}

DURATION=${DURATION:-10m}
if ! DUR_S=$(parse_duration "$DURATION"); then
	echo "soak: bad DURATION '$DURATION' (want e.g. 600, 60s, 10m, 1h30m)" >&2
	exit 2
fi

setup "$@"
need_cmd python3 timeout ss

# Run copies, so that a rebuild during a long soak changes nothing under test.
mkdir -p "$T/bin"
cp "$SOCKREDIR" "$T/bin/sockredir"
cp "$SRPEER" "$T/bin/srpeer"
BIN_INFO="$(sha256sum "$SOCKREDIR" | cut -c1-12) $(ls -l --time-style=+%FT%T "$SOCKREDIR" | awk '{ print $6 }')"
SOCKREDIR=$T/bin/sockredir
SRPEER=$T/bin/srpeer

HERE=$TOP/tests/soak
WORKERS=${SOAK_WORKERS:-4}
PROXY_WORKERS=${SOAK_PROXY_WORKERS:-1}
SPLICE=${SOAK_SPLICE:-1}
SAMPLE_EVERY=${SOAK_SAMPLE_EVERY:-10}
FAULT_MIN=${SOAK_FAULT_MIN:-20}
FAULT_MAX=${SOAK_FAULT_MAX:-30}
MAX_ITERS=100000   # per worker loop: a bound besides the deadline
STALL_MS=${SOAK_STALL_MS:-5000} # a faulted client must learn of the fault this soon
SOAK_OUT=${SOAK_OUT:-$TOP/.output/soak/$(date +%Y-%m-%dT%H%M%S)}
mkdir -p "$SOAK_OUT/failures" "$T/res"
SOAK_OUT=$(cd "$SOAK_OUT" && pwd)
CSV=$SOAK_OUT/trend.csv
FACTS=$T/facts
: >"$FACTS"
fact() { echo "$1=$2" >>"$FACTS"; }

now_ms() { date +%s%3N; }

declare -A INST_PORT INST_PID INST_NAME INST_MODE INST_LOG
INSTANCES=(bpf)
[ "$SPLICE" = 1 ] && INSTANCES+=(splice)
INST_PORT[bpf]=$PORT
INST_PORT[splice]=$((PORT + 100))
INST_MODE[bpf]=bpf
INST_MODE[splice]=splice
# Route offsets from an instance's base port.
declare -A ROUTE_OFF=([echo]=0 [banner]=1 [proto]=2 [victim]=3)

# ---------------------------------------------------------------------------------------------
# Backends

declare -A BE_PID
start_be() { # NAME MODE
	rm -f "$T/$1.ready"
	"$SRPEER" backend --listen "$T/$1.sock" --mode "$2" --ready-file "$T/$1.ready" \
		2>>"$T/backend-$1.log" &
	BE_PID[$1]=$!
	BG_PIDS+=($!)
	# The victim gets kill -9: out of the job table, so that bash doesn't report it.
	[ "$1" != victim ] || disown $!
	wait_for "backend $1" 10 test -e "$T/$1.ready"
}

# stop_be NAME SIGNAL: signal a backend and wait until it is gone (at most 10 s).
stop_be() {
	local pid=${BE_PID[$1]} n
	kill -"$2" "$pid" 2>/dev/null || return 0
	if [ "$1" = victim ]; then
		for ((n = 0; n < 500; n++)); do
			kill -0 "$pid" 2>/dev/null || return 0
			sleep 0.02
		done
	else
		wait "$pid" 2>/dev/null || true
	fi
}

# The victim's connections that are still open, from the backend's side.
victim_conns() {
	ss -Hx state established src "$T/victim.sock" 2>/dev/null | wc -l
}

# ---------------------------------------------------------------------------------------------
# The proxies

is_sockredir() { [ "$(cat /proc/"$1"/comm 2>/dev/null)" = sockredir ]; }

start_instance() { # INST
	local i=$1 b=${INST_PORT[$1]}
	INST_NAME[$i]=soak$$-$i
	INST_LOG[$i]=$T/proxy-$i.log # lib.sh's fail() shows $T/proxy*.log
	PIN_NAMES+=("${INST_NAME[$i]}")
	# STATUS= carries the open and accepted counts, also for --mode splice, which has no pins.
	"$SRPEER" notify-listen "$T/notify-$i.sock" --timeout $((DUR_S + 1800)) >"$T/notify-$i.out" 2>&1 &
	BG_PIDS+=($!)
	wait_for "notify socket of $i" 5 test -S "$T/notify-$i.sock"
	systemd-socket-activate -l "127.0.0.1:$b" -l 127.0.0.1:$((b + 1)) -l 127.0.0.1:$((b + 2)) \
		-l 127.0.0.1:$((b + 3)) --fdname=echo:banner:proto:victim -E NOTIFY_SOCKET="$T/notify-$i.sock" \
		"$SOCKREDIR" --name "${INST_NAME[$i]}" --mode "${INST_MODE[$i]}" --workers "$PROXY_WORKERS" \
		--route "echo=$T/echo.sock" --route "banner=$T/banner.sock" \
		--route "proto=$T/proto.sock" --route "victim=$T/victim.sock" 2>"${INST_LOG[$i]}" &
	INST_PID[$i]=$!
	BG_PIDS+=($!)
	wait_for "listeners of $i" 5 port_listening $((b + 3))
	"$SRPEER" client --connect "127.0.0.1:$b" --test rr --size 1K --timeout 10 --quiet ||
		fail "the first connection through $i"
	wait_for "sockredir ($i) to start" 5 is_sockredir "${INST_PID[$i]}"
}

# ---------------------------------------------------------------------------------------------
# Samples: one CSV row per instance.

CSV_HEAD="time,elapsed_s,phase,instance,alive,rss_kb,fds,sockets,pipes,open,accepted,sr_peers,down_kernel,down_spliced,down_by_hand,up_kernel,up_spliced"

jnum() { # KEY JSON: the first "KEY":N
	local v
	v=$(grep -o "\"$1\":[0-9]*" <<<"$2" | head -n 1 | cut -d: -f2)
	echo "${v:-}"
}

sample_row() { # INST PHASE
	local i=$1 pid=${INST_PID[$1]} alive=0 rss="" fds="" socks="" pipes="" json down up procs p
	if is_sockredir "$pid"; then
		alive=1
		# The instance is the main process and its workers (--workers), summed.
		procs=()
		for p in "$pid" $(pgrep -P "$pid" -x sockredir || true); do
			procs+=("/proc/$p")
		done
		rss=$(awk '/^VmRSS:/ { n += $2 } END { print n }' "${procs[@]/%//status}" 2>/dev/null || true)
		fds=$(find "${procs[@]/%//fd}" -mindepth 1 2>/dev/null | wc -l)
		socks=$(find "${procs[@]/%//fd}" -lname 'socket:*' 2>/dev/null | wc -l)
		pipes=$(find "${procs[@]/%//fd}" -lname 'pipe:*' 2>/dev/null | wc -l)
	fi
	if [ "${INST_MODE[$i]}" = splice ]; then
		# No pins: the open and accepted counts from the last STATUS= (sent every 2 s on change).
		json=$(grep -o 'STATUS=[^0-9]*[0-9]* open, [0-9]* accepted' "$T/notify-$i.out" | tail -n 1 |
			sed 's/STATUS=[^0-9]*\([0-9]*\) open, \([0-9]*\) accepted/{"open":\1,"accepted":\2}/' || true)
	else
		json=$("$SOCKREDIR" stats --json "${INST_NAME[$i]}" 2>/dev/null || true)
	fi
	down=$(grep -o '"down":{[^}]*}' <<<"$json" || true)
	up=$(grep -o '"up":{[^}]*}' <<<"$json" || true)
	echo "$(date +%s),$((SECONDS - T0)),$2,$i,$alive,$rss,$fds,$socks,$pipes,$(jnum open "$json"),$(jnum accepted "$json"),$(jnum kernel_sockets "$json"),$(jnum kernel "$down"),$(jnum spliced "$down"),$(jnum by_hand "$down"),$(jnum kernel "$up"),$(jnum spliced "$up")"
}

open_now() { # INST: open connections, from the counters
	sample_row "$1" probe | cut -d, -f10
}
open_zero() { [ "$(open_now "$1")" = 0 ]; }

sample_all() { # PHASE
	local i
	for i in "${INSTANCES[@]}"; do
		sample_row "$i" "$1" >>"$CSV"
	done
}

# The last sample's FIELD (column number) for INST.
last_field() { # INST COLUMN
	grep ",$1," "$CSV" | tail -n 1 | cut -d, -f"$2"
}

# ---------------------------------------------------------------------------------------------
# Runs. Each appends one line to a results file:
#   end_ms kind instance class rc duration_ms conns sent received tail_ms [fault_to_exit_ms]
# tail_ms (faults only, else "-"): from the fault until the client saw the end (FIN or exit).
# class: normal (must pass), faulted (may fail), fault-pass (a fault the client must ride out).

KINDS=(rr1 rr64k up down halfclose replyclose sendclose banner)
cpid=""

# run_client RESFILE CLASS KIND INST ROUTE CONNS TIMEOUT srpeer-client-options...
run_client() {
	local res=$1 class=$2 kind=$3 inst=$4 route=$5 conns=$6 tmo=$7 out start end rc=0 ok sent=0 recv=0
	shift 7
	out=$T/run-$BASHPID-$kind.out
	start=$(now_ms)
	timeout -k 5 $((tmo + 30)) "$SRPEER" client --connect \
		127.0.0.1:$((INST_PORT[$inst] + ROUTE_OFF[$route])) --timeout "$tmo" "$@" >"$out" 2>&1 &
	cpid=$!
	wait $cpid || rc=$?
	cpid=""
	end=$(now_ms)
	ok=$(grep -m1 '^srpeer: ok' "$out" || true)
	if [ -n "$ok" ]; then
		conns=$(sed 's/.* conns=\([0-9]*\).*/\1/' <<<"$ok")
		sent=$(sed 's/.* sent=\([0-9]*\).*/\1/' <<<"$ok")
		recv=$(sed 's/.* received=\([0-9]*\).*/\1/' <<<"$ok")
	fi
	echo "$end $kind $inst $class $rc $((end - start)) $conns $sent $recv -" >>"$res"
	if [ $rc != 0 ] && [ "$class" != faulted ]; then
		{
			echo "# $(date -Is) $kind on $inst ($class), status $rc, $((end - start)) ms"
			echo "# srpeer client --connect 127.0.0.1:$((INST_PORT[$inst] + ROUTE_OFF[$route])) --timeout $tmo $*"
			cat "$out"
		} >"$SOAK_OUT/failures/$kind-$inst-$end-$BASHPID.out"
		echo "FAILED: $kind on $inst, status $rc after $((end - start)) ms: $(grep -m1 FAIL "$out" || tail -n 1 "$out")"
	fi
	return $rc
}

pick() { # one of the arguments, at random
	local a=("$@")
	echo "${a[RANDOM % ${#a[@]}]}"
}

# run_kind RESFILE KIND INST SEED
run_kind() {
	local res=$1 kind=$2 inst=$3 seed=$4
	case $kind in
	rr1) run_client "$res" normal rr1 "$inst" echo 1 60 --test rr --size 1 --rounds 2000 --seed "$seed" ;;
	rr64k) run_client "$res" normal rr64k "$inst" echo 1 60 --test rr --size 64K --rounds 300 --seed "$seed" ;;
	up) run_client "$res" normal up "$inst" proto 1 120 --test up --size "$(pick 64M 128M 256M)" --seed "$seed" ;;
	down) run_client "$res" normal down "$inst" proto 1 120 --test down --size "$(pick 64M 128M 256M)" --seed "$seed" ;;
	halfclose) run_client "$res" normal halfclose "$inst" proto 4 120 --test halfclose --size 8M --conns 4 --seed "$seed" ;;
	replyclose) run_client "$res" normal replyclose "$inst" proto 70 60 --test replyclose --size 256K --conns 70 --parallel 10 --seed "$seed" ;;
	sendclose) run_client "$res" normal sendclose "$inst" proto 50 60 --test sendclose --size 64K --conns 50 --parallel 10 --seed "$seed" ;;
	banner) run_client "$res" normal banner "$inst" banner 20 60 --test banner --size 4K --rounds 20 --conns 20 --parallel 10 --seed "$seed" ;;
	churn) run_client "$res" normal churn "$inst" echo 1000 60 --test rr --size 64 --conns 1000 --parallel 20 --seed "$seed" ;;
	esac
}

# worker N: cycles through KINDS (offset by N) until the deadline; every third run on splice.
worker() {
	local w=$1 i=0 inst kind res=$T/res/worker$1.txt
	set +e
	RANDOM=$((($1 + 1) * 7919 + $$))
	trap '[ -n "$cpid" ] && kill -TERM $cpid 2>/dev/null; exit 143' TERM
	while [ $i -lt $MAX_ITERS ] && [ $SECONDS -lt $DEADLINE ] && [ ! -e "$T/stop" ]; do
		kind=${KINDS[(w * 3 + i) % ${#KINDS[@]}]}
		inst=bpf
		[ "$SPLICE" = 1 ] && [ $(((i + w) % 3)) = 2 ] && inst=splice
		run_kind "$res" "$kind" "$inst" $(((w + 1) * 100000000 + i * 10000))
		i=$((i + 1))
	done
}

# The churn loop: 1000 short connections per run, at most one run a second (TIME_WAIT stays
# far below the port range).
churn_worker() {
	local i=0 inst t res=$T/res/churn.txt
	set +e
	trap '[ -n "$cpid" ] && kill -TERM $cpid 2>/dev/null; exit 143' TERM
	while [ $i -lt $MAX_ITERS ] && [ $SECONDS -lt $DEADLINE ] && [ ! -e "$T/stop" ]; do
		t=$SECONDS
		inst=bpf
		[ "$SPLICE" = 1 ] && [ $((i % 3)) = 2 ] && inst=splice
		run_kind "$res" churn "$inst" $((900000000 + i * 10000))
		i=$((i + 1))
		[ $SECONDS -gt $t ] || sleep 1
	done
}

sampler() {
	local n=0 next=$SECONDS
	set +e
	trap 'exit 0' TERM
	while [ ! -e "$T/stop-sampler" ] && [ $SECONDS -lt $((DEADLINE + 900)) ]; do
		if [ $SECONDS -ge $next ]; then
			sample_all traffic
			n=$((n + 1))
			next=$((next + SAMPLE_EVERY))
			[ $((n % 6)) = 0 ] && progress
		fi
		sleep 1
	done
}

progress() {
	local runs fails faulted i st=""
	runs=$(cat "$T"/res/*.txt 2>/dev/null | wc -l)
	fails=$(cat "$T"/res/*.txt 2>/dev/null | awk '$4 != "faulted" && $5 != 0' | wc -l)
	faulted=$(cat "$T"/res/*.txt 2>/dev/null | awk '$4 == "faulted"' | wc -l)
	for i in "${INSTANCES[@]}"; do
		st="$st; $i: rss $(last_field "$i" 6) KiB, fds $(last_field "$i" 7), sockets $(last_field "$i" 8), open $(last_field "$i" 10)"
	done
	log "$((SECONDS - T0))s: $runs runs, $fails failed, $faulted faulted$st"
}

# ---------------------------------------------------------------------------------------------
# Faults, run from the main shell (so that restarted backends land in BG_PIDS).

FAULTS=(kill9-down reset-down kill9-up reset-up sockgone)
FRES=$T/res/faults.txt

# After a fault: a run on the victim that must pass.
recovery_run() { # INST SEED
	run_client "$FRES" normal victim-after-fault "$1" victim 1 60 --test up --size 1M --seed "$2" || true
}

# record_fault KIND INST CLASS RC START_MS END_MS FAULT_MS OUT [FIN_MS]: the tail is the time
# from the fault to the client's end (or to the FIN it got, if that came first).
record_fault() {
	local tail_ms=$(($6 - $7))
	[ -n "${9:-}" ] && [ $(($9 - $7)) -lt $tail_ms ] && tail_ms=$(($9 - $7))
	echo "$6 $1 $2 $3 $4 $(($6 - $5)) 1 0 0 $tail_ms $(($6 - $7))" >>"$FRES"
	if [ $tail_ms -gt $STALL_MS ]; then
		echo "STALL: fault $1 on $2: the client saw no FIN, error or exit for $tail_ms ms after the fault"
		cp "$8" "$SOAK_OUT/failures/stall-$1-$2-$6.out"
	fi
}

fault_kill9() { # DIR INST SEED
	local dir=$1 inst=$2 out=$T/fault.out start t0 end rc=0
	start=$(now_ms)
	timeout -k 5 60 "$SRPEER" client --connect 127.0.0.1:$((INST_PORT[$inst] + 3)) --test "$dir" \
		--size 16G --timeout 30 --seed "$3" >"$out" 2>&1 &
	cpid=$!
	sleep 0.7
	if ! kill -0 $cpid 2>/dev/null; then
		# It ended before the fault: then it is an ordinary run, and must have passed.
		wait $cpid || rc=$?
		end=$(now_ms)
		echo "$end kill9-$dir-early $inst normal $rc $((end - start)) 1 0 0 -" >>"$FRES"
		[ $rc = 0 ] || {
			cp "$out" "$SOAK_OUT/failures/kill9-$dir-early-$inst-$end.out"
			echo "FAILED: kill9-$dir on $inst ended with status $rc before the fault: $(tail -n 1 "$out")"
		}
	else
		t0=$(now_ms)
		stop_be victim KILL
		# When the client learns that the backend is gone: its exit, or the FIN that sockredir
		# sends at once (its socket in CLOSE_WAIT). An uploading client that keeps sending
		# sees only the reset, LINGER_TIMEOUT (5 s) later: sockredir discards its bytes until
		# then, so that a client that stops sending gets a clean close.
		fin=""
		for ((n = 0; n < 300; n++)); do
			kill -0 $cpid 2>/dev/null || break
			if [ -n "$(ss -Htn state close-wait "( dport = :$((INST_PORT[$inst] + 3)) )")" ]; then
				fin=$(now_ms)
				break
			fi
			sleep 0.05
		done
		wait $cpid || rc=$?
		end=$(now_ms)
		record_fault "kill9-$dir" "$inst" faulted $rc "$start" "$end" "$t0" "$out" "$fin"
	fi
	cpid=""
	kill -0 "${BE_PID[victim]}" 2>/dev/null || start_be victim proto
	recovery_run "$inst" $(($3 + 1))
}

fault_reset() { # DIR INST SEED
	local dir=$1 inst=$2 out=$T/fault.out start t0 end rc=0
	start=$(now_ms)
	timeout -k 5 60 python3 "$HERE/reset_client.py" $((INST_PORT[$inst] + 3)) "$dir" "$3" 20 \
		>"$out" 2>&1 &
	cpid=$!
	wait $cpid || rc=$?
	cpid=""
	end=$(now_ms)
	if [ $rc != 0 ]; then
		# It never got to its reset: the transfer broke on its own.
		echo "$end reset-$dir-early $inst normal $rc $((end - start)) 1 0 0 -" >>"$FRES"
		cp "$out" "$SOAK_OUT/failures/reset-$dir-early-$inst-$end.out"
		echo "FAILED: reset-$dir on $inst: the transfer ended before the reset: $(tail -n 1 "$out")"
	fi
	# The proxy must close its side to the backend soon after the reset.
	t0=$end
	local w=0
	while [ "$(victim_conns)" != 0 ] && [ $w -lt 100 ]; do
		sleep 0.1
		w=$((w + 1))
	done
	end=$(now_ms)
	[ $rc = 0 ] && record_fault "reset-$dir" "$inst" faulted 0 "$start" "$end" "$t0" "$out"
	[ "$(victim_conns)" = 0 ] ||
		echo "STALL: reset-$dir on $inst: the backend connection is still open 10 s after the reset"
	recovery_run "$inst" $(($3 + 1))
}

fault_sockgone() { # INST SEED
	local inst=$1 out=$T/fault.out start t0 end rc=0
	rm -f "$T/victim.sock"
	start=$(now_ms)
	timeout -k 5 60 "$SRPEER" client --connect 127.0.0.1:$((INST_PORT[$inst] + 3)) --test up \
		--size 16M --timeout 30 --seed "$2" >"$out" 2>&1 &
	cpid=$!
	sleep 1
	stop_be victim TERM
	t0=$(now_ms)
	start_be victim proto
	wait $cpid || rc=$?
	cpid=""
	end=$(now_ms)
	record_fault sockgone "$inst" fault-pass $rc "$start" "$end" "$t0" "$out"
	if [ $rc != 0 ]; then
		cp "$out" "$SOAK_OUT/failures/sockgone-$inst-$end.out"
		echo "FAILED: sockgone on $inst: the client waiting for the socket failed: $(grep -m1 FAIL "$out" || tail -n 1 "$out")"
	fi
	recovery_run "$inst" $(($2 + 1))
}

proxies_alive() {
	local i r=0
	for i in "${INSTANCES[@]}"; do
		if ! is_sockredir "${INST_PID[$i]}"; then
			grep -q "^died_$i=" "$FACTS" || fact "died_$i" "$(($(date +%s) - T0_EPOCH))"
			r=1
		fi
	done
	return $r
}

# ---------------------------------------------------------------------------------------------
# Cleanup: stop the loops (their clients first), then lib.sh's cleanup kills the rest.

declare -a LOOP_PIDS=()
soak_cleanup() {
	local rc=$? p
	set +e
	touch "$T/stop-sampler" 2>/dev/null
	for p in "${LOOP_PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	[ -n "$cpid" ] && kill -TERM "$cpid" 2>/dev/null
	sleep 0.5
	# Keep the logs, whatever happened.
	for f in "$T"/proxy-*.log "$T"/backend-*.log; do
		[ -f "$f" ] && cp "$f" "$SOAK_OUT/" 2>/dev/null
	done
	[ -e "$SOAK_OUT/runs.txt" ] || cat "$T"/res/*.txt 2>/dev/null | sort -n >"$SOAK_OUT/runs.txt"
	(exit $rc)
	cleanup
}
trap soak_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Main

T0=$SECONDS
T0_EPOCH=$(date +%s)
START_DATE=$(date -Is)
log "soak: DURATION=$DURATION ($DUR_S s), $WORKERS worker loops + churn, instances: ${INSTANCES[*]}, output in $SOAK_OUT"
start_be echo echo
start_be banner banner
start_be proto proto
start_be victim proto
for i in "${INSTANCES[@]}"; do
	start_instance "$i"
done
for i in "${INSTANCES[@]}"; do
	wait_for "the first connection through $i to close" 10 open_zero "$i"
done
echo "$CSV_HEAD" >"$CSV"
sample_all start

T_TRAFFIC=$SECONDS
DEADLINE=$((SECONDS + DUR_S))
for ((w = 0; w < WORKERS; w++)); do
	worker $w &
	LOOP_PIDS+=($!)
	BG_PIDS+=($!)
done
churn_worker &
LOOP_PIDS+=($!)
BG_PIDS+=($!)
sampler &
SAMPLER_PID=$!
BG_PIDS+=($!)

set +e
nfault=0
# The first fault comes sooner in a short soak.
first=$((DUR_S / 4 < 5 ? 5 : DUR_S / 4))
next=$((SECONDS + (first < FAULT_MIN ? first : FAULT_MIN)))
proxy_died=0
while [ $SECONDS -lt $DEADLINE ] && [ $nfault -lt 10000 ]; do
	if ! proxies_alive; then
		proxy_died=1
		echo "FAILED: sockredir died during the soak; stopping the loops"
		touch "$T/stop"
		break
	fi
	# A fault takes up to ~40 s at worst; leave it room before the deadline.
	if [ $SECONDS -ge $next ] && [ $SECONDS -lt $((DEADLINE - 10)) ]; then
		f=${FAULTS[nfault % ${#FAULTS[@]}]}
		inst=bpf
		[ "$SPLICE" = 1 ] && [ $((nfault % 2)) = 1 ] && inst=splice
		seed=$((800000000 + nfault * 10))
		case $f in
		kill9-down) fault_kill9 down "$inst" $seed ;;
		kill9-up) fault_kill9 up "$inst" $seed ;;
		reset-down) fault_reset down "$inst" $seed ;;
		reset-up) fault_reset up "$inst" $seed ;;
		sockgone) fault_sockgone "$inst" $seed ;;
		esac
		nfault=$((nfault + 1))
		next=$((SECONDS + FAULT_MIN + RANDOM % (FAULT_MAX - FAULT_MIN + 1)))
	fi
	sleep 1
done
T_DEADLINE=$SECONDS

# The loops end on their own: no new run after the deadline, and each run is bounded.
log "deadline reached after $((SECONDS - T_TRAFFIC)) s; waiting for the runs in flight"
for p in "${LOOP_PIDS[@]}"; do
	wait "$p"
done
LOOP_PIDS=()
T_LOOPS_DONE=$SECONDS
touch "$T/stop-sampler"
wait $SAMPLER_PID
proxies_alive || proxy_died=1

# Idle: the open connections must drop to 0, then sockets and non-pipe fds back to the start.
declare -A START_SOCKS START_NONPIPE
for i in "${INSTANCES[@]}"; do
	START_SOCKS[$i]=$(grep ",start,$i," "$CSV" | cut -d, -f8)
	START_NONPIPE[$i]=$(grep ",start,$i," "$CSV" | awk -F, '{ print $7 - $9 }')
done
settled() {
	local i row
	for i in "${INSTANCES[@]}"; do
		is_sockredir "${INST_PID[$i]}" || continue # dead: that failure is reported already
		row=$(sample_row "$i" idle)
		echo "$row" >>"$CSV"
		IFS=, read -r _ _ _ _ alive _ fds socks pipes open _ peers _ <<<"$row"
		[ "$alive" = 1 ] && [ "$open" = 0 ] && [ "$socks" -le "${START_SOCKS[$i]}" ] &&
			[ $((fds - pipes)) -le "${START_NONPIPE[$i]}" ] && [ "${peers:-0}" = 0 ] || return 1
	done
}
idle_start=$SECONDS
until settled || [ $SECONDS -ge $((idle_start + 60)) ]; do
	sleep 2
done
IDLE_WAIT=$((SECONDS - idle_start))
sample_all end

# The final counters, then SIGTERM: exit status 0 and the pins removed.
for i in "${INSTANCES[@]}"; do
	[ "${INST_MODE[$i]}" = splice ] ||
		"$SOCKREDIR" stats --json "${INST_NAME[$i]}" >"$SOAK_OUT/stats-$i.json" 2>/dev/null
done
for i in "${INSTANCES[@]}"; do
	kill -TERM "${INST_PID[$i]}" 2>/dev/null
done
for i in "${INSTANCES[@]}"; do
	rc=0
	timeout 30 tail --pid="${INST_PID[$i]}" -f /dev/null
	wait "${INST_PID[$i]}" || rc=$?
	fact "exit_$i" $rc
	[ -e "/sys/fs/bpf/sockredir/${INST_NAME[$i]}" ] && fact "pins_left_$i" 1
done
for b in echo banner proto victim; do
	stop_be "$b" TERM
	fact "backend_errors_$b" "$(grep -o '[0-9]* errors' "$T/backend-$b.log" | tail -n 1 | cut -d' ' -f1)"
	fact "backend_conns_$b" "$(grep -o '[0-9]* connections' "$T/backend-$b.log" | tail -n 1 | cut -d' ' -f1)"
done
for i in "${INSTANCES[@]}"; do
	cp "${INST_LOG[$i]}" "$SOAK_OUT/"
	# Warnings and errors: syslog priorities 0-4.
	grep -E '^<[0-4]>' "${INST_LOG[$i]}" >"$SOAK_OUT/warnings-$i.log" || true
done
cat "$T"/res/*.txt | sort -n >"$SOAK_OUT/runs.txt"

fact duration "$DURATION"
fact binary "$BIN_INFO"
fact git "$(git -C "$TOP" describe --always --dirty 2>/dev/null || echo unknown)"
fact duration_s "$DUR_S"
fact start "$START_DATE"
fact traffic_s $((T_DEADLINE - T_TRAFFIC))
fact tail_s $((T_LOOPS_DONE - T_DEADLINE))
fact idle_wait_s $IDLE_WAIT
fact wall_s $((SECONDS - T0))
fact proxy_died $proxy_died
fact workers "$WORKERS"
fact faults $nfault
fact stall_ms $STALL_MS
for i in "${INSTANCES[@]}"; do
	fact "ports_$i" "${INST_PORT[$i]}-$((INST_PORT[$i] + 3))"
done
cp "$FACTS" "$SOAK_OUT/facts.txt"
set -e
python3 "$HERE/report.py" "$SOAK_OUT" | tee "$SOAK_OUT/summary.txt"
