#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The Debian package under a real systemd (252, PID 1 in a container that has never seen
# `make install`): build it (`make deb`, when a source is newer than the .deb), check it with
# lintian (no E: or W: line), and install it with `dpkg -i` into the booted container, as a user
# would on a running machine, so that its postinst runs systemd-sysusers, systemd-tmpfiles and a
# daemon-reload for real.
#
# Then the main scenario from what the package installed only: /etc/sockredir/web.conf and the
# listen drop-in copied from /usr/share/doc/sockredir/examples/ unchanged, a backend where that
# web.conf expects it, `systemctl enable --now sockredir@web.socket`, clients from outside that
# check every byte, the kernel path in `sockredir stats`, `systemctl stop`: Result=success and
# the pins gone. Then `dpkg -r` stops the running instance and removes the units, and `dpkg -P`
# purges the package and the instance's enablement link.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/systemd-lib.sh"

# --- Before the test's own namespaces (sd_setup_bare runs this file again inside them): build
# the package if needed, and hand a copy of it to the test.
if [ -z "${SR_IN_NETNS:-}" ]; then
	need_root
	need_cmd dpkg-buildpackage dpkg-parsechangelog lintian flock git
	DEB=$TOP/sockredir_$(cd "$TOP" && dpkg-parsechangelog -S Version)_$(dpkg --print-architecture).deb
	# deb_stale: the .deb is missing, or a file it is built from is newer (or SR_DEB_REBUILD=1).
	deb_stale() {
		local f files
		[ -z "${SR_DEB_REBUILD:-}" ] || return 0
		[ -f "$DEB" ] || return 0
		files=$(git -C "$TOP" ls-files -co --exclude-standard -- Makefile user bpf units debian) ||
			return 0
		while IFS= read -r f; do
			if [ "$TOP/$f" -nt "$DEB" ]; then
				log "$f is newer than ${DEB##*/}"
				return 0
			fi
		done <<<"$files"
		return 1
	}
	# One `make deb` at a time: it writes debian/, .output/deb and the .deb in the tree.
	mkdir -p "$OUT"
	exec {deb_lock}>"$OUT/.deb.lock"
	flock -w 300 "$deb_lock" || fail "timed out waiting for $OUT/.deb.lock"
	if deb_stale; then
		start=$SECONDS
		make -C "$TOP" --no-print-directory deb >"$OUT/t-systemd-deb.make.log" 2>&1 || {
			tail -n 30 "$OUT/t-systemd-deb.make.log" >&2
			fail "make deb failed; its log is $OUT/t-systemd-deb.make.log"
		}
		log "make deb took $((SECONDS - start))s"
		[ -f "$DEB" ] || fail "make deb did not make $DEB"
	else
		log "${DEB##*/} is newer than its sources: not rebuilt"
	fi
	# A copy under its own name (lintian goes by the name), which the test removes.
	SR_TEST_DEB_DIR=$(mktemp -d /tmp/sockredir-test-deb.XXXXXX)
	SR_TEST_DEB_NAME=${DEB##*/}
	SR_TEST_DEB=$SR_TEST_DEB_DIR/$SR_TEST_DEB_NAME
	cp "$DEB" "$SR_TEST_DEB"
	exec {deb_lock}>&-
	export SR_TEST_DEB SR_TEST_DEB_DIR SR_TEST_DEB_NAME
fi

sd_setup_bare "$@"
CLEANUP_PATHS+=("$SR_TEST_DEB_DIR")
[ -s "$SR_TEST_DEB" ] || fail "no package to test ($SR_TEST_DEB)"

# lintian from the host, meanwhile.
lintian "$SR_TEST_DEB" >"$T/lintian.out" 2>"$T/lintian.err" &
LINTIAN_PID=$!
BG_PIDS+=("$LINTIAN_PID")

P=80 # the example listen.conf's ListenStream=80 (the test has a network namespace of its own)
U=sockredir@web.service
PINS=/sys/fs/bpf/sockredir/web
UNITDIR=/lib/systemd/system # /usr/lib/systemd/system: Debian 12's root is merged-/usr

ct test ! -e /usr/bin/sockredir || fail "the container has sockredir before dpkg -i"
ct getent passwd sockredir >/dev/null && fail "the container has a sockredir user before dpkg -i"

# --- dpkg -i, with systemd running.
ct_write "/tmp/$SR_TEST_DEB_NAME" 0644 <"$SR_TEST_DEB"
ct dpkg -i "/tmp/$SR_TEST_DEB_NAME" >"$T/dpkg-i.log" 2>&1 || {
	cat "$T/dpkg-i.log" >&2
	fail "dpkg -i $SR_TEST_DEB_NAME failed"
}
sed 's/^/# dpkg -i: /' "$T/dpkg-i.log"
[ "$(ct dpkg-query -W -f '${Status}' sockredir)" = "install ok installed" ] ||
	fail "sockredir is not installed: $(ct dpkg-query -W -f '${Status}' sockredir)"
# What the postinst did: the user (sysusers), the pin directories (tmpfiles), a daemon-reload.
ct getent passwd sockredir >/dev/null || fail "the postinst did not create the sockredir user"
[ "$(ct stat -c '%a %U %G' /sys/fs/bpf/sockredir)" = "1770 root sockredir" ] ||
	fail "/sys/fs/bpf/sockredir after dpkg -i: $(ct stat -c '%a %U %G' /sys/fs/bpf/sockredir 2>&1)"
[ "$(ct stat -c '%a' /sys/fs/bpf)" = 1711 ] || fail "/sys/fs/bpf after dpkg -i: mode $(ct stat -c '%a' /sys/fs/bpf)"
# (The socket loads only once it has a listen drop-in: "Unit has no Listen setting".)
for u in "$U:sockredir@.service" "sockredir@web.socket:sockredir@.socket"; do
	[ "$(ct_systemctl show -P FragmentPath "${u%%:*}")" = "$UNITDIR/${u#*:}" ] ||
		fail "${u%%:*} comes from '$(ct_systemctl show -P FragmentPath "${u%%:*}")' after dpkg -i"
done
[ "$(ct_systemctl show -P LoadState "$U")" = loaded ] ||
	fail "$U does not load after dpkg -i: $(ct_systemctl show -P LoadState "$U")"
ct_systemctl show -P ExecStart "$U" | grep -q 'path=/usr/bin/sockredir ' ||
	fail "the packaged unit does not run /usr/bin/sockredir: $(ct_systemctl show -P ExecStart "$U")"

# --- The main scenario, from the packaged files only.
EX=/usr/share/doc/sockredir/examples
ct install -d -m 0755 /etc/sockredir /etc/systemd/system/sockredir@web.socket.d
ct cp "$EX/web.conf" /etc/sockredir/web.conf
ct cp "$EX/sockredir@web.socket.d/listen.conf" /etc/systemd/system/sockredir@web.socket.d/
backend=$(ct sed -n 's/^backend *= *//p' /etc/sockredir/web.conf)
[ "$(echo "$backend" | wc -l)" = 1 ] && [ -n "$backend" ] ||
	fail "the example web.conf does not have one backend: '$backend'"
log "the example web.conf's backend: $backend"
sd_backend be-web "$backend" echo
ct_systemctl daemon-reload
ct_systemctl enable --now sockredir@web.socket 2>&1 | sed 's/^/# /'
[ "${PIPESTATUS[0]}" = 0 ] || fail "systemctl enable --now sockredir@web.socket failed"
wait_for "sockredir@web.socket listening on port $P" 5 port_listening $P

# serve N: N round trips, byte for byte.
serve() {
	sd_client $P --test rr --conns "$1" --parallel 8 --size 64K --rounds 4 --quiet ||
		fail "round trips through sockredir@web (packaged)"
}
sd_lone $P # it starts the service, and takes the kernel path
serve 40
sd_client $P --test rr --conns 2 --size 8M --quiet || fail "8 MiB round trips through sockredir@web"
! ct_journal "$U" -o cat | grep -i 'kernel path unavailable' || fail "$U fell back to splice (above)"
j=$(sd_stats web) || fail "sockredir stats --json web failed inside the container"
log "stats web: $j"
sd_kernel_served "$j" 43 || fail "web: did not take the kernel path as dispatched: $j"
ct_systemctl reload "$U" || fail "systemctl reload $U failed"

ct_systemctl stop sockredir@web.socket "$U" || fail "systemctl stop sockredir@web failed"
result=$(ct_systemctl show -P Result "$U")
[ "$result" = success ] || fail "$U ended with Result=$result"
ct test ! -e "$PINS" || fail "pins left in $PINS after systemctl stop"

# --- dpkg -r with the instance running: the prerm stops it (cleanly), the units go.
ct_systemctl start sockredir@web.socket || fail "systemctl start sockredir@web.socket failed"
serve 8
[ "$(ct_systemctl show -P ActiveState "$U")" = active ] || fail "$U is not running before dpkg -r"
ct dpkg -r sockredir >"$T/dpkg-r.log" 2>&1 || {
	cat "$T/dpkg-r.log" >&2
	fail "dpkg -r sockredir failed"
}
sed 's/^/# dpkg -r: /' "$T/dpkg-r.log"
for u in sockredir@web.socket "$U"; do
	s=$(ct_systemctl show -P ActiveState "$u")
	[ "$s" = inactive ] || fail "$u is $s after dpkg -r"
done
result=$(ct_systemctl show -P Result "$U")
[ "$result" = success ] || fail "$U, stopped by dpkg -r, ended with Result=$result"
! port_listening $P || fail "port $P still listens after dpkg -r"
ct test ! -e "$PINS" || fail "pins left in $PINS after dpkg -r"
for f in /usr/bin/sockredir "$UNITDIR/sockredir@.service" "$UNITDIR/sockredir@.socket"; do
	ct test ! -e "$f" || fail "$f is still there after dpkg -r"
done
# The postrm's daemon-reload: systemd no longer finds the template.
s=$(ct_systemctl show -P LoadState sockredir@other.service)
[ "$s" = not-found ] || fail "after dpkg -r, systemd still loads sockredir@other.service ($s)"
[ "$(ct_systemctl show -P NeedDaemonReload "$U")" = no ] ||
	fail "after dpkg -r, $U needs a daemon-reload: the postrm did not run one"
[ "$(ct dpkg-query -W -f '${Status}' sockredir)" = "deinstall ok config-files" ] ||
	fail "after dpkg -r: $(ct dpkg-query -W -f '${Status}' sockredir)"
ct test -f /etc/sockredir/web.conf || fail "dpkg -r removed the administrator's /etc/sockredir/web.conf"

# --- dpkg -P: the package is gone, with the link `systemctl enable` made.
WANTS=/etc/systemd/system/sockets.target.wants/sockredir@web.socket
ct test -L "$WANTS" || fail "$WANTS is not there before the purge (enable made it)"
ct dpkg -P sockredir >"$T/dpkg-p.log" 2>&1 || {
	cat "$T/dpkg-p.log" >&2
	fail "dpkg -P sockredir failed"
}
sed 's/^/# dpkg -P: /' "$T/dpkg-p.log"
s=$(ct dpkg-query -W -f '${Status}' sockredir 2>/dev/null || true)
[ -z "$s" ] || [ "$s" = "unknown ok not-installed" ] || fail "after dpkg -P: $s"
ct test ! -L "$WANTS" || fail "$WANTS is left after dpkg -P"
[ "$(ct_systemctl is-system-running || true)" != maintenance ] || fail "the container is in maintenance"

# --- lintian: no error and no warning. (As root it says "running with root privileges is not
# recommended!" on stderr, and nothing else.)
rc=0
wait "$LINTIAN_PID" || rc=$?
log "lintian $SR_TEST_DEB_NAME: status $rc, $(wc -l <"$T/lintian.out") line(s)"
sed 's/^/#   /' "$T/lintian.out"
lintian_err=$(grep -vxF 'running with root privileges is not recommended!' "$T/lintian.err" || true)
[ -z "$lintian_err" ] || fail "lintian: $lintian_err"
! grep -qE '^[EW]: ' "$T/lintian.out" || fail "lintian reports errors or warnings (above)"
[ $rc = 0 ] || fail "lintian exited with status $rc"
log "ok"
