#!/bin/bash
# Deployment files: the templated units score "OK" (<= 1.5) in systemd-analyze security, the man
# page renders cleanly and documents every long option that --help and `stats --help` list, and
# make install honours PREFIX and DESTDIR.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"
command -v systemd-analyze >/dev/null || { echo "SKIP: needs systemd-analyze"; exit 77; }
command -v groff >/dev/null || { echo "SKIP: needs groff (man-db)"; exit 77; }
T=$(mktemp -d /tmp/sockredir-units.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

score=$(systemd-analyze security --offline=true units/sockredir@.service 2>/dev/null |
	sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
echo "# systemd-analyze security sockredir@.service: $score"
[ -n "$score" ] || fail "no score from systemd-analyze"
awk -v s="$score" 'BEGIN { exit !(s <= 1.5) }' || fail "exposure $score, want <= 1.5"

groff -man -Tutf8 -ww -z user/sockredir.8 2>"$T/groff.err" || fail "groff failed"
[ ! -s "$T/groff.err" ] || fail "groff warnings: $(cat "$T/groff.err")"
man -l user/sockredir.8 2>/dev/null | col -b >"$T/man.txt"
missing=""
for opt in $( { .output/sockredir --help; .output/sockredir stats --help; } |
	grep -oE -- '--[a-z][a-z-]+' | sort -u); do
	grep -q -- "$opt" "$T/man.txt" || missing="$missing $opt"
done
[ -z "$missing" ] || fail "options in --help but not in the man page:$missing"
echo "# every long option of --help is in the man page"

make -s install DESTDIR="$T/root" PREFIX=/usr >/dev/null
for f in usr/bin/sockredir usr/lib/systemd/system/sockredir@.socket \
	usr/lib/systemd/system/sockredir-metrics@.socket usr/lib/systemd/system/sockredir@.service \
	usr/share/man/man8/sockredir.8; do
	[ -e "$T/root/$f" ] || fail "make install did not install /$f"
done
grep -q '^ExecStart=/usr/bin/sockredir ' "$T/root/usr/lib/systemd/system/sockredir@.service" ||
	fail "the installed unit does not run the installed binary"
echo "ok"
