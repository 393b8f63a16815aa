#!/bin/bash
# A client on a Unix listener that half-closes. Its shutdown() calls unix_shutdown(), which
# calls sk_prot->unhash on its peer, sockredir's own socket: with a psock that is
# sock_map_unhash(), which takes the socket out of every sockmap and frees what its psock backlog
# still held. A reply moved in the kernel would lose those bytes, and sr_redirect would drop
# every later one (redirect_failed). So a Unix client's connection must go by splice both ways,
# counted as "client unix", and every byte must arrive.
#
# Per mode, through `--listen PATH` (a Unix listener; a TCP one beside it as a control):
#   halfclose  100 connections: 1 MiB up, shutdown(SHUT_WR), 1 MiB reply after the EOF
#   duplex     24 connections, 1 MiB each way paced over 2 s, the client or the backend
#              half-closing while the other direction still moves
#   TCP        20 halfclose connections on the TCP listener: still on the kernel path
. "$(dirname "$0")/lib.sh"
setup "$@"

start_backend proto

FRONT=$T/front.sock
declare -a PROBLEMS=()

# start_unix_proxy [sockredir options...]: a Unix listener at $FRONT and a TCP one on $PORT.
start_unix_proxy() {
	PROXY_N=$((PROXY_N + 1))
	PROXY_NAME=test$$-$PROXY_N
	PIN_NAMES+=("$PROXY_NAME")
	PROXY_LOG=$T/proxy$PROXY_N.log
	"$SOCKREDIR" --name "$PROXY_NAME" --listen "$FRONT" --listen 127.0.0.1:$PORT "$@" \
		"$T/backend.sock" 2>"$PROXY_LOG" &
	PROXY_PID=$!
	BG_PIDS+=($PROXY_PID)
	wait_for "the Unix listener" 5 test -S "$FRONT"
	wait_for "the TCP listener" 5 port_listening "$PORT"
}

# phase NAME srpeer-client-options...: run one client; remember a failure and its kinds.
phase() {
	local name=$1 out rc=0
	shift
	out=$("$SRPEER" client "$@" 2>&1) || rc=$?
	if [ $rc != 0 ]; then
		PROBLEMS+=("$MODE: $name failed: $(echo "$out" | grep -iE 'failed|early|reset' | tail -n 1)")
		log "$name: FAILED: $(echo "$out" | tail -n 3 | tr '\n' ' ')"
	else
		log "$name: ok"
	fi
}

one_mode() {
	local accepted kernel unix redirect_failed backend_before backend_after
	MODE=$1
	backend_before=$(backend_errors_now)
	start_unix_proxy $1
	phase halfclose --connect "$FRONT" --test halfclose --size 1M --conns 100 --parallel 4
	phase duplex --connect "$FRONT" --test duplex --size 1M --conns 24 --barrier \
		--duration 2000
	phase "TCP halfclose" --connect 127.0.0.1:$PORT --test halfclose --size 1M --conns 20 \
		--parallel 4
	stop_proxy
	backend_after=$(backend_errors_now)

	accepted=$(summary accepted)
	kernel=$(summary 'on the kernel path')
	unix=$(summary 'client unix')
	redirect_failed=$(summary 'redirect failures')
	log "$accepted connections: $kernel on the kernel path, $unix fell back (client unix)," \
		"$redirect_failed redirect failures, $((backend_after - backend_before)) backend errors"
	[ "$accepted" = 144 ] || PROBLEMS+=("$MODE: expected 144 connections, got $accepted")
	[ "$backend_after" = "$backend_before" ] ||
		PROBLEMS+=("$MODE: the backend counted $((backend_after - backend_before)) errors")
	case $1 in *bpf*)
		[ "$unix" = 124 ] || PROBLEMS+=("$MODE: expected 124 fallbacks (client unix), got $unix")
		[ "$kernel" = 20 ] || PROBLEMS+=("$MODE: expected the 20 TCP clients on the kernel path, got $kernel")
		[ "$redirect_failed" = 0 ] || PROBLEMS+=("$MODE: $redirect_failed redirect failures")
		[ "$(grep -c 'uses splice: client is a Unix socket' "$PROXY_LOG")" = 1 ] ||
			PROBLEMS+=("$MODE: the fallback was not logged once at info level")
		;;
	esac
}

# The backend prints its error count only at exit; count its error lines (not its notes) meanwhile.
backend_errors_now() {
	{ grep -E '^srpeer backend: conn [0-9]+: ' "$T/backend.log" || true; } | grep -vc 'note: ' || true
}

run_modes one_mode

stop_backend
[ "$(backend_errors)" = 0 ] || PROBLEMS+=("the backend counted $(backend_errors) errors")
if [ ${#PROBLEMS[@]} -gt 0 ]; then
	printf '%s\n' "${PROBLEMS[@]}" >&2
	fail "${#PROBLEMS[@]} problem(s)"
fi
echo "ok"
