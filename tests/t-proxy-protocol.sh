#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# --proxy-protocol v1 and v2, checked by real parsers, in every mode:
# - nginx (http, "listen unix:... proxy_protocol", realip) answers with $proxy_protocol_addr,
#   $proxy_protocol_port, the server address and $remote_addr; the client is curl over IPv4,
#   IPv6 (::1) and a Unix listener (LOCAL / "PROXY UNKNOWN": accepted, no address);
# - haproxy (http, "bind ... accept-proxy") answers with %[src]:%[src_port] and %[dst]:%[dst_port];
# - the bytes after the header arrive unchanged: a 1 MiB PUT to nginx (WebDAV) and its GET back,
#   and 100 round trips of 64 KiB through haproxy (tcp, accept-proxy) to an srpeer echo backend;
# - the exact header bytes sent for a Unix client, captured by socat;
# - without --proxy-protocol, nginx refuses the request ("broken header"), so the test can fail.
. "$(dirname "$0")/lib.sh"
setup "$@"

command -v nginx >/dev/null 2>&1 || skip "needs nginx (run 'make deps' as root)"
command -v haproxy >/dev/null 2>&1 || skip "needs haproxy (run 'make deps' as root)"
need_cmd curl socat ss cmp od

P_NGX=$PORT P_HAP=$((PORT + 1)) P_TCP=$((PORT + 2))
NGX_LOG=$T/nginx-error.log
HAP_LOG=$T/haproxy.log

if ip -6 addr show dev lo 2>/dev/null | grep -q 'inet6 ::1/128'; then
	V6=1
else
	V6=
	log "IPv6 is disabled here (no ::1 on lo): the IPv6 cases are skipped"
fi

declare -A SR_PID=() SR_LOG=() SR_NAME=()
SR_N=0

# die MESSAGE: fail, showing the logs of the sockredir instances still running, nginx's and
# haproxy's.
die() {
	local id f
	{
		for id in "${!SR_PID[@]}"; do
			echo "--- sockredir '$id': ${SR_LOG[$id]}"
			tail -n 20 "${SR_LOG[$id]}"
		done
		for f in "$NGX_LOG" "$T/nginx-access.log" "$HAP_LOG"; do
			[ -f "$f" ] || continue
			echo "--- $f (last 20 lines)"
			tail -n 20 "$f"
		done
	} >&2
	fail "$*"
}

# A timeout in wait_for shows the logs, as die does.
WAIT_FOR_FAIL=die

# listening ADDR: a TCP (127.0.0.1:P, [::1]:P) or Unix (/path) listener is there.
listening() {
	case $1 in
	/*) ss -Hxl | awk '{ print $5 }' | grep -qxF "$1" ;;
	*) ss -Hltn | awk '{ print $4 }' | grep -qxF "$1" ;;
	esac
}

# hap_listening PATH: haproxy binds PATH.PID.tmp and renames it to PATH, so the kernel
# (and ss) still know the socket by its temporary name.
hap_listening() {
	[ -S "$1" ] && ss -Hxl | awk '{ print $5 }' | grep -qE "^${1//./\\.}(\\.[0-9]+\\.tmp)?\$"
}

# sr_start ID BACKEND "LISTENERS..." [sockredir options...]: socket-activated sockredir.
sr_start() {
	local id=$1 backend=$2 listeners=$3 l
	local -a args=()
	shift 3
	SR_N=$((SR_N + 1))
	SR_NAME[$id]=pp$$-$SR_N
	SR_LOG[$id]=$T/sr-$SR_N-$id.log
	PIN_NAMES+=("${SR_NAME[$id]}")
	for l in $listeners; do
		case $l in /*) rm -f "$l" ;; esac
		args+=(-l "$l")
	done
	systemd-socket-activate "${args[@]}" \
		"$SOCKREDIR" --name "${SR_NAME[$id]}" "$@" "$backend" 2>"${SR_LOG[$id]}" &
	SR_PID[$id]=$!
	BG_PIDS+=("$!")
	for l in $listeners; do
		wait_for "sockredir '$id' to listen on $l" 5 listening "$l"
	done
}

# sr_stop ID WHAT MODE CONNS [UNIX]: SIGTERM; expect status 0, no pins left, CONNS accepted, and
# in the bpf modes UNIX of them (clients of a Unix listener, default 0) spliced ("client unix")
# and the rest on the kernel path (and uploading in the kernel with --kernel-upload).
# MODE "splice" skips those checks.
sr_stop() {
	local id=$1 what=$2 mode=$3 conns=$4 unix=${5:-0} rc=0
	[ "$(cat /proc/"${SR_PID[$id]}"/comm 2>/dev/null)" = sockredir ] ||
		die "$what: sockredir never started (no connection reached it?)"
	kill -TERM "${SR_PID[$id]}" 2>/dev/null || true
	wait "${SR_PID[$id]}" || rc=$?
	[ $rc = 0 ] || die "$what: sockredir exited with status $rc after SIGTERM"
	[ ! -e "/sys/fs/bpf/sockredir/${SR_NAME[$id]}" ] || die "$what: pins left behind"
	PROXY_LOG=${SR_LOG[$id]}
	[ "$(summary accepted)" = "$conns" ] ||
		die "$what: expected $conns connections in the summary, got $(summary accepted)"
	case $mode in *bpf*)
		[ "$(summary 'on the kernel path')" = $((conns - unix)) ] ||
			die "$what: expected $((conns - unix)) of $conns connections on the kernel path"
		[ "$(summary 'client unix')" = "$unix" ] ||
			die "$what: expected $unix connection(s) spliced (client unix)"
		;;
	esac
	case $mode in *--kernel-upload*)
		[ "$(summary 'with kernel upload')" = $((conns - unix)) ] ||
			die "$what: expected $((conns - unix)) of $conns connections to upload in the kernel"
		;;
	esac
	unset "SR_PID[$id]"
}

# http WHAT CURL-ARGS...: one request into $T/body; sets CODE and LPORT (curl's local port).
http() {
	local what=$1 out
	shift
	rm -f "$T/body"
	out=$(curl -sS --max-time 10 -o "$T/body" -w '%{http_code} %{local_port}' "$@" 2>"$T/curl.err") ||
		die "$what: curl failed: $(cat "$T/curl.err")"
	CODE=${out%% *}
	LPORT=${out#* }
}

# The start of the last body, printable (without its last newline).
body() {
	head -c 1000 "$T/body" 2>/dev/null | tr -d '\0'
}

# expect WHAT EXPECTED-BODY: the last answer was 200 with this body; "@P" stands for curl's port.
expect() {
	local what=$1 want=${2//@P/$LPORT} got
	got=$(body)
	[ "$CODE" = 200 ] || die "$what: HTTP status $CODE, body '$got'"
	[ "$got" = "$want" ] || die "$what: expected '$want', got '$got'"
}

# --- nginx: an http server behind a PROXY-protocol Unix listener, WebDAV PUT for the upload ----
mkdir -p "$T/nginx-tmp" "$T/www/files"
cat >"$T/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $T/nginx.pid;
error_log $NGX_LOG info;
events { worker_connections 256; }
http {
	access_log $T/nginx-access.log;
	client_body_temp_path $T/nginx-tmp/body;
	proxy_temp_path $T/nginx-tmp/proxy;
	fastcgi_temp_path $T/nginx-tmp/fastcgi;
	uwsgi_temp_path $T/nginx-tmp/uwsgi;
	scgi_temp_path $T/nginx-tmp/scgi;
	default_type text/plain;
	server {
		listen unix:$T/nginx.sock proxy_protocol;
		set_real_ip_from unix:;
		real_ip_header proxy_protocol;
		location / {
			return 200 "pp=[\$proxy_protocol_addr]:[\$proxy_protocol_port] srv=[\$proxy_protocol_server_addr]:[\$proxy_protocol_server_port] ra=[\$remote_addr]:[\$remote_port]\n";
		}
		location /files/ {
			root $T/www;
			dav_methods PUT;
			client_max_body_size 4m;
		}
	}
}
EOF
nginx -t -c "$T/nginx.conf" -e "$NGX_LOG" >"$T/nginx-t.log" 2>&1 || {
	cat "$T/nginx-t.log" >&2
	die "nginx rejects the test's configuration"
}
nginx -c "$T/nginx.conf" -e "$NGX_LOG" >>"$T/nginx-t.log" 2>&1 &
BG_PIDS+=("$!")
NGX_PID=$!
wait_for "nginx to listen on $T/nginx.sock" 10 listening "$T/nginx.sock"

# --- haproxy: an http frontend that answers with what it parsed, a tcp one in front of srpeer --
start_backend echo
cat >"$T/haproxy.cfg" <<EOF
global
	log stdout format raw local0 info
defaults
	log global
	timeout connect 5s
	timeout client 30s
	timeout server 30s
frontend fe_http
	mode http
	option httplog
	bind unix@$T/hap-http.sock mode 666 accept-proxy
	http-request return status 200 content-type text/plain lf-string "src=[%[src]]:[%[src_port]] dst=[%[dst]]:[%[dst_port]]\n"
frontend fe_tcp
	mode tcp
	option tcplog
	bind unix@$T/hap-tcp.sock mode 666 accept-proxy
	default_backend be_echo
backend be_echo
	mode tcp
	server echo unix@$T/backend.sock
EOF
haproxy -c -q -f "$T/haproxy.cfg" >"$T/haproxy-c.log" 2>&1 || {
	cat "$T/haproxy-c.log" >&2
	die "haproxy rejects the test's configuration"
}
haproxy -db -f "$T/haproxy.cfg" >"$HAP_LOG" 2>&1 &
BG_PIDS+=("$!")
HAP_PID=$!
wait_for "haproxy to listen on $T/hap-http.sock" 10 hap_listening "$T/hap-http.sock"
wait_for "haproxy to listen on $T/hap-tcp.sock" 10 hap_listening "$T/hap-tcp.sock"

head -c 1M /dev/urandom >"$T/upload.bin"
TCP_RUNS=0

# raw_header MODE V: the bytes a Unix client's connection starts with, captured by socat.
raw_header() {
	local mode=$1 v=$2 what="$1 --proxy-protocol $2, Unix client, raw bytes" cap rc=0 want got
	rm -f "$T/raw.sock" "$T/raw.bin"
	timeout 10 socat -u "UNIX-LISTEN:$T/raw.sock" "OPEN:$T/raw.bin,creat,trunc" 2>"$T/socat.err" &
	cap=$!
	BG_PIDS+=("$cap")
	wait_for "socat to listen on $T/raw.sock" 5 listening "$T/raw.sock"
	sr_start raw "$T/raw.sock" "$T/sr-raw.sock" $mode --proxy-protocol $v
	printf 'hello\n' | timeout 10 socat -u STDIN "UNIX-CONNECT:$T/sr-raw.sock" 2>>"$T/socat.err" ||
		die "$what: the client (socat) failed: $(cat "$T/socat.err")"
	wait $cap || rc=$?
	[ $rc = 0 ] || die "$what: the capture (socat) ended with status $rc: $(cat "$T/socat.err")"
	# A Unix client: spliced in every mode (its half-close would unhash our socket).
	sr_stop raw "$what" "$mode" 1 1
	case $v in
	v1) want=$(printf 'PROXY UNKNOWN\r\nhello\n' | od -An -tx1 | tr -d ' \n') ;;
	# The v2 signature, version 2 + LOCAL (0x20), AF_UNSPEC (0x00), no address block.
	v2) want=0d0a0d0a000d0a515549540a20000000$(printf 'hello\n' | od -An -tx1 | tr -d ' \n') ;;
	esac
	got=$(od -An -tx1 "$T/raw.bin" | tr -d ' \n')
	[ "$got" = "$want" ] || die "$what: expected the bytes $want, got $got"
}

# one_version "MODE" V: every check for one data path and one PROXY protocol version.
one_version() {
	local mode=$1 v=$2 tag="$1 --proxy-protocol $2" ngx_conns=4 hap_conns=2
	local ngx_l="127.0.0.1:$P_NGX $T/sr-ngx.sock" hap_l="127.0.0.1:$P_HAP $T/sr-hap.sock"
	if [ -n "$V6" ]; then
		ngx_l+=" [::1]:$P_NGX"
		hap_l+=" [::1]:$P_HAP"
		ngx_conns=5 hap_conns=3
	fi
	sr_start ngx "$T/nginx.sock" "$ngx_l" $mode --proxy-protocol $v
	sr_start hap "$T/hap-http.sock" "$hap_l" $mode --proxy-protocol $v
	sr_start tcp "$T/hap-tcp.sock" "127.0.0.1:$P_TCP" $mode --proxy-protocol $v

	# nginx
	http "nginx, IPv4 ($tag)" "http://127.0.0.1:$P_NGX/"
	expect "nginx, IPv4 ($tag)" "pp=[127.0.0.1]:[@P] srv=[127.0.0.1]:[$P_NGX] ra=[127.0.0.1]:[@P]"
	if [ -n "$V6" ]; then
		http "nginx, IPv6 ($tag)" "http://[::1]:$P_NGX/"
		expect "nginx, IPv6 ($tag)" "pp=[::1]:[@P] srv=[::1]:[$P_NGX] ra=[::1]:[@P]"
	fi
	http "nginx, Unix listener ($tag)" --unix-socket "$T/sr-ngx.sock" "http://localhost/"
	expect "nginx, Unix listener ($tag)" "pp=[]:[] srv=[]:[] ra=[unix:]:[]"

	# The bytes after the header: 1 MiB up (PUT), and back down (GET).
	local f=files/up-${mode//[ -]/}-$v.bin
	http "nginx, 1 MiB PUT ($tag)" -T "$T/upload.bin" "http://127.0.0.1:$P_NGX/$f"
	[ "$CODE" = 201 ] || die "nginx, 1 MiB PUT ($tag): HTTP status $CODE (expected 201), body '$(body)'"
	cmp "$T/upload.bin" "$T/www/$f" || die "nginx, 1 MiB PUT ($tag): the stored file differs"
	http "nginx, 1 MiB GET ($tag)" "http://127.0.0.1:$P_NGX/$f"
	[ "$CODE" = 200 ] || die "nginx, 1 MiB GET ($tag): HTTP status $CODE"
	cmp "$T/upload.bin" "$T/body" || die "nginx, 1 MiB GET ($tag): the body differs from the file"

	# haproxy
	http "haproxy, IPv4 ($tag)" "http://127.0.0.1:$P_HAP/"
	expect "haproxy, IPv4 ($tag)" "src=[127.0.0.1]:[@P] dst=[127.0.0.1]:[$P_HAP]"
	if [ -n "$V6" ]; then
		http "haproxy, IPv6 ($tag)" "http://[::1]:$P_HAP/"
		expect "haproxy, IPv6 ($tag)" "src=[::1]:[@P] dst=[::1]:[$P_HAP]"
	fi
	http "haproxy, Unix listener ($tag)" --unix-socket "$T/sr-hap.sock" "http://localhost/"
	expect "haproxy, Unix listener ($tag)" "src=[]:[] dst=[]:[]"

	# Every byte checked by srpeer: sockredir -> haproxy (tcp, accept-proxy) -> srpeer echo.
	"$SRPEER" client --connect "127.0.0.1:$P_TCP" --test rr --size 64K --rounds 100 \
		--timeout 20 --quiet >"$T/srpeer.out" 2>&1 ||
		die "srpeer 64 KiB x 100 through haproxy ($tag): $(cat "$T/srpeer.out")"
	TCP_RUNS=$((TCP_RUNS + 1))
	# haproxy logs the tcp session when it ends, with the client address it parsed.
	wait_for "haproxy to log srpeer's connection from 127.0.0.1 ($tag)" 5 \
		tcp_logged "$TCP_RUNS"

	# One client of each came through the Unix listener.
	sr_stop ngx "nginx ($tag)" "$mode" $ngx_conns 1
	sr_stop hap "haproxy ($tag)" "$mode" $hap_conns 1
	sr_stop tcp "haproxy tcp ($tag)" "$mode" 1

	raw_header "$mode" "$v"
	log "$tag: nginx, haproxy, 1 MiB up and down, srpeer and the raw header: ok"
}

tcp_logged() {
	[ "$(grep -cE '^127\.0\.0\.1:[0-9]+ .* fe_tcp be_echo/echo .* 6553600 ' "$HAP_LOG")" -ge "$1" ]
}

broken_headers_above() {
	[ "$(grep -c 'broken header' "$NGX_LOG" || true)" -gt "$1" ]
}

# Without --proxy-protocol, nginx must refuse: it reads the request line as a broken header.
no_header() {
	local mode=$1 tag="$1, no --proxy-protocol" before after
	before=$(grep -c 'broken header' "$NGX_LOG" || true)
	sr_start none "$T/nginx.sock" "127.0.0.1:$P_NGX" $mode
	if curl -sS --max-time 10 -o "$T/body" "http://127.0.0.1:$P_NGX/" 2>"$T/curl.err"; then
		die "nginx ($tag): the request succeeded without a PROXY header: '$(body)'"
	fi
	wait_for "nginx to log a broken header ($tag)" 5 broken_headers_above "$before"
	sr_stop none "nginx ($tag)" "$mode" 1
	after=$(grep -c 'broken header' "$NGX_LOG" || true)
	log "without a header: curl said '$(cat "$T/curl.err")'; nginx logged $((after - before)) broken header(s)"
}

one_mode() {
	one_version "$1" v1
	one_version "$1" v2
	no_header "$1"
}
run_modes one_mode

kill -0 "$NGX_PID" 2>/dev/null || die "nginx died"
kill -0 "$HAP_PID" 2>/dev/null || die "haproxy died"
grep -qE '\[(crit|alert|emerg)\]' "$NGX_LOG" && die "nginx logged a critical error"
stop_backend
[ "$(backend_errors)" = 0 ] || die "the srpeer backend counted errors"
echo "ok"
