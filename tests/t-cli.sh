#!/bin/bash
# The command line: --help, --version, exit status 2 with a message naming the bad argument,
# inherited fds that are not listening stream sockets, --listen, and two instances of one name.
. "$(dirname "$0")/lib.sh"
setup "$@"

# expect STATUS PATTERN ARGS...: sockredir ARGS exits with STATUS and prints PATTERN.
expect() {
	local want=$1 pattern=$2 rc=0
	shift 2
	timeout 10 "$SOCKREDIR" "$@" >"$T/out" 2>&1 || rc=$?
	[ $rc = "$want" ] || fail "sockredir $*: exit status $rc, want $want; output: $(cat "$T/out")"
	grep -q -- "$pattern" "$T/out" || fail "sockredir $*: output lacks '$pattern': $(cat "$T/out")"
}

expect 0 'BACKEND is one of' --help

# Priority prefixes only when stderr is the journal's stream (JOURNAL_STREAM=DEV:INODE names it).
expect 2 "^Invalid --mode 'fast'" --mode fast /a
: >"$T/journal"
JOURNAL_STREAM=$(stat -c %d:%i "$T/journal") "$SOCKREDIR" --mode fast /a 2>>"$T/journal" || true
grep -q "^<3>Invalid --mode 'fast'" "$T/journal" || fail "no <3> prefix with stderr on JOURNAL_STREAM: $(cat "$T/journal")"
JOURNAL_STREAM=1:2 expect 2 "^Invalid --mode 'fast'" --mode fast /a
expect 0 '^sockredir [0-9]' --version
expect 2 'Missing BACKEND'
expect 2 "Invalid BACKEND 'foo'" foo
expect 2 "Invalid BACKEND 'relative.sock'" relative.sock
expect 2 "Invalid BACKEND '127.0.0.1:99999': port" 127.0.0.1:99999
expect 2 "Invalid BACKEND '\[::1\]': missing ':PORT'" '[::1]'
expect 2 "Invalid BACKEND 'b'" /a b
expect 2 "Invalid --route 'web': expected NAME=BACKEND" --route web
expect 2 "Invalid --route 'web=x': backend: not an address" --route web=x
expect 2 "Invalid --route-host 'bad name=/a': 'bad name' is not a host name" --route-host 'bad name=/a'
expect 2 "Invalid --route-host '\*=/a'" --route-host '*=/a'
expect 2 "Invalid --balance 'random'" --balance random /a
expect 2 "Invalid --proxy-protocol 'v3'" --proxy-protocol v3 /a
expect 2 "Invalid --peek-fail 'drop'" --peek-fail drop /a
expect 2 "Invalid --max-fails '0'" --max-fails 0 /a
expect 2 "Invalid --keepalive 'soon'" --keepalive=soon /a
expect 2 "Invalid --connect-timeout '-1'" --connect-timeout -1 /a
expect 2 "Failed to open config file $T/none.conf" --config "$T/none.conf" /a
printf 'mode = bpf\n# a comment\n\nnope = 1\n' >"$T/bad1.conf"
expect 2 "$T/bad1.conf:4: Unknown option 'nope'" --config "$T/bad1.conf" /a
printf 'balance = least-conn\nmode = fast\n' >"$T/bad2.conf"
expect 2 "$T/bad2.conf:2: Invalid mode 'fast'" --config "$T/bad2.conf" /a
printf 'route-host\n' >"$T/bad3.conf"
expect 2 "$T/bad3.conf:1: Expected 'key = value'" --config "$T/bad3.conf" /a
printf 'config = /etc/other.conf\n' >"$T/bad4.conf"
expect 2 "$T/bad4.conf:1: Invalid config" --config "$T/bad4.conf" /a
printf 'backend =\n' >"$T/bad5.conf"
expect 2 "$T/bad5.conf:1: Missing value for 'backend'" --config "$T/bad5.conf" /a
expect 1 "--route web: no inherited socket is named 'web'" --mode splice --listen 127.0.0.1:$PORT \
	--route web=/a
expect 1 "Socket '127.0.0.1:$PORT' has no --route and there is no default BACKEND" --mode splice \
	--listen 127.0.0.1:$PORT --route-host example.com=/a
expect 2 'unrecognized option' --no-such-option /a
expect 2 "Invalid --mode 'fast'" --mode fast /a
expect 2 "Invalid --listen address 'nope'" --listen nope /a
expect 2 "Invalid --name '../x'" --name ../x /a
expect 2 "Invalid --map-entries '0'" --map-entries 0 /a
expect 2 "Invalid --drain-timeout 'soon'" --drain-timeout soon /a
expect 2 "Invalid --pin-path 'rel'" --pin-path rel /a
expect 2 '--kernel-upload needs --mode bpf or auto' --kernel-upload --mode splice /a
expect 2 '--kernel-upload has no memory bound on this kernel' --kernel-upload /a
printf 'kernel-upload = yes\n' >"$T/ku.conf"
expect 2 'Pass --allow-unbounded-upload too' --config "$T/ku.conf" /a
expect 1 'No listening socket' --mode splice /a

# Every long option in --help is one getopt knows (a typo in either would show here).
"$SOCKREDIR" --help | grep -oE -- '--[a-z-]+' | sort -u | while read -r opt; do
	case $opt in --help | --version | --kernel-upload | --allow-unbounded-upload | --verbose | --keepalive) args=() ;; *) args=(x) ;; esac
	out=$("$SOCKREDIR" "$opt" "${args[@]}" /a 2>&1 || true)
	! grep -q 'unrecognized option' <<<"$out" || fail "--help lists $opt, but it is not an option"
done

# Inherited fds: anything but a listening stream socket is an error, never skipped.
SOCKREDIR=$SOCKREDIR python3 - <<'PY' || fail "an inherited fd that is not a listening stream socket was not refused"
import os, socket, sys

def run_with_fd3(make):
    keep = make()
    fd = keep[0].fileno() if isinstance(keep, tuple) else keep.fileno()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(fd, 3)
        os.set_inheritable(3, True)
        os.dup2(w, 1)
        os.dup2(w, 2)
        os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
        os.execv(os.environ["SOCKREDIR"], ["sockredir", "--mode", "splice", "/a"])
    os.close(w)
    out = b""
    while chunk := os.read(r, 4096):
        out += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode()

cases = {
    "regular file": lambda: open("/dev/null"),
    "UDP socket": lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
    "connected Unix socket": lambda: socket.socketpair(),
    "bound, not listening TCP socket": lambda: (lambda s: (s.bind(("127.0.0.1", 0)), s)[1])(socket.socket()),
}
bad = 0
for name, make in cases.items():
    rc, out = run_with_fd3(make)
    ok = rc == 1 and "Inherited fd 3 (unknown) is not a listening stream socket" in out
    print(("ok   " if ok else "FAIL ") + f"{name}: status {rc}: {out.strip()}")
    bad += not ok
sys.exit(1 if bad else 0)
PY

# --listen binds its own listeners: TCP and a Unix path (removed again on exit).
start_backend echo
# Started with a soft open files limit of 1,024 under a higher hard one, as systemd starts
# services: sockredir raises the soft limit to the hard one.
(ulimit -Sn 1024 && exec "$SOCKREDIR" --mode bpf --name cli$$ --listen 127.0.0.1:$PORT \
	--listen "$T/front.sock" "$T/backend.sock") 2>"$T/proxy-listen.log" &
PROXY_PID=$!
PROXY_NAME=cli$$
PIN_NAMES+=("$PROXY_NAME")
PROXY_LOG=$T/proxy-listen.log
wait_for "--listen sockets" 5 test -S "$T/front.sock"
client --test rr --size 64K --rounds 100 || fail "TCP --listen"
read -r soft hard < <(awk '/^Max open files/ {print $4, $5}' "/proc/$PROXY_PID/limits")
log "open files limit: soft $soft, hard $hard"
[ "$soft" = "$hard" ] && [ "$soft" != 1024 ] || fail "the soft open files limit was not raised: $soft (hard $hard)"
"$SRPEER" client --connect "$T/front.sock" --test rr --size 64K --rounds 100 || fail "Unix --listen"

# A second instance with the same --name must not take over the first one's pins.
expect 1 'another instance with this --name is running' --mode bpf --name cli$$ \
	--listen 127.0.0.1:$((PORT + 1)) "$T/backend.sock"
client --test rr --size 1K --rounds 10 || fail "the first instance must still serve"
stop_proxy
[ ! -e "$T/front.sock" ] || fail "--listen socket path not removed on exit"
# TCP clients take the kernel path; a Unix client's connection is spliced (its shutdown() would take
# our socket out of the sockmaps: see t-unixclient).
[ "$(summary 'on the kernel path')" = 2 ] || fail "both TCP connections should take the kernel path"
[ "$(summary 'client unix')" = 1 ] || fail "the Unix client's connection should be spliced (client unix)"
echo "ok"
