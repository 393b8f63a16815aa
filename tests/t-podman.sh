#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The example in units/examples/, end to end with real podman: caddy in a container with no
# network, serving HTTP on a Unix socket in a shared directory, and sockredir in front of it,
# socket-activated, first on the host (sockredir@web) in --mode bpf and --mode splice, then itself
# in podman (sockredir-podman.container), socket-activated through podman, in splice and bpf.
#
# Quadlet can't run here (no systemd as PID 1), so this test runs the [Container] sections of
# the .container files with plain `podman run` (quadlet_to_podman below), and reads the Caddyfile
# and web.conf from units/examples/ as they are; host paths in them move under $T. The images
# are built here with no registry (tests/podman/mkrootfs.sh): Debian's caddy binary, laid out
# like docker.io/library/caddy, and .output/sockredir. Podman's storage, state and temporary
# files live under $T (outside it: runc's state in /run/runc, emptied again, and the blob cache
# `podman import` keeps in /var/lib/containers/cache), and every container, conmon and mount is
# gone at the end.
. "$(dirname "$0")/lib.sh"
setup "$@"
need_cmd podman runc conmon curl python3 setcap tar ldd

EX=$TOP/units/examples
CADDY_IMAGE=localhost/caddy-from-debian
SR_IMAGE=localhost/sockredir
BODY="hello from caddy in podman"
PODMAN_SR_NAME=test$$-podman # sockredir's --name in the container, for its pins

# Podman settings for these machines (../shared/TEST-ENV.md): runc (crun rejects the hybrid
# cgroups), cgroupfs, no journald, the nofile/nproc limits root can actually set. vfs storage:
# no overlay mount is left behind (the overlay driver keeps its home bind-mounted after exit).
mkdir -p "$T/podman/tmp"
cat >"$T/podman/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$T/podman/events.log"
tmp_dir = "$T/podman/tmp"
image_copy_tmp_dir = "$T/podman/tmp"
EOF
cat >"$T/podman/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$T/podman/storage"
runroot = "$T/podman/run"
EOF
export CONTAINERS_CONF=$T/podman/containers.conf CONTAINERS_STORAGE_CONF=$T/podman/storage.conf
export TMPDIR=$T/podman/tmp # podman import stages the tarball there, not in /var/tmp

# Processes of this test's podman: those whose command line, root or working directory is under
# $T (conmon names the container's directory, the containers' processes have their root there),
# and podman, conmon, runc or catatonit (a pause process) with this test's storage.conf in their
# environment.
t_pids() {
	local d p c
	for d in /proc/[0-9]*; do
		p=${d#/proc/}
		[ "$p" = $$ ] && continue
		c=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline") || continue
		if [[ $c == *"$T"* || $(readlink "$d/root" 2>/dev/null) == "$T"* ||
			$(readlink "$d/cwd" 2>/dev/null) == "$T"* ]]; then
			echo "$p"
		elif [[ $(cat "$d/comm" 2>/dev/null) == @(podman|conmon|runc|catatonit) ]] &&
			[[ $(tr '\0' ' ' 2>/dev/null <"$d/environ") == *"CONTAINERS_STORAGE_CONF=$T/"* ]]; then
			echo "$p"
		fi
	done
}

t_mounts() {
	awk -v t="$T" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo
}

# On any exit: remove every container of this storage (-t 0: kill, don't wait), then kill
# whatever of podman's still runs and unmount whatever is mounted under $T, then lib.sh's
# cleanup. (A SIGTERM to a foreground `podman run` can hang and leave its container behind, so
# it is the containers that are removed, not the podman processes that are signalled.)
podman_teardown() {
	local p m
	command -v podman >/dev/null 2>&1 || return 0
	[ -f "$T/podman/storage.conf" ] || return 0
	timeout 30 podman rm -a -f -t 0 >/dev/null 2>&1
	for p in $(t_pids); do
		kill -KILL "$p" 2>/dev/null
	done
	for m in $(t_mounts | sort -r); do
		umount -l "$m" 2>/dev/null
	done
}
on_exit() {
	local rc=$?
	set +e
	podman_teardown
	(exit $rc)
	cleanup
}
trap on_exit EXIT

podman info >"$T/podman-info.log" 2>&1 ||
	skip "podman does not run here: $(grep -m1 -i 'error' "$T/podman-info.log" ||
		tail -n 1 "$T/podman-info.log")"

# map_paths <FILE: the example's host paths under $T, its images the ones built here.
map_paths() {
	sed -e "s|/etc/caddy-example/Caddyfile|$EX/Caddyfile|g" \
		-e "s|/etc/sockredir/web.conf|$T/etc/web.conf|g" \
		-e "s|/etc/containers/seccomp-bpf.json|$T/seccomp-bpf.json|g" \
		-e "s|/run/caddy-example|$T/run/caddy-example|g" \
		-e "s|/srv/caddy-example|$T/srv/caddy-example|g" \
		-e "s|docker.io/library/caddy:2|$CADDY_IMAGE|g" \
		-e "s|--name web-podman |--name $PODMAN_SR_NAME |g"
}

# quadlet_to_podman FILE [uncomment]: what quadlet would turn FILE's [Container] section into,
# as QUADLET_NAME, QUADLET_OPTS (podman run options), QUADLET_IMAGE and QUADLET_EXEC. With
# "uncomment", "#Key=value" lines count too. As in quadlet, repeated keys add up, except Image
# and Exec, where the last one wins. Only the keys the examples use are known: a new one fails
# here until it is translated (and so tested).
quadlet_to_podman() {
	local file=$1 uncomment=${2:-} section="" line key val c
	QUADLET_NAME="" QUADLET_IMAGE="" QUADLET_OPTS=() QUADLET_EXEC=()
	while IFS= read -r line || [ -n "$line" ]; do
		if [ -n "$uncomment" ] && [ "$section" = Container ] &&
			[[ $line =~ ^#([A-Z][A-Za-z]*=.*)$ ]]; then
			line=${BASH_REMATCH[1]}
		fi
		case $line in
		'' | '#'* | ';'*) continue ;;
		'['*']')
			section=${line#[}
			section=${section%]}
			continue
			;;
		esac
		[ "$section" = Container ] || continue
		[[ $line == *=* ]] || fail "${file##*/}: not a key=value line: $line"
		key=${line%%=*} val=${line#*=}
		[[ $val != *[\'\"\\]* ]] ||
			fail "${file##*/}: $key: quotes and continuation lines are not translated here"
		case $key in
		Image) QUADLET_IMAGE=$val ;;
		ContainerName) QUADLET_NAME=$val ;;
		Network) QUADLET_OPTS+=(--network "$val") ;;
		Volume)
			# Only our own paths (and bpffs) may be mounted: never the real /run or /etc.
			case ${val%%:*} in
			"$T"/* | "$EX"/* | /sys/fs/bpf) ;;
			*) fail "${file##*/}: Volume=$val: this host path is not mapped under \$T (map_paths)" ;;
			esac
			QUADLET_OPTS+=(-v "$val")
			;;
		ReadOnly) [ "$val" = true ] && QUADLET_OPTS+=(--read-only) ;;
		DropCapability) for c in $val; do QUADLET_OPTS+=(--cap-drop "$c"); done ;;
		AddCapability) for c in $val; do QUADLET_OPTS+=(--cap-add "$c"); done ;;
		NoNewPrivileges) [ "$val" = true ] && QUADLET_OPTS+=(--security-opt no-new-privileges) ;;
		SeccompProfile) QUADLET_OPTS+=(--security-opt "seccomp=$val") ;;
		Notify) [ "$val" = true ] && QUADLET_OPTS+=(--sdnotify=container) ;;
		Exec) read -ra QUADLET_EXEC <<<"$val" ;;
		*) fail "${file##*/}: [Container] key $key is not translated by quadlet_to_podman" ;;
		esac
	done <"$file"
	[ -n "$QUADLET_IMAGE" ] || fail "${file##*/}: no Image="
	[ -n "$QUADLET_NAME" ] || QUADLET_NAME=systemd-$(basename "$file" .container)
}

# --- The example's files, with host paths under $T ------------------------------------------------
t0=$SECONDS
mkdir -p "$T/etc" "$T/run/caddy-example" "$T/srv/caddy-example"
for f in caddy.container sockredir-podman.container web.conf; do
	map_paths <"$EX/$f" >"$T/$f"
done
mv "$T/web.conf" "$T/etc/web.conf"
head -c 1M /dev/urandom >"$T/srv/caddy-example/big.bin"
head -c $((8 * 1024 * 1024 + 13)) /dev/urandom >"$T/srv/caddy-example/odd.bin"
chmod 0644 "$T/srv/caddy-example"/*
# Translate both now, to fail before any image is built.
quadlet_to_podman "$T/caddy.container"
quadlet_to_podman "$T/sockredir-podman.container" uncomment

# --- The images, from this machine's files only ---------------------------------------------------
t1=$SECONDS
# Laid out like docker.io/library/caddy:2, file capability included (which is why
# caddy.container keeps CAP_NET_BIND_SERVICE).
FILE_CAPS=cap_net_bind_service=+ep "$TOP/tests/podman/mkrootfs.sh" "$T/caddy.tar" \
	"$(command -v caddy)" /config /data /srv /etc/caddy || fail "building caddy's root filesystem"
podman import \
	--change 'CMD ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]' \
	--change ENV=XDG_CONFIG_HOME=/config --change ENV=XDG_DATA_HOME=/data --change WORKDIR=/srv \
	"$T/caddy.tar" "$CADDY_IMAGE" >>"$T/podman.log" 2>&1 ||
	fail "podman import (caddy): $(tail -n 3 "$T/podman.log")"
"$TOP/tests/podman/mkrootfs.sh" "$T/sockredir.tar" "$SOCKREDIR" ||
	fail "building sockredir's root filesystem"
podman import --change 'ENTRYPOINT ["/usr/bin/sockredir"]' "$T/sockredir.tar" "$SR_IMAGE" \
	>>"$T/podman.log" 2>&1 || fail "podman import (sockredir): $(tail -n 3 "$T/podman.log")"
rm -f "$T/caddy.tar" "$T/sockredir.tar"
log "images built and imported in $((SECONDS - t1))s"

# --- The systemd side: the drop-ins load onto units/sockredir@.socket and .service ----------------
# (quadlet's caddy.service and sockredir-podman.service are stand-ins here: no quadlet in 4.3).
mkdir -p "$T/systemd"
cp "$TOP/units/sockredir@.socket" "$TOP/units/sockredir@.service" "$EX/sockredir-podman.socket" \
	"$T/systemd/"
cp -r "$EX/sockredir@web.socket.d" "$EX/sockredir@web.service.d" "$T/systemd/"
printf '[Service]\nExecStart=/bin/true\n' >"$T/systemd/caddy.service"
cp "$T/systemd/caddy.service" "$T/systemd/sockredir-podman.service"
(cd "$T/systemd" && SYSTEMD_UNIT_PATH=$T/systemd: systemd-analyze verify --man=no \
	sockredir@web.socket sockredir-podman.socket) 2>&1 |
	grep -v 'sockredir is not executable' >"$T/verify.log" || true
[ ! -s "$T/verify.log" ] || fail "systemd-analyze verify: $(cat "$T/verify.log")"

# --- caddy.container, started after its first client has come -----------------------------------
# As under systemd, where the first connection starts sockredir@web, which pulls in caddy: the
# client waits in sockredir (connect-timeout in web.conf) until caddy's socket appears.
PROXY_BACKEND='' start_proxy --mode bpf --config "$T/etc/web.conf"
curl -fsS --max-time 30 -o "$T/early" "http://127.0.0.1:$PORT/" 2>"$T/early.err" &
EARLY_PID=$!
BG_PIDS+=("$EARLY_PID")
wait_for "sockredir to start" 5 proxy_is_running
quadlet_to_podman "$T/caddy.container"
CADDY_NAME=$QUADLET_NAME
log "caddy: podman run -d ${QUADLET_OPTS[*]} $QUADLET_IMAGE ${QUADLET_EXEC[*]}"
podman run -d --replace --name "$CADDY_NAME" "${QUADLET_OPTS[@]}" "$QUADLET_IMAGE" \
	"${QUADLET_EXEC[@]}" \
	>>"$T/podman.log" 2>&1 || fail "podman run caddy: $(tail -n 3 "$T/podman.log")"
CADDY_SOCK=$T/run/caddy-example/caddy.sock
wait_for "caddy's socket" 20 test -S "$CADDY_SOCK"
wait "$EARLY_PID" || fail "the client that came before caddy: $(cat "$T/early.err")"
printf '%s' "$BODY" | cmp -s - "$T/early" || fail "the client that came before caddy got no body"
stop_proxy
[ "$(summary accepted)" = 1 ] || fail "the client that came before caddy: not 1 connection"
log "a client that came before caddy was served once caddy was up"
[ "$(podman inspect --format '{{.HostConfig.NetworkMode}}' "$CADDY_NAME")" = none ] ||
	fail "caddy's container has a network"
curl -fsS --max-time 10 --unix-socket "$CADDY_SOCK" -o "$T/direct" http://localhost/ ||
	fail "caddy does not answer on its socket: $(podman logs "$CADDY_NAME" 2>&1 | tail -n 5)"
printf '%s' "$BODY" | cmp -s - "$T/direct" || fail "caddy's own answer is not the Caddyfile's"

# fetch_and_check WHAT: through 127.0.0.1:$PORT, the body (byte for byte), then the 1 MiB and
# the 8 MiB + 13 files in one keep-alive connection. Two connections in all.
fetch_and_check() {
	local base=http://127.0.0.1:$PORT
	rm -f "$T"/got-*
	curl -fsS --max-time 30 -o "$T/got-body" "$base/" || fail "$1: GET /"
	printf '%s' "$BODY" | cmp -s - "$T/got-body" ||
		fail "$1: GET / answered '$(head -c 200 "$T/got-body")', not '$BODY'"
	curl -fsS --max-time 60 -o "$T/got-big" "$base/files/big.bin" \
		-o "$T/got-odd" "$base/files/odd.bin" ||
		fail "$1: GET /files/big.bin /files/odd.bin"
	cmp "$T/srv/caddy-example/big.bin" "$T/got-big" || fail "$1: big.bin differs"
	cmp "$T/srv/caddy-example/odd.bin" "$T/got-odd" || fail "$1: odd.bin differs"
	log "$1: body and $(($(stat -c %s "$T/got-big") + $(stat -c %s "$T/got-odd"))) file bytes check"
}
FILE_BYTES=$((1024 * 1024 + 8 * 1024 * 1024 + 13))

# check_counts WHAT MODE: sockredir's exit summary. Two connections; in bpf mode both on the
# kernel path, with every file byte moved there; in splice mode none.
check_counts() {
	local what=$1 mode=$2 acc kern spl down
	acc=$(summary accepted) kern=$(summary 'on the kernel path') spl=$(summary 'on splice')
	down=$(summary 'kernel down')
	log "$what: accepted $acc, kernel path $kern, splice $spl, kernel down $down bytes"
	[ "$acc" = 2 ] || fail "$what: $acc connections accepted, expected 2"
	if [ "$mode" = bpf ]; then
		[ "$kern" = 2 ] || fail "$what: $kern of 2 connections on the kernel path"
		[ "$down" -ge "$FILE_BYTES" ] || fail "$what: only $down bytes moved down in the kernel"
	else
		[ "$kern" = 0 ] && [ "$spl" = 2 ] || fail "$what: expected both connections on splice"
	fi
}

# --- sockredir@web: on the host, socket-activated, with web.conf ----------------------------------
for mode in bpf splice; do
	what="sockredir@web --mode $mode"
	PROXY_BACKEND='' start_proxy --mode "$mode" --config "$T/etc/web.conf"
	fetch_and_check "$what"
	if [ "$mode" = bpf ]; then
		[ -e "/sys/fs/bpf/sockredir/$PROXY_NAME/sr_verdict" ] || fail "$what: no pinned program"
	fi
	stop_proxy
	check_counts "$what" "$mode"
done

# --- sockredir-podman.container: sockredir in podman, socket-activated through podman -------------
# The kernel-path variant needs the seccomp profile whose recipe the file's comment gives.
sed -n '/^#     python3 -c /,/seccomp-bpf\.json$/p' "$T/sockredir-podman.container" |
	sed 's/^#     //' >"$T/mkseccomp.sh"
bash "$T/mkseccomp.sh" && [ -s "$T/seccomp-bpf.json" ] ||
	fail "the seccomp recipe in sockredir-podman.container made no profile"

for variant in splice bpf; do
	if [ $variant = splice ]; then
		quadlet_to_podman "$T/sockredir-podman.container"
	else
		quadlet_to_podman "$T/sockredir-podman.container" uncomment
	fi
	what="sockredir-podman.container ($variant)"
	[[ " ${QUADLET_EXEC[*]} " == *" --mode $variant "* ]] || fail "$what: Exec= has no --mode $variant"
	PROXY_N=$((PROXY_N + 1))
	PROXY_NAME=$PODMAN_SR_NAME
	PIN_NAMES+=("$PROXY_NAME")
	PROXY_LOG=$T/proxy$PROXY_N.log
	"$SRPEER" notify-listen "$T/notify$PROXY_N.sock" --timeout 60 >"$T/notify$PROXY_N.out" 2>&1 &
	NOTIFY_PID=$!
	wait_for "notify socket" 5 test -S "$T/notify$PROXY_N.sock"
	log "$what: podman run ${QUADLET_OPTS[*]} $QUADLET_IMAGE ${QUADLET_EXEC[*]}"
	systemd-socket-activate -l "127.0.0.1:$PORT" -E CONTAINERS_CONF -E CONTAINERS_STORAGE_CONF \
		-E TMPDIR -E "NOTIFY_SOCKET=$T/notify$PROXY_N.sock" \
		podman run --rm --replace --name "$QUADLET_NAME" "${QUADLET_OPTS[@]}" "$QUADLET_IMAGE" \
		"${QUADLET_EXEC[@]}" 2>"$PROXY_LOG" &
	PROXY_PID=$!
	wait_for "listener on port $PORT" 5 port_listening "$PORT"
	# The first connection makes systemd-socket-activate exec podman, which starts the container;
	# curl waits meanwhile, its connection queued on the socket sockredir inherits.
	fetch_and_check "$what"
	# Notify=true: podman waits for sockredir's READY=1 in the container and passes it on (podman
	# 4.3 passes on nothing else: no STATUS=, no WATCHDOG=1).
	wait_for "READY=1 from sockredir in the container" 10 grep -q 'READY=1' "$T/notify$PROXY_N.out"
	[ "$(podman inspect --format '{{.HostConfig.NetworkMode}}' "$QUADLET_NAME")" = none ] ||
		fail "$what: the container has a network"
	if [ $variant = bpf ]; then
		[ -e "/sys/fs/bpf/sockredir/$PROXY_NAME/sr_verdict" ] ||
			fail "$what: no pinned program in the host's /sys/fs/bpf"
	fi
	# podman stop sends SIGTERM to sockredir (PID 1 in the container); podman run --rm then
	# removes the container and exits with sockredir's status, which wait_proxy checks is 0.
	timeout 30 podman stop -t 10 "$QUADLET_NAME" >>"$T/podman.log" 2>&1 || fail "$what: podman stop"
	wait_proxy
	wait_for "sockredir's exit summary" 5 grep -q 'Bytes:' "$PROXY_LOG"
	check_counts "$what" "$variant"
	kill -TERM "$NOTIFY_PID" 2>/dev/null || true
	wait "$NOTIFY_PID" 2>/dev/null || true
done

# --- Stop caddy, and check that nothing is left ---------------------------------------------------
timeout 30 podman stop -t 10 "$CADDY_NAME" >>"$T/podman.log" 2>&1 || fail "podman stop caddy"
rc=$(podman inspect --format '{{.State.ExitCode}}' "$CADDY_NAME")
[ "$rc" = 0 ] || fail "caddy exited with status $rc: $(podman logs "$CADDY_NAME" 2>&1 | tail -n 5)"
[ ! -e "$CADDY_SOCK" ] || fail "caddy left its socket behind"
podman rm "$CADDY_NAME" >>"$T/podman.log" 2>&1 || fail "podman rm caddy"

left=$(podman ps -a --format '{{.Names}}')
[ -z "$left" ] || fail "containers left: $left"
# conmon may take a moment to exit after its container is removed.
deadline=$((SECONDS + 10))
while left=$(t_pids) && [ -n "$left" ] && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
[ -z "$left" ] ||
	fail "processes left: $(for p in $left; do tr '\0' ' ' <"/proc/$p/cmdline"; echo; done)"
left=$(t_mounts)
[ -z "$left" ] || fail "mounts left under $T: $left"
log "no container, process or mount left; $((SECONDS - t0))s in all"
echo "ok"
