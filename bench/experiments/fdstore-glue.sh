#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# user/fdstore.c under systemd 252 (the nspawn harness), in the sandbox of the shipped
# sockredir@.service (its [Service] section, with fdstore-glue.c as ExecStart=): does the store
# grow and shrink as FDSTORE=1, FDPOLL=0 and FDSTOREREMOVE=1 say, does a forked child without
# NOTIFY_SOCKET store under NotifyAccess=all (and not under main), do stored fds come back after
# `systemctl restart` and not after stop + start, and does fdstore_stop_is_restart() tell the
# two apart, within its second when the bus daemon hangs.
TOP=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=tests/lib.sh
source "$TOP/tests/lib.sh"
# shellcheck source=tests/systemd-lib.sh
source "$TOP/tests/systemd-lib.sh"
sd_setup "$@"

gcc -std=gnu11 -D_GNU_SOURCE -O2 -Wall -Werror -I"$TOP/user" -o "$T/fdstore-glue" \
	"$TOP/bench/experiments/fdstore-glue.c" "$TOP/user/fdstore.c" "$TOP/user/log.c" \
	$(pkg-config --cflags --libs libsystemd libbpf) ||
	fail "cannot build fdstore-glue"
install -D -m 0755 "$T/fdstore-glue" "$SD_ROOT/usr/local/bin/fdstore-glue"
# The shipped service's settings, with the probe as its program.
sed -e '/^\[Unit\]/,/^\[Service\]/{/^\[Service\]/!d}' -e '/^\[Install\]/,$d' \
	-e 's|^ExecStart=.*|ExecStart=/usr/local/bin/fdstore-glue|' -e '/^ExecReload=/d' \
	-e '/^WatchdogSec=/d' "$TOP/units/sockredir@.service" |
	ct_write /etc/systemd/system/glue@.service 0644
ct_systemctl daemon-reload
U=glue@x.service
n_store() { ct_systemctl show -P NFileDescriptorStore "$U"; }
sig() { ct_systemctl kill --kill-whom=main --signal="$1" "$U"; sleep 0.3; }
glue_log() { ct_journal "$U" -o cat | grep -E '^glue:|notification|fd store|Hit' | sed 's/^/# /'; }

ct_systemctl start "$U" || fail "cannot start $U"
log "started: store holds $(n_store) (want 302: sr.poll, sr.nopoll, 300 sr.many)"
sig SIGUSR1
log "peers closed: store holds $(n_store) (want 301: sr.poll dropped on EPOLLHUP, sr.nopoll kept)"
sig SIGUSR2
log "sr.many removed: store holds $(n_store) (want 1)"
sig SIGRTMIN
log "a child stored sr.child: store holds $(n_store) (want 2)"
ct_systemctl restart "$U"
sleep 0.3
log "restarted: store holds $(n_store) (the old 2 + what the new process stored)"
ct_systemctl stop "$U"
ct_systemctl start "$U"
sleep 0.3
ct_systemctl kill --signal=SIGTERM "$U"
sleep 0.5
ct_systemctl start "$U"
sleep 0.3
ct pkill -STOP -x dbus-daemon
ct_systemctl stop "$U"
ct pkill -CONT -x dbus-daemon
glue_log

# NotifyAccess=main: the child's message is refused.
printf '[Service]\nNotifyAccess=main\n' | ct_write /etc/systemd/system/glue@.service.d/main.conf 0644
ct_systemctl daemon-reload
ct_systemctl start "$U"
before=$(n_store)
sig SIGRTMIN
log "NotifyAccess=main: store holds $before, then $(n_store) after the child's sr.child"
ct_journal "$U" -o cat | grep -E 'sr.child|notification' | tail -n 3 | sed 's/^/# /'
ct_systemctl stop "$U"

# As the sockredir user (the shipped drop-in): the bus policy lets it ask too.
ct rm /etc/systemd/system/glue@.service.d/main.conf
ct_write /etc/systemd/system/glue@.service.d/user.conf 0644 <"$TOP/units/sockredir-user.conf"
ct_systemctl daemon-reload
ct_systemctl start "$U"
ct_systemctl restart "$U"
ct_systemctl stop "$U"
ct_journal "$U" -o cat | grep -E '^glue: (fdstore_open|stop_is)' | tail -n 4 | sed 's/^/# user: /'
