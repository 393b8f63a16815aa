#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# sockredir-metrics@NAME.socket under a real systemd (252, PID 1 in a container), with the units
# exactly as `make install` puts them, plus only what an admin adds: /etc/sockredir/web.conf, the
# listen drop-in, and (for Prometheus) the drop-in that moves the metrics socket to TCP.
#
# - systemd hands the metrics fd to the hardened sockredir@web.service with the instance's own
#   (LISTEN_FDNAMES), the service starts (Type=notify) and serves on the kernel path;
# - GET /metrics on /run/sockredir-metrics/web.sock: 200, Prometheus text with the accepted count
#   of the connections made through the instance, sockredir_info (mode="auto", dispatch="adaptive"),
#   sockredir_backend_up 1; OpenMetrics on Accept: application/openmetrics-text;
# - the socket file is 0660 root:sockredir: a user outside the group gets EACCES, a member is
#   served;
# - a stopped service is started again by a scrape (Service=sockredir@%i.service), and answers it;
# - the README's TCP drop-in (ListenStream= then ListenStream=127.0.0.1:PORT): scraped from inside
#   the container and from the test (same network namespace), same counts;
# - STATUS= keeps its shape ("Kernel path: ..."), and sockredir logs no warning or error.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/systemd-lib.sh"
sd_setup "$@"

P=8401     # the instance's listener
MP=9641    # the metrics socket, once moved to TCP
U=sockredir@web.service
MS=sockredir-metrics@web.socket
SOCK=/run/sockredir-metrics/web.sock
BACKEND=/run/app/app.sock

# scrape WHERE [curl options...]: GET /metrics, by curl inside the container (WHERE is "unix"
# for $SOCK, or a URL's host:port), or from the test with WHERE "host:HOST:PORT". Sets
# SCRAPE_CODE and SCRAPE_TYPE (the Content-Type) and writes the body to $T/body. Fails only if
# curl does (no connection, or no complete reply within 10 s).
scrape() {
	local where=$1 out
	shift
	local opts=(-sS --max-time 10 -w '\nSCRAPE %{http_code} %{content_type}\n' "$@")
	case $where in
	unix) out=$(ct curl "${opts[@]}" --unix-socket "$SOCK" http://localhost/metrics) ;;
	host:*) out=$(curl "${opts[@]}" "http://${where#host:}/metrics") ;;
	*) out=$(ct curl "${opts[@]}" "http://$where/metrics") ;;
	esac || return 1
	# The body ends with a newline, and -w adds one before SCRAPE: drop that empty line.
	printf '%s\n' "$out" | head -n -2 >"$T/body"
	read -r _ SCRAPE_CODE SCRAPE_TYPE < <(printf '%s\n' "$out" | tail -n 1)
}

# check_scrape WHERE ACCEPTED: a 200 in the Prometheus text format whose samples say that the
# instance accepted ACCEPTED connections, dispatches on the kernel path, and has its backend up.
check_scrape() {
	local where=$1 accepted=$2 kbytes
	scrape "$where" || fail "scrape over $where failed"
	[ "$SCRAPE_CODE" = 200 ] || fail "scrape over $where: HTTP $SCRAPE_CODE: $(head -c 300 "$T/body")"
	case $SCRAPE_TYPE in
	text/plain*version=0.0.4*) ;;
	*) fail "scrape over $where: Content-Type '$SCRAPE_TYPE', not the Prometheus text format" ;;
	esac
	grep -qx "sockredir_connections_accepted_total $accepted" "$T/body" ||
		fail "scrape over $where: want sockredir_connections_accepted_total $accepted, got:" \
			"$(grep '^sockredir_connections_accepted' "$T/body")"
	grep -Eqx 'sockredir_info\{(.*,)?mode="auto",dispatch="adaptive"\} 1' "$T/body" ||
		fail "scrape over $where: no sockredir_info with mode=\"auto\",dispatch=\"adaptive\":" \
			"$(grep '^sockredir_info' "$T/body")"
	grep -Eqx "sockredir_backend_up\\{route=\"default\",backend=\"$BACKEND\"\\} 1" "$T/body" ||
		fail "scrape over $where: backend $BACKEND is not up:" \
			"$(grep '^sockredir_backend_up' "$T/body")"
	grep -qx "sockredir_connect_duration_seconds_count $accepted" "$T/body" ||
		fail "scrape over $where: want $accepted backend connects timed:" \
			"$(grep '^sockredir_connect_duration_seconds_count' "$T/body")"
	grep -qx '# TYPE sockredir_connections_accepted_total counter' "$T/body" ||
		fail "scrape over $where: no # TYPE line for sockredir_connections_accepted_total"
	if [ "$accepted" -gt 0 ]; then
		kbytes=$(sed -n 's/^sockredir_bytes_total{direction="down",mover="kernel"} //p' "$T/body")
		[ "${kbytes:-0}" -gt 0 ] ||
			fail "scrape over $where: no byte moved by the kernel (bytes down: '$kbytes')"
	fi
}

# check_kernel_path ACCEPTED: `sockredir stats` agrees, and the kernel path was taken as
# dispatched (sd_kernel_served).
check_kernel_path() {
	local j
	j=$(sd_stats web) || fail "sockredir stats --json web failed inside the container"
	log "stats web: $j"
	[ "$(sd_stat_field "$j" accepted)" = "$1" ] && sd_kernel_served "$j" "$1" ||
		fail "want $1 connections accepted, on the kernel path as dispatched: $j"
	! ct_journal "$U" -o cat | grep -i 'kernel path unavailable' ||
		fail "$U fell back to splice (above)"
}

# check_fds: the service's main process got both sockets, the instance's and the metrics one.
check_fds() {
	local pid env
	pid=$(sd_main_pid "$U")
	[ "${pid:-0}" -gt 0 ] || fail "$U has no main process"
	env=$(ct sh -c "tr '\\0' '\\n' </proc/$pid/environ")
	echo "$env" | grep -qx 'LISTEN_FDS=2' &&
		echo "$env" | grep -Eqx 'LISTEN_FDNAMES=(web:metrics|metrics:web)' ||
		fail "$U did not get both sockets: $(echo "$env" | grep '^LISTEN_')"
}

check_active() {
	local s
	s=$(ct_systemctl show -P ActiveState "$U")
	[ "$s" = active ] || fail "$U is $s, not active: $(ct_journal "$U" -o cat | tail -n 5)"
}

status_ok() {
	status=$(ct_systemctl show -P StatusText "$U")
	echo "$status" | grep -Eq "^Kernel path: [0-9]+ open, $1 accepted"
}

# --- The instance and both sockets, as shipped.
start=$SECONDS
sd_backend be-app "$BACKEND" echo
printf 'backend = %s\n' "$BACKEND" | ct_write /etc/sockredir/web.conf 0644
sd_instance web $P
ct_systemctl enable --now "$MS" 2>&1 | sed 's/^/# /'
[ "${PIPESTATUS[0]}" = 0 ] || fail "systemctl enable --now $MS failed"
[ "$(ct_systemctl show -P ActiveState "$MS")" = active ] || fail "$MS is not active"
ct test -S "$SOCK" || fail "$MS did not make $SOCK"
ct_systemctl start "$U" || fail "systemctl start $U failed: $(ct_journal "$U" -o cat | tail -n 5)"
check_active
check_fds
ct test -e /sys/fs/bpf/sockredir/web/sr_verdict || fail "the kernel path is not pinned"
ct_journal "$U" -o cat | grep -qF "Serving metrics on $SOCK (metrics)." ||
	fail "$U does not say that it serves metrics on $SOCK: $(ct_journal "$U" -o cat | tail -n 5)"
trig=$(ct_systemctl show -P TriggeredBy "$U")
[[ " $trig " == *" $MS "* ]] || fail "$U is triggered by '$trig', not by $MS"

# Nothing accepted yet: a scrape is no connection of the instance.
check_scrape unix 0

# --- N connections through the instance, from the test: the scrape counts them.
N=30
sd_lone $P
sd_client $P --test rr --conns $((N - 1)) --parallel 6 --size 64K --rounds 2 --quiet ||
	fail "round trips through sockredir@web"
check_kernel_path $N
check_scrape unix $N
open_zero() {
	scrape unix && grep -qx 'sockredir_connections_open 0' "$T/body"
}
wait_for "sockredir_connections_open 0 once the clients are gone" 5 open_zero
status=""
status_fail() { fail "$* (STATUS=$status)"; }
WAIT_FOR_FAIL=status_fail wait_for "STATUS= to count $N accepted" 10 status_ok $N
log "STATUS=$status"
ct_systemctl status "$U" | grep -qF "Status: \"$status\"" || fail "systemctl status does not show STATUS="

# OpenMetrics, on request.
scrape unix -H 'Accept: application/openmetrics-text' || fail "OpenMetrics scrape failed"
[ "$SCRAPE_CODE" = 200 ] || fail "OpenMetrics scrape: HTTP $SCRAPE_CODE"
case $SCRAPE_TYPE in
application/openmetrics-text*) ;;
*) fail "OpenMetrics scrape: Content-Type '$SCRAPE_TYPE'" ;;
esac
[ "$(tail -n 1 "$T/body")" = '# EOF' ] || fail "OpenMetrics scrape: no '# EOF' at the end"
grep -qx "sockredir_connections_accepted_total $N" "$T/body" &&
	grep -qx '# TYPE sockredir_connections_accepted counter' "$T/body" ||
	fail "OpenMetrics scrape: no accepted counter of $N"
# Anything else than /metrics is not found.
out=$(ct curl -sS --max-time 10 -o /dev/null -w '%{http_code}' --unix-socket "$SOCK" http://localhost/) ||
	fail "GET / failed"
[ "$out" = 404 ] || fail "GET / answered $out, not 404"

# --- Who may connect: root and group sockredir (SocketMode=0660, SocketGroup=sockredir).
mode=$(ct stat -c '%a %U %G' "$SOCK")
[ "$mode" = '660 root sockredir' ] || fail "$SOCK is '$mode', not '660 root sockredir'"
ct useradd --no-create-home --shell /usr/sbin/nologin outsider
ct useradd --no-create-home --shell /usr/sbin/nologin --groups sockredir member
connect_as() {
	ct runuser -u "$1" -- python3 -c '
import errno, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(errno.errorcode[e.errno])
else:
    print("connected")' "$SOCK"
}
out=$(connect_as outsider)
[ "$out" = EACCES ] || fail "a user outside group sockredir connecting to $SOCK: $out, not EACCES"
out=$(connect_as member)
[ "$out" = connected ] || fail "a member of group sockredir connecting to $SOCK: $out"
out=$(ct runuser -u member -- curl -sS --max-time 10 -o /dev/null -w '%{http_code}' \
	--unix-socket "$SOCK" http://localhost/metrics) || fail "curl as a member of sockredir failed"
[ "$out" = 200 ] || fail "curl as a member of sockredir: HTTP $out"
if out=$(ct runuser -u outsider -- curl -sS --max-time 10 --unix-socket "$SOCK" \
	http://localhost/metrics 2>&1); then
	fail "curl as a user outside group sockredir was served: $(echo "$out" | head -n 3)"
fi
log "curl as outsider: $out"

# --- A stopped service: a scrape starts it again (Service=sockredir@%i.service), and is answered.
pid1=$(sd_main_pid "$U")
ct_systemctl stop "$U" 2>&1 | sed 's/^/# /'
[ "${PIPESTATUS[0]}" = 0 ] || fail "systemctl stop $U failed"
[ "$(ct_systemctl show -P ActiveState "$U")" = inactive ] || fail "$U did not stop"
ms=$(ct_systemctl show -P SubState "$MS")
[ "$ms" = listening ] || fail "$MS is $ms once $U stopped, not listening"
ct test ! -e /sys/fs/bpf/sockredir/web || fail "pins left in /sys/fs/bpf/sockredir/web after stop"
t0=$(date +%s.%N)
check_scrape unix 0
log "a scrape started $U and was answered in $(echo "$(date +%s.%N) $t0" | awk '{printf "%.2f", $1 - $2}')s"
check_active
pid2=$(sd_main_pid "$U")
[ "$pid2" != "$pid1" ] || fail "$U has the same main pid $pid1 after stop and a scrape"
check_fds
sd_lone $P
sd_client $P --test rr --conns 9 --parallel 5 --size 64K --quiet ||
	fail "round trips through sockredir@web once a scrape had started it"
check_kernel_path 10
check_scrape unix 10

# --- The TCP drop-in, as README.md has it for Prometheus.
printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:%s\n' $MP |
	ct_write "/etc/systemd/system/$MS.d/port.conf" 0644
ct_systemctl daemon-reload || fail "systemctl daemon-reload failed"
# The service stops first: systemd 252 refuses to start a socket (Accept=no) whose service runs
# ("Socket service sockredir@web.service already active, refusing."), and that holds for
# `systemctl restart $MS`, and for `systemctl restart $MS $U` in one transaction too. (After the
# daemon-reload systemd has closed its old listener: "Socket unit configuration has changed
# while unit has been running, no open socket file descriptor left.")
ct_systemctl stop "$U" 2>/dev/null || fail "systemctl stop $U failed"
ct_systemctl restart "$MS" || fail "systemctl restart $MS failed: $(ct_journal "$MS" -o cat | tail -n 3)"
ct_systemctl start "$U" || fail "systemctl start $U failed: $(ct_journal "$U" -o cat | tail -n 5)"
wait_for "$MS listening on $MP" 5 port_listening $MP
check_active
check_fds
ct_journal "$U" -o cat | grep -qF "Serving metrics on 127.0.0.1:$MP (metrics)." ||
	fail "$U does not say that it serves metrics on 127.0.0.1:$MP"
check_scrape 127.0.0.1:$MP 0
# The Unix socket is gone from the service. Its file stays: RemoveOnStop= removes what the unit
# lists when it stops, and after the daemon-reload it lists only the port.
! scrape unix 2>/dev/null || fail "$SOCK still answers (HTTP $SCRAPE_CODE) once moved to TCP"
M=20
sd_lone $P
sd_client $P --test rr --conns $((M - 1)) --parallel 5 --size 64K --rounds 2 --quiet ||
	fail "round trips through sockredir@web (metrics on TCP)"
check_kernel_path $M
check_scrape 127.0.0.1:$MP $M
# From the test: the container shares its network namespace.
check_scrape host:127.0.0.1:$MP $M
# A scrape over TCP starts a stopped service too.
ct_systemctl stop "$U" 2>/dev/null || fail "systemctl stop $U failed"
check_scrape host:127.0.0.1:$MP 0
check_active
check_fds
WAIT_FOR_FAIL=status_fail wait_for "STATUS= once started by a scrape" 10 status_ok 0
log "STATUS=$status"

# --- The journal: sockredir itself logged no warning or error (metrics or anything else), and
# nothing from systemd about the metrics socket failing.
ct journalctl --no-pager -b -o cat _SYSTEMD_UNIT="$U" >"$T/all.txt"
grep -q '^Serving metrics on' "$T/all.txt" || fail "no message from sockredir in the journal of $U"
ct journalctl --no-pager -b -o cat _SYSTEMD_UNIT="$U" -p warning >"$T/warnings.txt"
[ ! -s "$T/warnings.txt" ] || {
	cat "$T/warnings.txt" >&2
	fail "sockredir@web logged warnings or errors (above)"
}
[ "$(ct_systemctl show -P Result "$MS")" = success ] || fail "$MS: Result=$(ct_systemctl show -P Result "$MS")"
! ct_journal "$MS" -o cat | grep -iE 'fail|refus|error' || fail "$MS: the journal says something went wrong (above)"
log "done in $((SECONDS - start))s after boot"
log "ok"
