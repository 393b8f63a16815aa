#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# mkrootfs.sh OUT.tar BINARY [DIR...]: a container root filesystem, as a tarball for
# `podman import`, built from what is on this machine and nothing from a registry: BINARY at
# /usr/bin/, the shared libraries `ldd BINARY` lists at the paths it lists them, /etc/passwd and
# /etc/group with root, /tmp, and an empty DIR (absolute, in the image) for each DIR given.
#
#   tests/podman/mkrootfs.sh caddy.tar /usr/bin/caddy /config /data /srv /etc/caddy
#   podman import --change 'CMD ["caddy","run"]' caddy.tar localhost/caddy
#
# Set FILE_CAPS (e.g. cap_net_bind_service=+ep) to give BINARY a file capability, as some
# published images do; the tarball keeps it (tar --xattrs), and so does podman import.
set -euo pipefail

[ $# -ge 2 ] || {
	echo "usage: $0 OUT.tar BINARY [DIR...]" >&2
	exit 2
}
out=$1 bin=$2
shift 2
[ -x "$bin" ] || {
	echo "$0: $bin is not an executable" >&2
	exit 1
}

root=$(mktemp -d "${out%/*}/.rootfs.XXXXXX")
trap 'rm -rf "$root"' EXIT

chmod 0755 "$root"
mkdir -p "$root"/{usr/bin,etc,tmp,root}
chmod 1777 "$root/tmp"
install -m 0755 "$bin" "$root/usr/bin/${bin##*/}"
# "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)";
# linux-vdso has no path. Copy the files the links point to, under the names ldd shows.
libs=$(ldd "$bin" | grep -oE '/[^ ]+' || true)
[ -n "$libs" ] || {
	echo "$0: ldd lists no libraries for $bin; a static binary needs none (copy it alone)" >&2
	exit 1
}
for l in $libs; do
	mkdir -p "$root${l%/*}"
	cp -L "$l" "$root$l"
done
echo 'root:x:0:0:root:/root:/usr/sbin/nologin' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"
for d in "$@"; do
	mkdir -p "$root$d"
done
if [ -n "${FILE_CAPS:-}" ]; then
	setcap "$FILE_CAPS" "$root/usr/bin/${bin##*/}"
fi

tar --xattrs --xattrs-include='security.capability' --numeric-owner --owner=0 --group=0 \
	-C "$root" -cf "$out.tmp" .
mv -f "$out.tmp" "$out"
