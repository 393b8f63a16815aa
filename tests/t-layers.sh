#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The modules of user/ depend in one direction: every edge of the #include graph and of the
# symbol graph (nm on .output/user/*.o) goes strictly down user/LAYERS, and every module is
# listed there once. tests/module-graph.sh does the check; first it must pass a clean synthetic
# tree and report each violation planted in it, or its verdict on the real tree means nothing.
# shellcheck source=tests/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$TOP" || exit 1

GRAPH=tests/module-graph.sh

# compile DIR: DIR/user/*.c -> DIR/obj/*.o, for the symbol graph.
compile() {
	local c
	mkdir -p "$1/obj"
	for c in "$1"/user/*.c; do
		c=${c##*/}
		gcc -std=gnu11 -Wall -Werror -c "$1/user/$c" -o "$1/obj/${c%.c}.o"
	done
}

# A clean tree: top -> mid -> low1 -> base, low2 -> base; base is header-only. top.c also
# includes a header outside user/, which is no module.
plant_clean() {
	local d=$1
	mkdir -p "$d/user" "$d/bpf"
	echo '#define ABI 1' >"$d/bpf/abi.h"
	cat >"$d/user/top.c" <<-'EOF'
		#include "top.h"
		#include "mid.h"
		#include "../bpf/abi.h"
		void top_run(void) { mid_run(); }
	EOF
	echo 'void top_run(void);' >"$d/user/top.h"
	cat >"$d/user/mid.c" <<-'EOF'
		#include "mid.h"
		#include "low1.h"
		void mid_run(void) { low1_run(); }
		void mid_done(void) {}
	EOF
	printf 'void mid_run(void);\nvoid mid_done(void);\n' >"$d/user/mid.h"
	printf '#include "low1.h"\nvoid low1_run(void) { base_x(); }\n' >"$d/user/low1.c"
	printf '#include "base.h"\nvoid low1_run(void);\n' >"$d/user/low1.h"
	printf '#include "low2.h"\nint low2_run(void) { return base_x(); }\n' >"$d/user/low2.c"
	cat >"$d/user/low2.h" <<-'EOF'
		#ifndef LOW2_H
		#define LOW2_H
		#include "base.h"
		int low2_run(void);
		#endif
	EOF
	cat >"$d/user/base.h" <<-'EOF'
		#ifndef BASE_H
		#define BASE_H
		static inline int base_x(void) { return 0; }
		#endif
	EOF
	printf '# the synthetic tree\ntop\nmid # the middle\n\nlow1 low2\nbase\n' >"$d/user/LAYERS"
}

# The violations: an upward #include (written "../user/top.h"; it closes a cycle of #includes,
# top -> mid -> low1 -> top), a cycle of symbols (mid calls low1, low1 calls mid), an edge within
# a layer (low1 -> low2, in both graphs), a cycle of #includes between headers (base.h <->
# low2.h), a module missing from LAYERS, and a name in LAYERS with no file. Plus a stale object
# whose source is gone, which is no error.
plant_violations() {
	local d=$1
	cat >>"$d/user/low1.c" <<-'EOF'
		#include "../user/top.h"
		void mid_done(void);
		void low1_back(void) { mid_done(); }
		#include "low2.h"
		int low1_side(void) { return low2_run(); }
	EOF
	sed -i 's|^#define BASE_H$|&\n#include "low2.h"|' "$d/user/base.h"
	printf '#include "base.h"\nint stray(void) { return base_x(); }\n' >"$d/user/stray.c"
	echo 'ghost' >>"$d/user/LAYERS"
	cp "$d/obj/top.o" "$d/obj/old.o"
}

test_synthetic() {
	local d=$1 out rc line
	plant_clean "$d"
	compile "$d"
	out=$("$GRAPH" --check "$d/user" "$d/obj" "$d/user/LAYERS") || fail "clean tree: $out"
	log "clean tree: $out"

	plant_violations "$d"
	compile "$d"
	rc=0
	out=$("$GRAPH" --check "$d/user" "$d/obj" "$d/user/LAYERS") || rc=$?
	while IFS= read -r line; do log "  $line"; done <<<"$out"
	[ $rc = 1 ] || fail "planted violations: status $rc, want 1"
	while read -r line; do
		echo "$out" | grep -qxF "$line" || fail "not reported: $line"
	done <<-EOF
		low1 -> top (low1 is on layer 3, top on layer 1) [includes]
		low1 -> mid (low1 is on layer 3, mid on layer 2) [symbols]
		low1 -> low2 (low1 is on layer 3, low2 on layer 3) [includes, symbols]
		base -> low2 (base is on layer 4, low2 on layer 3) [includes]
		cycle in the includes graph: base low2
		cycle in the includes graph: low1 mid top
		cycle in the symbols graph: low1 mid
		stray: in $d/user but not in $d/user/LAYERS
		ghost: listed in $d/user/LAYERS (line 7) but no file $d/user/ghost.c or ghost.h
		6 problems
	EOF
	# And nothing else: not the edges that go down, not the stale object, not ../bpf/abi.h.
	[ "$(echo "$out" | wc -l)" = 10 ] || fail "more reported than planted"

	# The graphs themselves. The plain --symbols mode reads every object, the stale one too.
	diff -u - <("$GRAPH" --includes "$d/user") <<-EOF || fail "--includes: wrong graph"
		base -> low2
		low1 -> base
		low1 -> low2
		low1 -> top
		low2 -> base
		mid -> low1
		stray -> base
		top -> mid
	EOF
	diff -u - <("$GRAPH" --symbols "$d/obj") <<-EOF || fail "--symbols: wrong graph"
		low1 -> low2
		low1 -> mid
		mid -> low1
		old -> mid
		top -> mid
	EOF
	"$GRAPH" --dot "$d/user" "$d/obj" | dot -Tsvg >/dev/null || fail "dot rejects the --dot output"
}

# The objects of the real tree: `make test` builds them first. Build the ones missing or older
# than their source, by name: with .SECONDARY, `make all` leaves a missing object alone while
# .output/sockredir is up to date.
need_objects() {
	local c o stale=()
	for c in user/*.c; do
		o=.output/user/$(basename "$c" .c).o
		[ -e "$o" ] && [ ! "$c" -nt "$o" ] || stale+=("$o")
	done
	[ ${#stale[@]} = 0 ] || make -s "${stale[@]}"
}

command -v dot >/dev/null || fail "needs 'dot' (graphviz; run 'make deps-test' as root)"
T=$(mktemp -d /tmp/sockredir-layers.XXXXXX)
trap 'rm -rf "$T"' EXIT
log "the checker on a synthetic tree"
test_synthetic "$T"

log "the real tree"
need_objects
"$GRAPH" --dot | dot -Tsvg >/dev/null || fail "dot rejects the --dot output"
"$GRAPH" --check user .output/user user/LAYERS || fail "user/ does not follow user/LAYERS"
