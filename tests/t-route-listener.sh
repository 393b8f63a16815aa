#!/bin/bash
# Routing by listener: systemd names each inherited socket (FileDescriptorName=, here
# systemd-socket-activate --fdname), and --route NAME=BACKEND sends its clients to BACKEND; a
# socket without a route uses the default BACKEND.
. "$(dirname "$0")/lib.sh"
setup "$@"

for b in web api default; do
	"$SRPEER" backend --listen "$T/$b.sock" --mode echo --ready-file "$T/$b.ready" 2>"$T/backend-$b.log" &
	BG_PIDS+=($!)
	eval "pid_$b=\$!"
done
for b in web api default; do wait_for "backend $b" 5 test -e "$T/$b.ready"; done

# connections BACKEND: how many connections the backend served (it says at exit).
connections() {
	grep -o '[0-9]* connections' "$T/backend-$1.log" | tail -n 1 | cut -d' ' -f1
}

for m in "--mode bpf" "--mode splice"; do
	log "mode: $m"
	PROXY_N=$((PROXY_N + 1))
	PROXY_NAME=test$$-$PROXY_N
	PIN_NAMES+=("$PROXY_NAME")
	PROXY_LOG=$T/proxy$PROXY_N.log
	systemd-socket-activate -l 127.0.0.1:$PORT -l 127.0.0.1:$((PORT + 1)) -l 127.0.0.1:$((PORT + 2)) \
		--fdname=web:api:other "$SOCKREDIR" --name "$PROXY_NAME" $m \
		--route "web=$T/web.sock" --route "api=$T/api.sock" "$T/default.sock" 2>"$PROXY_LOG" &
	PROXY_PID=$!
	wait_for "listeners" 5 port_listening $((PORT + 2))
	"$SRPEER" client --connect 127.0.0.1:$PORT --test rr --size 4K --rounds 10 --conns 3 || fail "web ($m)"
	"$SRPEER" client --connect 127.0.0.1:$((PORT + 1)) --test rr --size 4K --rounds 10 --conns 5 || fail "api ($m)"
	"$SRPEER" client --connect 127.0.0.1:$((PORT + 2)) --test rr --size 4K --rounds 10 --conns 7 || fail "other ($m)"
	stop_proxy
	[ "$(summary accepted)" = 15 ] || fail "expected 15 connections"
done

for b in web api default; do
	eval "kill -TERM \$pid_$b"
	wait_for "backend $b to exit" 5 grep -q '^srpeer backend: ' "$T/backend-$b.log"
done
log "served: web $(connections web), api $(connections api), default $(connections default)"
[ "$(connections web)" = 6 ] || fail "web should have served 2 x 3 connections"
[ "$(connections api)" = 10 ] || fail "api should have served 2 x 5 connections"
[ "$(connections default)" = 14 ] || fail "the default should have served 2 x 7 connections"
echo "ok"
