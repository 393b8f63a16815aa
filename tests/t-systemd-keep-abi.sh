#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Connections kept in systemd's fd store across `systemctl restart` when the next process can't
# adopt the previous one's BPF maps (systemd 252 as PID 1 in a container, the shipped units).
# A socket in a sockhash can't move to another verdict map, so such a process closes the kernel
# path connections it finds there with a FIN, and restores only what never used the maps.
#
# - ABI: the instance (mode bpf) holds 20 connections; a sockredir built with another SR_BPF_ABI
#   replaces the binary at the unit's ExecStart= path; `systemctl restart`. Each client must see
#   EOF, not a reset (and the network namespace must count no RST meanwhile); the journal says
#   "20 closed with a FIN" and why (the BPF ABI); `sockredir stats` counts restore_closed 20;
#   new connections work; NFileDescriptorStore comes back to what it was at start (the BPF fds
#   and one state record).
# - splice: the same binary swap under mode = splice: the 20 are restored and round 2 of
#   srpeer rr goes through, every byte checked. Nothing there lives in the maps.
# - map-entries: the same binary, but map-entries changed in NAME.conf before the restart: the
#   maps don't fit, so the kernel-path connections are closed with a FIN as for the ABI.
#
# The second binary is built once into .output/keep-abi with `make OUTPUT=... SR_BPF_ABI=0x1ULL`
# (a command line variable overrides the Makefile's hash); the test checks that it differs from
# .output/sockredir in bpf_abi() and in no other object.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/systemd-lib.sh"
sd_setup "$@"
need_cmd objdump

N=20
ABI_OUT=$OUT/keep-abi
ABI_VALUE=0x1
P_ABI=8301 # instance abi: mode bpf, then the other ABI
P_SPL=8302 # instance spl: mode splice, then the other ABI
P_ENT=8303 # instance ent: mode bpf, then another map-entries

# --- The other build. MAKEFLAGS must not pass a SANITIZE=1 (or anything else) down to it.
flock -w 300 "$OUT/.install.lock" env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	make -C "$TOP" --no-print-directory -s SANITIZE= OUTPUT="$ABI_OUT" \
	SR_BPF_ABI="${ABI_VALUE}ULL" "$ABI_OUT/sockredir" >"$T/abi-build.log" 2>&1 || {
	cat "$T/abi-build.log" >&2
	fail "building sockredir with SR_BPF_ABI=${ABI_VALUE}ULL into $ABI_OUT failed"
}

# bpf_abi_of BINARY: the constant that bpf_abi() returns, from its code.
bpf_abi_of() {
	objdump -d --disassemble=bpf_abi "$1" | grep -oE 'mov[a-z]* +\$0x[0-9a-f]+' |
		head -n 1 | grep -oE '0x[0-9a-f]+$'
}
want=0x$(sha256sum "$TOP/bpf/sockredir.h" | cut -c1-16 | sed 's/^0*//')
got=$(bpf_abi_of "$OUT/sockredir")
[ "$got" = "$want" ] || fail "bpf_abi() of $OUT/sockredir is '$got', want $want (stale build?)"
got=$(bpf_abi_of "$ABI_OUT/sockredir")
[ "$got" = "$ABI_VALUE" ] || fail "bpf_abi() of $ABI_OUT/sockredir is '$got', want $ABI_VALUE"
# Nothing else differs: the BPF object, and every user object but the one that holds bpf_abi().
for f in sockredir.bpf.o "$OUT"/user/*.o; do
	f=${f#"$OUT"/}
	[ "$f" = user/bpf-loader.o ] && continue
	cmp -s "$OUT/$f" "$ABI_OUT/$f" || fail "$f differs between $OUT and $ABI_OUT"
done
log "second build: bpf_abi() $ABI_VALUE instead of $want, nothing else differs"

# The fds an instance stores at start: every map and program of the object (bpf mode), and its
# state record.
N_MAPS=$(grep -cE '^\s*struct bpf_map \*' "$OUT/sockredir.skel.h")
N_PROGS=$(grep -cE '^\s*struct bpf_program \*' "$OUT/sockredir.skel.h")
BASE_BPF=$((N_MAPS + N_PROGS + 1))
BASE_SPLICE=1

# --- Helpers.

nfds() { ct_systemctl show -P NFileDescriptorStore "sockredir@$1.service"; }
nfds_is() { [ "$(nfds "$1")" = "$2" ]; }

# stat_of NAME KEY: one counter of the instance.
stat_of() {
	local j
	j=$(sd_stats "$1") || fail "sockredir stats --json $1 failed inside the container"
	sd_stat_field "$j" "$2"
}

# The network namespace's TCP counters (the container shares it): RSTs sent, and connections
# reset from ESTABLISHED or CLOSE_WAIT. Only this test's loopback traffic moves them.
tcp_resets() {
	awk '/^Tcp:/ { if (!h) { for (i = 1; i <= NF; i++) f[$i] = i; h = 1 }
		else print "OutRsts=" $f["OutRsts"], "EstabResets=" $f["EstabResets"] }' /proc/net/snmp
}

# instance NAME PORT CONF: the config, the listen drop-in, the socket enabled; then the service
# started, and its fd store at the baseline for its mode.
instance() {
	local name=$1 port=$2 conf=$3 base
	printf '%b' "$conf" | ct_write "/etc/sockredir/$name.conf" 0644
	sd_instance "$name" "$port"
	ct_systemctl start "sockredir@$name.service" || fail "systemctl start sockredir@$name failed"
	case $conf in
	*splice*) base=$BASE_SPLICE ;;
	*) base=$BASE_BPF ;;
	esac
	wait_for "sockredir@$name to store its $base fds" 20 nfds_is "$name" "$base"
}

# The Python client, driven line by line: "open NAME PORT N SIZE": N connections, each echoes
# SIZE random bytes, checked; "eof NAME SECS": each must then see EOF without sending anything,
# within SECS, with no error after it; "close NAME". It answers "ok", or "fail ..." with what
# each connection saw.
cat >"$T/holder.py" <<'PY'
import errno, os, select, socket, sys, time

groups = {}

def echo(s, data):
    s.sendall(data)
    got = bytearray()
    while len(got) < len(data):
        c = s.recv(min(65536, len(data) - len(got)))
        if not c:
            raise SystemExit(f"EOF after {len(got)} of {len(data)} echoed bytes")
        got += c
    if got != data:
        raise SystemExit("echo mismatch")

def eof(conns, secs):
    seen = {}
    deadline = time.monotonic() + secs
    left = set(range(len(conns)))
    while left:
        t = deadline - time.monotonic()
        if t <= 0:
            break
        r, _, _ = select.select([conns[i] for i in left], [], [], t)
        for s in r:
            i = conns.index(s)
            left.discard(i)
            try:
                d = s.recv(65536)
                seen[i] = "eof" if d == b"" else f"{len(d)} bytes"
            except OSError as e:
                seen[i] = errno.errorcode.get(e.errno, str(e.errno))
    for i in left:
        seen[i] = f"nothing in {secs}s"
    # A reset after the FIN would show here (the socket is in CLOSE_WAIT).
    time.sleep(0.3)
    for i, s in enumerate(conns):
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if seen[i] == "eof" and err:
            seen[i] = "eof, then " + errno.errorcode.get(err, str(err))
        s.close()
    bad = {i: v for i, v in seen.items() if v != "eof"}
    if not bad:
        return "ok"
    kinds = {}
    for v in seen.values():
        kinds[v] = kinds.get(v, 0) + 1
    return "fail " + ", ".join(f"{n} x {k}" for k, n in sorted(kinds.items()))

for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "open":
        name, port, n, size = cmd[1], int(cmd[2]), int(cmd[3]), int(cmd[4])
        conns = groups.setdefault(name, [])
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=20)
            conns.append(s)
            echo(s, os.urandom(size))
        print("ok", flush=True)
    elif cmd[0] == "eof":
        print(eof(groups.pop(cmd[1]), float(cmd[2])), flush=True)
    else:
        raise SystemExit(f"unknown command {cmd}")
PY
coproc HOLDER { exec python3 "$T/holder.py" 2>"$T/holder.err"; }
BG_PIDS+=("$HOLDER_PID")
HOLDER_IN=${HOLDER[1]}
HOLDER_OUT=${HOLDER[0]}
# hold CMD...: one command to the Python client; its answer in $HOLD_REPLY.
hold() {
	HOLD_REPLY=""
	echo "$*" >&"$HOLDER_IN" || fail "the Python client is gone: $(cat "$T/holder.err")"
	read -r -t 60 -u "$HOLDER_OUT" HOLD_REPLY || true
	[ -n "$HOLD_REPLY" ] || fail "Python client, '$*': no answer within 60s: $(cat "$T/holder.err")"
}

# jtail NAME [LINES]: the end of the instance's journal, the messages only.
jtail() { ct_journal "sockredir@$1.service" -o cat | tail -n "${2:-8}"; }

# restored_re RESTORED FRESH CLOSED: the start of the journal line of a restore, as an ERE.
restored_re() {
	printf 'Restored %s connection\\(s\\) kept by the previous process; ' "$1"
	printf '%s in setup started again; %s closed with a FIN' "$2" "$3"
}

# restart NAME: systemctl restart, then the journal line of the new process's restore.
restart() {
	local name=$1 start=$EPOCHREALTIME
	ct_systemctl restart "sockredir@$name.service" ||
		fail "systemctl restart sockredir@$name failed"
	log "systemctl restart sockredir@$name with $N connections kept took" \
		"$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')s"
	wait_for "sockredir@$name to log its restore" 20 restore_line "$name"
	log "sockredir@$name: $RESTORE_LINE"
	# The previous process put them all in the store on its way out.
	ct_journal "sockredir@$name.service" -o cat |
		grep -q "^Restart: $N connection(s) handed over to the next process\.$" ||
		fail "sockredir@$name did not hand over $N connections: $(jtail "$name" 100 | grep '^Restart:')"
}
restore_line() {
	RESTORE_LINE=$(ct_journal "sockredir@$1.service" -o cat | grep 'Restored .* kept by the previous' |
		tail -n 1) && [ -n "$RESTORE_LINE" ]
}

# closed_with_fin NAME PORT WHY: the restart closed the N held connections of NAME with a FIN (each
# client sees EOF and no reset), said so with WHY (an ERE), counted them, and serves new ones.
closed_with_fin() {
	local name=$1 port=$2 why=$3 before after
	before=$(tcp_resets)
	hold eof "$name" 20
	after=$(tcp_resets)
	[ "$HOLD_REPLY" = ok ] ||
		fail "sockredir@$name: the $N kept connections, after the restart: $HOLD_REPLY" \
			"(TCP counters $before -> $after); journal: $(jtail "$name")"
	[ "$before" = "$after" ] ||
		fail "sockredir@$name: the clients saw EOF, but TCP counted resets: $before -> $after"
	echo "$RESTORE_LINE" |
		grep -qE "^$(restored_re 0 0 "$N"): .*$why" ||
		fail "sockredir@$name: want 0 restored, $N closed with a FIN ($why):" \
			"the journal says: $RESTORE_LINE"
	[ "$(stat_of "$name" restore_closed)" = "$N" ] ||
		fail "sockredir@$name: restore_closed is not $N: $(sd_stats "$name")"
	[ "$(stat_of "$name" restored)" = 0 ] ||
		fail "sockredir@$name: restored is not 0: $(sd_stats "$name")"
	sd_client "$port" --test rr --conns 20 --parallel 10 --size 64K --rounds 3 --quiet ||
		fail "sockredir@$name: new connections after the restart"
	[ "$(stat_of "$name" kernel)" -ge 20 ] ||
		fail "sockredir@$name: the new connections did not take the kernel path: $(sd_stats "$name")"
	WAIT_FOR_FAIL=nfds_fail wait_for "sockredir@$name's fd store back to $BASE_BPF fds" 20 \
		nfds_is "$name" "$BASE_BPF"
}
nfds_fail() { fail "$* (NFileDescriptorStore=$(nfds "$NFDS_NAME"))"; }

# --- The three instances, with the build the container got from `make install`.
sd_backend be-app /run/app/app.sock echo
instance abi $P_ABI 'backend = /run/app/app.sock\nmode = bpf\n'
instance spl $P_SPL 'backend = /run/app/app.sock\nmode = splice\n'
instance ent $P_ENT 'backend = /run/app/app.sock\nmode = bpf\n'
EXEC=$(ct_systemctl show -P ExecStart sockredir@abi.service | sed -nE 's/.*path=([^ ;]+).*/\1/p')
[ -n "$EXEC" ] && cmp -s "$SD_ROOT$EXEC" "$OUT/sockredir" ||
	fail "the unit's ExecStart= path ('$EXEC') does not hold $OUT/sockredir"

# N held connections on each. abi and ent: the Python client. spl: srpeer rr, held after round 1.
hold open abi $P_ABI $N 4096
[ "$HOLD_REPLY" = ok ] || fail "opening $N connections through sockredir@abi: $HOLD_REPLY"
hold open ent $P_ENT $N 4096
[ "$HOLD_REPLY" = ok ] || fail "opening $N connections through sockredir@ent: $HOLD_REPLY"
sd_client $P_SPL --test rr --conns $N --rounds 2 --size 64K --barrier --hold "$T/hold-spl" \
	--timeout 60 >"$T/spl-client.log" 2>&1 &
SPL_CLIENT=$!
BG_PIDS+=("$SPL_CLIENT")
wait_for "srpeer's $N connections through sockredir@spl at the barrier" 20 test -e "$T/hold-spl"
# Each on the path its mode says: the kernel (its download, at least) or splice.
for name in abi:kernel spl:splice ent:kernel; do
	j=$(sd_stats "${name%:*}")
	[ "$(sd_stat_field "$j" open)" = "$N" ] && [ "$(sd_stat_field "$j" "${name#*:}")" = "$N" ] ||
		fail "sockredir@${name%:*}: want $N open, $N ${name#*:}: $j"
done

# --- map-entries: the same build, maps of another size.
log "map-entries: sockredir@ent restarted with map-entries = 4096"
printf 'backend = /run/app/app.sock\nmode = bpf\nmap-entries = 4096\n' |
	ct_write /etc/sockredir/ent.conf 0644
restart ent
jtail ent 100 | grep -q 'Failed to adopt the maps.*--map-entries.*closed with a FIN' ||
	fail "sockredir@ent does not say why it did not adopt the maps: $(jtail ent)"
NFDS_NAME=ent closed_with_fin ent $P_ENT 'the previous maps could not be adopted'

# --- The other ABI, at the unit's ExecStart= path.
install -m 0755 "$ABI_OUT/sockredir" "$SD_ROOT$EXEC" || fail "cannot install $ABI_OUT/sockredir"

log "BPF ABI: sockredir@abi restarted with SR_BPF_ABI=$ABI_VALUE"
restart abi
jtail abi 100 | grep -q 'another BPF ABI.*closed with a FIN' ||
	fail "sockredir@abi does not warn about the other BPF ABI: $(jtail abi)"
NFDS_NAME=abi closed_with_fin abi $P_ABI 'BPF ABI'

log "splice: sockredir@spl restarted with SR_BPF_ABI=$ABI_VALUE"
restart spl
rm -f "$T/hold-spl"
rc=0
wait "$SPL_CLIENT" || rc=$?
[ $rc = 0 ] || fail "sockredir@spl: round 2 of the $N restored connections (srpeer exit $rc):
$(cat "$T/spl-client.log")
journal: $(jtail spl)"
echo "$RESTORE_LINE" |
	grep -qE "^$(restored_re "$N" 0 0)\.$" ||
	fail "sockredir@spl: want $N restored, none closed; the journal says: $RESTORE_LINE"
j=$(sd_stats spl)
[ "$(sd_stat_field "$j" restored)" = "$N" ] && [ "$(sd_stat_field "$j" restore_closed)" = 0 ] ||
	fail "sockredir@spl: want restored $N, restore_closed 0: $j"
sd_client $P_SPL --test rr --conns 20 --parallel 10 --size 64K --rounds 3 --quiet ||
	fail "sockredir@spl: new connections after the restart"
NFDS_NAME=spl WAIT_FOR_FAIL=nfds_fail wait_for "sockredir@spl's fd store back to $BASE_SPLICE fd" \
	20 nfds_is spl "$BASE_SPLICE"

log "ok"
