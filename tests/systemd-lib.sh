#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Tests under a real systemd: source it from tests/t-systemd-*.sh, after tests/lib.sh.
#
# A test boots Debian 12's systemd 252 as PID 1 in a container (systemd-nspawn, as
# ../shared/TEST-ENV.md describes), installs sockredir into it with `make install`, and drives
# the shipped units with systemctl. Clients run outside the container and check every byte.
#
#   sd_setup             like lib.sh's setup, then boot the container and install sockredir
#   ct CMD...            run CMD inside the container (its mount, pid, ipc and uts namespaces)
#   ct_systemctl ARGS    systemctl inside
#   ct_journal UNIT ...  that unit's journal since boot (extra journalctl options may follow)
#   ct_write PATH MODE   write stdin to PATH inside the container, with MODE
#   sd_stats NAME        `sockredir stats --json NAME` inside, one JSON object
#
# Where things live:
# - The network. lib.sh's setup() runs every test in a network namespace of its own. nspawn
#   runs in it too, without --private-network, so the container shares that namespace: a
#   unit's ListenStream=127.0.0.1:PORT is reachable from the test, and no port can collide
#   with another test or with the machine's own services. (A --private-network container would
#   need a veth pair and addresses, for nothing.) The test also gets a mount namespace of its
#   own (unshare -m), so the mounts below vanish with it even if it is killed.
# - bpffs. The container gets a bpffs of its own, mounted by the test as systemd mounts it on a
#   real host (mode=700), and bound at /sys/fs/bpf (nspawn's /sys is read-only and its systemd
#   does not mount bpffs). Binding the host's /sys/fs/bpf instead would let the container's
#   tmpfiles.d change the host's bpffs, and let two containers fight over
#   /sys/fs/bpf/sockredir/web. Every pin a test makes is gone when its bpffs is unmounted.
# - The root. Built once with debootstrap into $SD_CACHE (outside the work tree, so later runs
#   and later clones reuse it), under a lock, into a temporary directory renamed into place when
#   complete. It is rebuilt when its recipe (the package list, the mirror, SD_RECIPE) changes.
#   Each test runs on an overlayfs whose lower layer is the cached root, and holds a shared lock
#   on the cache meanwhile: mounting and unmounting it took 0.06 s, where `cp -a` of the root
#   (250 MB, 10,000 files) took 0.8-1.5 s and removing the copy 0.3 s more.

SD_CACHE=${SD_CACHE:-/var/cache/sockredir-test}
SD_SUITE=bookworm
SD_INCLUDE=systemd,systemd-sysv,dbus,libbpf1,libsystemd0,libcap2,iproute2,procps,python3,curl
# Bump when what sd_build_root does to the root changes.
SD_RECIPE=1
SD_BOOT_TIMEOUT=${SD_BOOT_TIMEOUT:-90}

SD_CACHED_ROOT=$SD_CACHE/$SD_SUITE
SD_ROOT=""
SD_MACHINE=""
SD_NSPAWN_PID=""
SD_PID1=""
SD_CGROUPS=""
SD_MOUNTS=() # unmounted by sd_cleanup, last first

# The Debian mirror apt uses here: the first "deb" source that carries the suite itself.
sd_mirror() {
	local m
	m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v suite="$SD_SUITE" '
		function flush() {
			if (!found && deb && uri != "" && index(" " suites " ", " " suite " ")) {
				print uri
				found = 1
			}
			deb = 0; uri = ""; suites = ""
		}
		/^[ \t]*$/ { flush(); next }
		/^Types:/ { deb = / deb( |$)/ }
		/^URIs:/ { uri = $2 }
		/^Suites:/ { suites = $0; sub(/^Suites:/, "", suites) }
		END { flush() }')
	if [ -z "$m" ]; then
		m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			sed -e 's/\[[^]]*\]//' | awk -v suite="$SD_SUITE" \
			'$1 == "deb" && $3 == suite { print $2; exit }')
	fi
	echo "${m:-http://deb.debian.org/debian}"
}

sd_recipe() {
	printf 'suite=%s\ninclude=%s\nmirror=%s\nrecipe=%s\n' "$SD_SUITE" "$SD_INCLUDE" \
		"$(sd_mirror)" "$SD_RECIPE"
}

sd_root_is_current() {
	[ -f "$SD_CACHED_ROOT/.sockredir-test-recipe" ] &&
		[ "$(cat "$SD_CACHED_ROOT/.sockredir-test-recipe")" = "$(sd_recipe)" ]
}

# Build the cached root if it is missing or stale. Call it holding the exclusive lock.
sd_build_root() {
	local tmp start=$SECONDS
	sd_root_is_current && return 0
	log "building the $SD_SUITE root in $SD_CACHED_ROOT (about 2 minutes, once)"
	# What a killed build left behind (no one else builds: this holds the exclusive lock).
	rm -rf "$SD_CACHE"/.build.* "$SD_CACHE"/.old.*
	tmp=$(mktemp -d "$SD_CACHE/.build.XXXXXX")
	chmod 0755 "$tmp" # it becomes the container's /, which every user must be able to enter
	if ! debootstrap --variant=minbase --include="$SD_INCLUDE" "$SD_SUITE" "$tmp" \
		"$(sd_mirror)" >"$SD_CACHE/debootstrap.log" 2>&1; then
		tail -n 20 "$SD_CACHE/debootstrap.log" >&2
		rm -rf "$tmp"
		fail "debootstrap failed; its log is $SD_CACHE/debootstrap.log"
	fi
	# The downloaded packages are not needed again. Each test writes its own machine-id, so
	# that systemd does not treat the boot as a first boot.
	rm -f "$tmp"/var/cache/apt/archives/*.deb
	: >"$tmp/etc/machine-id"
	sd_recipe >"$tmp/.sockredir-test-recipe"
	if [ -e "$SD_CACHED_ROOT" ]; then
		mv "$SD_CACHED_ROOT" "$SD_CACHE/.old.$$"
		rm -rf "$SD_CACHE/.old.$$"
	fi
	mv "$tmp" "$SD_CACHED_ROOT"
	log "built the root in $((SECONDS - start))s"
}

# Take a shared lock on the cached root for the rest of the test, building it first (under the
# exclusive lock) when needed. Tests use it as a read-only lower layer, so it must not be
# replaced under them.
sd_root_ensure() {
	local fd
	mkdir -p "$SD_CACHE"
	exec {fd}>"$SD_CACHE/.lock"
	if ! sd_root_is_current; then
		flock -w 600 -x "$fd" || fail "timed out waiting for the lock on $SD_CACHE"
		sd_build_root
	fi
	# flock(2) converts a lock by dropping it first, so a rebuild could slip in between: it
	# would be caught below.
	flock -w 600 -s "$fd" || fail "timed out waiting for the lock on $SD_CACHE"
	sd_root_is_current || fail "the root in $SD_CACHED_ROOT changed under this test"
	# The lock stays held on $fd until the test exits.
}

# ct CMD...: run CMD inside the container, as root, with a clean environment.
ct() {
	[ -n "$SD_PID1" ] || fail "ct $*: the container is not running"
	nsenter -t "$SD_PID1" -m -u -i -n -p -r -w -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LANG=C.UTF-8 SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 "$@"
}

ct_systemctl() {
	ct systemctl --no-pager "$@"
}

# ct_journal UNIT [journalctl options...]: UNIT's messages since boot.
ct_journal() {
	local unit=$1
	shift
	ct journalctl --no-pager -b -o short-monotonic -u "$unit" "$@"
}

# ct_write PATH MODE: stdin into PATH inside the container, creating its directories.
ct_write() {
	ct sh -c 'mkdir -p "$(dirname "$1")" && cat >"$1" && chmod "$2" "$1"' sh "$1" "$2"
}

# sd_stats NAME: one instance's counters, as the JSON object `sockredir stats --json` gives.
sd_stats() {
	ct sockredir stats --json "$1" |
		python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)[0]))'
}

# sd_stat_field JSON KEY[.KEY...]: one number from sd_stats' output.
sd_stat_field() {
	python3 -c 'import json, sys
v = json.loads(sys.argv[1])
for k in sys.argv[2].split("."):
	v = v[k]
print(v)' "$1" "$2"
}

# sd_kernel_served JSON MIN: the instance accepted at least MIN connections, and took the kernel
# path as its dispatch says: no connection fell back (a fallback for the mode, or for an
# unexpected error, would mean the sandbox took BPF away), bytes moved in the kernel, and every
# connection on it, or, with --mode auto ("adaptive"), those opened while no more were open than
# CPUs: at least one (the test runs sd_lone first).
sd_kernel_served() {
	local accepted kernel
	accepted=$(sd_stat_field "$1" accepted)
	kernel=$(sd_stat_field "$1" kernel)
	[ "$accepted" -ge "$2" ] && [ "$(sd_stat_field "$1" splice)" = 0 ] &&
		[ "$(sd_stat_field "$1" bytes.down.kernel)" -gt 0 ] || return 1
	if [ "$(sd_stat_field "$1" dispatch.down)" = adaptive ]; then
		[ "$kernel" -ge 1 ]
	else
		[ "$kernel" = "$accepted" ]
	fi
}

# With --keep-unit, nspawn puts the container in a "payload" cgroup under its own cgroup. Two
# containers started from the same cgroup would share it, so nspawn starts from a cgroup of its
# own, in every hierarchy that systemd uses: the v1 name=systemd one and the v2 one.
sd_cgroup_dirs() {
	local line hier path mnt
	while IFS= read -r line; do
		hier=${line#*:}
		hier=${hier%%:*}
		path=${line#*:*:}
		case $hier in
		name=systemd) mnt=$(findmnt -n -o TARGET -t cgroup -O name=systemd | head -n 1) ;;
		"") mnt=$(findmnt -n -o TARGET -t cgroup2 | head -n 1) ;;
		*) continue ;;
		esac
		[ -n "$mnt" ] && [ -d "$mnt$path" ] && echo "${mnt}${path%/}/sockredir-test-$$"
	done </proc/self/cgroup
}

sd_cgroup_enter() {
	local d
	for d in $(sd_cgroup_dirs); do
		mkdir -p "$d" && echo "$BASHPID" >"$d/cgroup.procs" || fail "cannot move into cgroup $d"
	done
}

# Kill whatever is left in the container's cgroups, then remove them, deepest first.
sd_cgroup_remove() {
	local d
	for d in $SD_CGROUPS; do
		[ -d "$d" ] || continue
		[ -e "$d/cgroup.kill" ] && echo 1 >"$d/cgroup.kill" 2>/dev/null
		find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
		[ ! -d "$d" ] || sleep 0.2
		find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
		[ ! -d "$d" ] || log "cgroup $d is left behind"
	done
}

sd_find_pid1() {
	local c
	for c in $(pgrep -P "$SD_NSPAWN_PID"); do
		[ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ] || continue
		[ "$(readlink "/proc/$c/ns/pid")" != "$(readlink /proc/self/ns/pid)" ] || continue
		SD_PID1=$c
		return 0
	done
	return 1
}

sd_system_running() {
	local s
	s=$(ct systemctl is-system-running 2>/dev/null) || true
	[ "$s" = running ] || [ "$s" = degraded ]
}

sd_nspawn_alive() {
	[ -n "$SD_NSPAWN_PID" ] && kill -0 "$SD_NSPAWN_PID" 2>/dev/null
}

# On a timeout while booting, show what the container said.
sd_boot_fail() {
	echo "--- $T/nspawn.log (last 40 lines)" >&2
	tail -n 40 "$T/nspawn.log" >&2
	fail "$@"
}

sd_boot() {
	local start=$SECONDS
	SD_MACHINE=sr-test-$$
	SD_CGROUPS=$(sd_cgroup_dirs)
	# A bpffs of the container's own, mounted the way systemd mounts it on a real host.
	mkdir -p "$T/bpffs"
	mount -t bpf -o mode=700 bpf "$T/bpffs" || fail "cannot mount a bpffs on $T/bpffs"
	SD_MOUNTS+=("$T/bpffs")
	# machine-id: a fixed one makes this an ordinary boot, not a first boot.
	od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$SD_ROOT/etc/machine-id"
	echo >>"$SD_ROOT/etc/machine-id"
	# The flags come from TEST-ENV.md: --register=no --keep-unit because the host has no
	# systemd or D-Bus to register with; --system-call-filter=bpf because nspawn's own seccomp
	# filter refuses bpf() otherwise; the capabilities sockredir's kernel path needs.
	# SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1: the container gets cgroup v2 only, as a Debian 12
	# host has (when this machine has cgroup2 mounted at all). Without it nspawn follows this
	# machine's v1/v2 hybrid and gives the container v1 only ("System is tainted: cgroupsv1"),
	# where systemd cannot attach the BPF programs of IPAddressDeny= and the like, so a unit
	# would be tested with less than it asks for.
	local unified=0
	findmnt -t cgroup2 >/dev/null && unified=1
	(
		sd_cgroup_enter
		SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=$unified exec systemd-nspawn -D "$SD_ROOT" -M "$SD_MACHINE" \
			-b --register=no --keep-unit \
			--capability=CAP_BPF,CAP_NET_ADMIN,CAP_PERFMON,CAP_SYS_ADMIN \
			--system-call-filter=bpf --bind="$T/bpffs:/sys/fs/bpf" --console=read-only
	) </dev/null >"$T/nspawn.log" 2>&1 &
	SD_NSPAWN_PID=$!
	WAIT_FOR_FAIL=sd_boot_fail wait_for "the container's PID 1" 20 sd_find_pid1
	WAIT_FOR_FAIL=sd_boot_fail wait_for "the container to boot (systemctl is-system-running)" \
		"$SD_BOOT_TIMEOUT" sd_system_running
	log "container $SD_MACHINE booted in $((SECONDS - start))s (nspawn $SD_NSPAWN_PID," \
		"PID 1 is $SD_PID1): $(ct systemctl is-system-running || true)"
	if [ "$(ct systemctl is-system-running || true)" != running ]; then
		ct_systemctl --failed --plain --no-legend | sed 's/^/#   failed: /'
	fi
}

SD_SRPEER=/usr/local/bin/srpeer

# sd_install_srpeer: srpeer into /usr/local/bin, which no package owns.
sd_install_srpeer() {
	install -D -m 0755 "$SRPEER" "$SD_ROOT$SD_SRPEER" || fail "cannot install srpeer into the root"
}

# sd_install: `make install` into the root, as a user would, then what a package's postinst
# does (sysusers, tmpfiles) and a daemon-reload. srpeer goes to /usr/local/bin.
sd_install() {
	# -o: install the sockredir that was built (as the other tests run it), never rebuild it
	# here. The lock: make install writes .output/sockredir@.service on its way, and a test
	# running at the same time must not install it half-written.
	flock -w 60 "$OUT/.install.lock" make -C "$TOP" --no-print-directory -s -o .output/sockredir \
		install DESTDIR="$SD_ROOT" PREFIX=/usr >"$T/install.log" 2>&1 || {
		cat "$T/install.log" >&2
		fail "make install DESTDIR=$SD_ROOT PREFIX=/usr failed"
	}
	local f
	for f in sysusers tmpfiles; do
		[ -f "$SD_ROOT/usr/lib/$f.d/sockredir.conf" ] || fail "make install did not install $f.d/sockredir.conf"
	done
	sd_install_srpeer
	ct systemd-sysusers sockredir.conf 2>&1 | sed 's/^/# /' ||
		fail "systemd-sysusers sockredir.conf failed"
	ct systemd-tmpfiles --create sockredir.conf ||
		fail "systemd-tmpfiles --create sockredir.conf failed"
	ct_systemctl daemon-reload || fail "systemctl daemon-reload failed"
	[ -z "${SD_ASAN:-}" ] || sd_install_asan
}

# SD_ASAN=1 (tests/t-sanitize.sh): the units run sockredir built with ASan and UBSan
# (.output/asan), its two runtime libraries copied from the host (the root has none). A report
# goes to the journal and fails the run; sd_check_sanitizers looks for one. No leak check: LSan
# stops the world with ptrace(), which the unit's SystemCallFilter= refuses.
sd_install_asan() {
	local lib
	[ -x "$OUT/asan/sockredir" ] || fail "SD_ASAN=1: no $OUT/asan/sockredir (make SANITIZE=1)"
	for lib in $(ldd "$OUT/asan/sockredir" | awk '/lib(asan|ubsan)\.so/ { print $3 }'); do
		cp "$lib" "$SD_ROOT/usr/lib/x86_64-linux-gnu/" || fail "copying $lib into the root failed"
	done
	cp "$OUT/asan/sockredir" "$SD_ROOT/usr/bin/sockredir" || fail "installing the ASan build failed"
	printf '[Service]\nEnvironment=ASAN_OPTIONS=detect_leaks=0:print_summary=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1\n' |
		ct_write /etc/systemd/system/sockredir@.service.d/asan.conf 0644
	ct_systemctl daemon-reload || fail "systemctl daemon-reload failed"
	ct ldd /usr/bin/sockredir | grep -q libasan || fail "SD_ASAN=1: /usr/bin/sockredir is no ASan build"
	log "sockredir in the container is the ASan+UBSan build"
}

# sd_check_sanitizers: with SD_ASAN=1, no sanitizer report in the container's journal.
sd_check_sanitizers() {
	local hits
	[ -n "${SD_ASAN:-}" ] || return 0
	hits=$(ct journalctl --no-pager -b -o cat | grep -E 'ERROR: AddressSanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior)Sanitizer' || true)
	[ -z "$hits" ] || fail "sanitizer reports in the journal: $(echo "$hits" | head -n 5)"
	log "no sanitizer report in the journal"
}

# Power the container off (bounded), then make sure nothing of it is left.
sd_teardown() {
	local deadline
	if sd_nspawn_alive; then
		[ -n "$SD_PID1" ] && ct systemctl poweroff --no-block >/dev/null 2>&1
		deadline=$((SECONDS + 30))
		while sd_nspawn_alive && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
	fi
	if sd_nspawn_alive; then
		log "the container did not power off within 30s: killing it"
		kill -TERM "$SD_NSPAWN_PID" 2>/dev/null
		deadline=$((SECONDS + 10))
		while sd_nspawn_alive && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
		# Killing the container's PID 1 kills everything in its pid namespace.
		[ -n "$SD_PID1" ] && kill -KILL "$SD_PID1" 2>/dev/null
		kill -KILL "$SD_NSPAWN_PID" 2>/dev/null
	fi
	[ -n "$SD_NSPAWN_PID" ] && wait "$SD_NSPAWN_PID" 2>/dev/null
	SD_NSPAWN_PID=""
	SD_PID1=""
	sd_cgroup_remove
	local i
	for ((i = ${#SD_MOUNTS[@]} - 1; i >= 0; i--)); do
		umount "${SD_MOUNTS[i]}" 2>/dev/null || umount -l "${SD_MOUNTS[i]}" 2>/dev/null
	done
	SD_MOUNTS=()
	[ -n "$SD_ROOT" ] && [ -z "${KEEP_TMP:-}" ] && rm -rf "$T/upper" "$T/work" "$T/root"
}

sd_cleanup() {
	local rc=$?
	set +e
	if [ $rc != 0 ] && [ $rc != 77 ] && [ -n "$SD_PID1" ] && sd_nspawn_alive; then
		echo "--- the container's journal (last 80 lines)" >&2
		ct journalctl --no-pager -b -n 80 -o short-monotonic >&2
	fi
	# A test's own summary of what failed ($SD_FAIL_SUMMARY, a file), last: where run.sh's
	# tail of the log shows it.
	if [ $rc != 0 ] && [ $rc != 77 ] && [ -s "${SD_FAIL_SUMMARY:-}" ]; then
		echo "--- what failed" >&2
		cat "$SD_FAIL_SUMMARY" >&2
	fi
	sd_teardown
	(exit $rc)
	cleanup
}

# sd_setup: lib.sh's setup (a network namespace, $T, cleanup on exit), a mount namespace of
# the test's own, then the container booted with sockredir installed (only srpeer with SD_BARE).
sd_setup() {
	need_root
	need_cmd debootstrap systemd-nspawn nsenter unshare flock mount findmnt python3 pgrep
	grep -qw bpf /proc/filesystems || skip "the kernel has no bpffs"
	if [ -z "${SR_IN_NETNS:-}" ]; then
		# Build the root here: debootstrap needs the mirror, which the test's own network
		# namespace can't reach.
		sd_root_ensure
		export SR_IN_NETNS=1
		exec unshare -n -m --propagation private -- "$BASH" "$0" "$@"
	fi
	setup "$@"
	trap sd_cleanup EXIT
	sd_root_ensure
	local start=$SECONDS
	mkdir "$T/upper" "$T/work" "$T/root"
	mount -t overlay overlay -o "lowerdir=$SD_CACHED_ROOT,upperdir=$T/upper,workdir=$T/work" \
		"$T/root" || fail "cannot mount an overlayfs on the cached root"
	SD_MOUNTS+=("$T/root")
	SD_ROOT=$T/root
	sd_boot
	if [ -n "${SD_BARE:-}" ]; then
		sd_install_srpeer
		log "container ready (without sockredir) in $((SECONDS - start))s"
	else
		sd_install
		log "container ready in $((SECONDS - start))s"
	fi
}

# --- Added for t-systemd-reload, t-systemd-watchdog and t-systemd-deb. Nothing above uses them.
#
#   sd_setup_bare        sd_setup without sd_install: no sockredir in the container (only srpeer)
#   sd_backend UNIT SOCKET [MODE]   an srpeer backend (echo by default) as a transient service
#   sd_instance NAME PORT [DROPIN]  the listen drop-in (and a service drop-in), enable --now
#   sd_client PORT ARGS  an srpeer client from the test, against 127.0.0.1:PORT
#   sd_main_pid UNIT     the unit's MainPID, as the container sees it (0: none)
#   sd_unix_conns UNIT SOCKET   the connections from UNIT that the backend on SOCKET holds now

# sd_setup_bare: as sd_setup, but the container gets no `make install`: for a test that installs
# sockredir itself (the .deb). Only srpeer is installed, for the backends.
sd_setup_bare() {
	SD_BARE=1
	sd_setup "$@"
}

# sd_backend UNIT SOCKET [MODE [OPTIONS...]]: an srpeer backend (echo by default) as a transient
# service inside the container, as root, listening on SOCKET (its directory is made), with
# further srpeer backend OPTIONS.
sd_backend() {
	local unit=$1 sock=$2 mode=${3:-echo}
	shift $(($# < 3 ? $# : 3))
	ct install -d -m 0755 "$(dirname "$sock")"
	ct systemd-run --quiet --unit="$unit" -p LimitNOFILE=20000 \
		"$SD_SRPEER" backend --listen "$sock" --mode "$mode" "$@" ||
		fail "systemd-run $unit failed"
	wait_for "backend $unit on $sock" 10 ct test -S "$sock"
}

# sd_instance NAME PORT [DROPIN]: what README.md's "Under systemd" has a user add to the shipped
# units, given /etc/sockredir/NAME.conf (written by the caller): the ListenStream= drop-in on
# 127.0.0.1:PORT, then `systemctl enable --now sockredir@NAME.socket`. DROPIN, a file on the
# host, goes into sockredir@NAME.service.d/ under its own name.
sd_instance() {
	local name=$1 port=$2 dropin=${3:-}
	printf '[Socket]\nListenStream=127.0.0.1:%s\n' "$port" |
		ct_write "/etc/systemd/system/sockredir@$name.socket.d/listen.conf" 0644
	if [ -n "$dropin" ]; then
		ct_write "/etc/systemd/system/sockredir@$name.service.d/${dropin##*/}" 0644 <"$dropin"
	fi
	ct_systemctl daemon-reload || fail "systemctl daemon-reload failed"
	ct_systemctl enable --now "sockredir@$name.socket" 2>&1 | sed 's/^/# /'
	[ "${PIPESTATUS[0]}" = 0 ] || fail "systemctl enable --now sockredir@$name.socket failed"
	wait_for "sockredir@$name.socket listening on $port" 5 port_listening "$port"
}

# sd_client PORT [srpeer client options...]: from the test (the container shares its network
# namespace), every byte checked.
sd_client() {
	local port=$1
	shift
	"$SRPEER" client --connect "127.0.0.1:$port" --timeout 30 "$@"
}

# sd_lone PORT: round trips on one connection alone. --mode auto puts a connection on the kernel
# path only while no more are open than CPUs, counting the clients still waiting to be accepted,
# so a burst (--parallel) may have none there; this one shows that the unit's sandbox lets the
# kernel path work (sd_kernel_served). Run it before a burst, while nothing else is open.
sd_lone() {
	sd_client "$1" --test rr --conns 1 --size 64K --rounds 2 --quiet ||
		fail "round trips on a lone connection through port $1"
}

sd_main_pid() {
	ct_systemctl show -P MainPID "$1"
}

# sd_unix_conns UNIT SOCKET: how many connections made from UNIT (its main process) the backend
# listening on SOCKET holds now. ss runs in the network namespace of that process: the backend's
# end of a Unix connection is made in the namespace of the socket that connected, which for a
# unit with PrivateNetwork=yes is the unit's own.
sd_unix_conns() {
	local pid
	pid=$(sd_main_pid "$1")
	[ "${pid:-0}" -gt 0 ] || fail "sd_unix_conns: $1 has no main process"
	ct nsenter -t "$pid" -n ss -Hx state established src "$2" | wc -l
}
