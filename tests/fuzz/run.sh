#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The parser fuzz targets (see fuzz.mk).
#
#   tests/fuzz/run.sh regress [TARGET...]  run each target once over every committed input
#                                          (corpus/ and regressions/), no fuzzing; non-zero
#                                          on any crash or failed check; 77 if clang's
#                                          libFuzzer is not installed
#   tests/fuzz/run.sh fuzz [TARGET...]     fuzz each target for FUZZ_SECONDS (default 60), or
#                                          FUZZ_RUNS executions, one after another, into a
#                                          scratch corpus under .output/fuzz/work/
#   tests/fuzz/run.sh merge [TARGET...]    add the scratch inputs that find new coverage to
#                                          the committed corpus (review before committing)
#   tests/fuzz/run.sh coverage [TARGET...] line coverage of the parsers by those inputs
#   tests/fuzz/run.sh build
#
# The targets are built with `make -f tests/fuzz/fuzz.mk` first, unless FUZZ_NO_BUILD=1.
# FUZZ_ARGS adds libFuzzer flags. A crash leaves its input in .output/fuzz/artifacts/TARGET/;
# once fixed, commit it under tests/fuzz/regressions/TARGET/.
set -uo pipefail
TOP=$(cd "$(dirname "$0")/../.." && pwd)
cd "$TOP" || exit 1
FUZZ_DIR=tests/fuzz
FUZZ_OUT=${FUZZ_OUT:-.output/fuzz}
ALL_TARGETS="fuzz-address fuzz-config fuzz-metrics-request fuzz-peek-http fuzz-peek-tls
	fuzz-proxy-header"

# The longest input each target looks at (a little past, for the peek parsers' cap).
max_len() {
	case $1 in
	fuzz-address) echo 1100 ;;
	fuzz-config) echo 4096 ;;
	fuzz-peek-http | fuzz-peek-tls) echo 16448 ;;
	fuzz-proxy-header) echo 64 ;;
	fuzz-metrics-request) echo 8200 ;;
	*) echo 4096 ;;
	esac
}

have_libfuzzer() {
	local clang=${CLANG:-clang}
	command -v "$clang" >/dev/null || return 1
	[ -n "$(find "$("$clang" -print-resource-dir 2>/dev/null)" -name 'libclang_rt.fuzzer-*.a' \
		2>/dev/null | head -n1)" ]
}

build() {
	[ "${FUZZ_NO_BUILD:-}" = 1 ] && return 0
	make --no-print-directory -f "$FUZZ_DIR/fuzz.mk" fuzz-build >/dev/null || {
		echo "fuzz: build failed" >&2
		exit 1
	}
}

# Committed inputs of a target, one a line.
inputs() {
	find "$FUZZ_DIR/corpus/$1" "$FUZZ_DIR/regressions/$1" -type f 2>/dev/null | sort
}

regress() {
	local t bin n rc=0 log
	mkdir -p "$FUZZ_OUT/logs"
	for t in "$@"; do
		bin=$FUZZ_OUT/$t
		mapfile -t files < <(inputs "$t")
		n=${#files[@]}
		if [ "$n" = 0 ]; then
			echo "SKIP $t: no inputs"
			continue
		fi
		log=$FUZZ_OUT/logs/$t-regress.log
		# Given files (not directories), libFuzzer runs each once and fuzzes nothing.
		if "$bin" -rss_limit_mb=4096 -timeout=25 "${files[@]}" >"$log" 2>&1; then
			echo "PASS $t ($n inputs)"
		else
			rc=1
			echo "FAIL $t; the end of $log:"
			grep -E '^Running: ' "$log" | tail -n1 | sed 's/^/    /'
			grep -vE '^(Running: |Executed )' "$log" | tail -n 30 | sed 's/^/    /'
		fi
	done
	return $rc
}

fuzz() {
	local t bin work art log dict rc=0 limit what status d dirs
	if [ -n "${FUZZ_RUNS:-}" ]; then
		limit=(-runs="$FUZZ_RUNS")
		what="$FUZZ_RUNS runs"
	else
		limit=(-max_total_time="${FUZZ_SECONDS:-60}")
		what="${FUZZ_SECONDS:-60}s"
	fi
	for t in "$@"; do
		bin=$FUZZ_OUT/$t
		work=$FUZZ_OUT/work/$t
		art=$FUZZ_OUT/artifacts/$t
		log=$FUZZ_OUT/logs/$t.log
		mkdir -p "$work" "$art" "$FUZZ_OUT/logs"
		dict=()
		[ -f "$FUZZ_DIR/dict/$t.dict" ] && dict=(-dict="$FUZZ_DIR/dict/$t.dict")
		echo "FUZZ $t ($what; log $log)"
		# New inputs go to the first directory only: the committed ones stay as they are.
		dirs=("$work")
		for d in "$FUZZ_DIR/corpus/$t" "$FUZZ_DIR/regressions/$t"; do
			[ -d "$d" ] && dirs+=("$d")
		done
		# shellcheck disable=SC2086
		"$bin" "${limit[@]}" -max_len="$(max_len "$t")" -rss_limit_mb=4096 -timeout=25 \
			-print_final_stats=1 -artifact_prefix="$art/" "${dict[@]}" ${FUZZ_ARGS:-} \
			"${dirs[@]}" >"$log" 2>&1
		status=$?
		grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n1 | sed 's/^/    /'
		grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$log" | sed 's/^/    /'
		if [ $status != 0 ]; then
			rc=1
			echo "    FAILED (status $status); the input is in $art/:"
			grep -E 'ERROR|CHECK failed|SUMMARY|Test unit written' "$log" | head -n 8 |
				sed 's/^/    /'
		fi
	done
	return $rc
}

merge() {
	local t bin n
	for t in "$@"; do
		bin=$FUZZ_OUT/$t
		if [ ! -d "$FUZZ_OUT/work/$t" ]; then
			echo "SKIP $t: no scratch corpus (run fuzz first)"
			continue
		fi
		mkdir -p "$FUZZ_DIR/corpus/$t"
		# Edges only (no hit counts): that keeps the committed corpora small.
		"$bin" -merge=1 -use_counters=0 -max_len="$(max_len "$t")" -rss_limit_mb=4096 \
			"$FUZZ_DIR/corpus/$t" "$FUZZ_OUT/work/$t" >"$FUZZ_OUT/logs/$t-merge.log" 2>&1 ||
			{ echo "FAIL $t: merge failed, see $FUZZ_OUT/logs/$t-merge.log"; return 1; }
		n=$(find "$FUZZ_DIR/corpus/$t" -type f | wc -l)
		echo "MERGE $t: $n inputs in $FUZZ_DIR/corpus/$t"
		[ "$n" -gt 200 ] && echo "    more than 200: keep the committed corpus small"
	done
	return 0
}

# Line coverage of the parsers by everything each target has seen: the committed inputs and
# the scratch corpus. Built without sanitizers into $FUZZ_OUT/cov/.
coverage() {
	local t dir=$FUZZ_OUT/cov clang=${CLANG:-clang} srcs extra
	local cflags=(-fsanitize=fuzzer -fprofile-instr-generate -fcoverage-mapping -g -O0
		-std=gnu11 -D_GNU_SOURCE -I.output -Ibpf -w)
	local profdata=llvm-profdata llvm_cov=llvm-cov
	command -v llvm-profdata-14 >/dev/null && profdata=llvm-profdata-14 llvm_cov=llvm-cov-14
	mkdir -p "$dir"
	for t in "$@"; do
		extra=()
		case $t in
		fuzz-address) srcs="user/address.c" extra=("$FUZZ_DIR/fake-resolver.c"
			"-Wl,--wrap=getaddrinfo") ;;
		fuzz-config) srcs="user/options.c user/options-help.c user/config-file.c user/parse.c
			user/address.c user/log.c"
			extra=("$FUZZ_DIR/fake-resolver.c" "-Wl,--wrap=getaddrinfo" -lbpf) ;;
		fuzz-peek-http | fuzz-peek-tls) srcs="user/peek.c" ;;
		fuzz-proxy-header) srcs="user/proxy-protocol.c" ;;
		fuzz-metrics-request) srcs="user/metrics-request.c user/metrics-accept.c" ;;
		esac
		# shellcheck disable=SC2086
		"$clang" "${cflags[@]}" "$FUZZ_DIR/$t.c" $srcs "${extra[@]}" -o "$dir/$t" || return 1
		# shellcheck disable=SC2046
		LLVM_PROFILE_FILE="$dir/$t.profraw" "$dir/$t" -runs=0 -max_len="$(max_len "$t")" \
			$(for d in "$FUZZ_OUT/work/$t" "$FUZZ_DIR/corpus/$t" \
				"$FUZZ_DIR/regressions/$t"; do [ -d "$d" ] && echo "$d"; done) \
			>"$dir/$t.log" 2>&1 || { echo "FAIL $t: see $dir/$t.log"; return 1; }
		"$profdata" merge -o "$dir/$t.profdata" "$dir/$t.profraw" || return 1
		echo "COVERAGE $t"
		# shellcheck disable=SC2086
		"$llvm_cov" report "$dir/$t" -instr-profile="$dir/$t.profdata" $srcs | sed 's/^/    /'
	done
}

cmd=${1:-}
shift || true
if [ $# -gt 0 ]; then
	targets=("$@")
else
	read -ra targets <<<"$ALL_TARGETS"
fi

case $cmd in
build | regress | fuzz | merge | coverage) ;;
*)
	awk 'NR > 2 && /^#/ { sub(/^# ?/, ""); print; next } NR > 2 { exit }' "$0"
	exit 2
	;;
esac
if ! have_libfuzzer; then
	echo "SKIP: clang's libFuzzer runtime is not installed (libclang-rt-14-dev)"
	exit 77
fi
build
case $cmd in
build) exit 0 ;;
regress) regress "${targets[@]}" ;;
fuzz) fuzz "${targets[@]}" ;;
merge) merge "${targets[@]}" ;;
coverage) coverage "${targets[@]}" ;;
esac
