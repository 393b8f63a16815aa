#!/bin/bash
# Unit tests: the Host/SNI peek parsers and the PROXY protocol encoder, with a short fuzz loop.
# The Makefile builds the programs; a missing or stale one is built here.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"

rc=0
for name in peek proxy-protocol; do
	bin=.output/test-$name
	srcs=(tests/test-$name.c user/$name.c user/$name.h user/util.h)
	stale=0
	[ -x "$bin" ] || stale=1
	for s in "${srcs[@]}"; do
		[ "$s" -nt "$bin" ] && stale=1
	done
	if [ $stale = 1 ]; then
		mkdir -p .output
		"${CC:-gcc}" -std=gnu11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Wno-unused-parameter \
			-Werror -I.output -Ibpf "tests/test-$name.c" "user/$name.c" -o "$bin"
	fi
	"$bin" || rc=1
done
exit $rc
