#!/bin/bash
# A quick subset of the integration tests against sockredir built with ASan and UBSan, so that
# CI catches memory errors, undefined behaviour and leaks on every run (the whole suite runs
# that way with `make test SANITIZE=1`). A leak at exit or any report fails the test: the
# sanitizers make sockredir exit non-zero, and every test checks its exit status.
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root, like the tests it runs"; exit 77; }
make -s --no-print-directory SANITIZE=1 all >/dev/null
export SOCKREDIR=$TOP/.output/asan/sockredir
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:print_summary=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ldd "$SOCKREDIR" | grep -q libasan || { echo "FAIL: $SOCKREDIR is not an ASan build"; exit 1; }
rc=0
# t-metrics: the /metrics server takes hostile requests. t-adaptive: every mover, and downloads
# moving to the kernel path mid-connection (promote_download()).
for t in t-roundtrip t-halfclose t-banner t-faults t-route-host t-reload t-stats t-workers t-metrics \
	t-adaptive; do
	start=$SECONDS
	if bash "tests/$t.sh" >"$TOP/.output/asan/$t.log" 2>&1; then
		echo "# $t under ASan+UBSan: ok ($((SECONDS - start))s)"
	else
		echo "FAIL: $t under ASan+UBSan; the end of .output/asan/$t.log:"
		tail -n 30 "$TOP/.output/asan/$t.log"
		rc=1
	fi
done
# Keeping connections across restarts and crashes, under the real systemd of the t-systemd-*
# tests, with the ASan build in the container (tests/systemd-lib.sh: SD_ASAN).
for t in "t-systemd-keep KEEP_CONNS=200" t-systemd-keep-setup; do
	# shellcheck disable=SC2086 # the name, then its environment: words
	set -- $t
	name=$1
	shift
	start=$SECONDS
	if env SD_ASAN=1 "$@" bash "tests/$name.sh" >"$TOP/.output/asan/$name.log" 2>&1; then
		echo "# $name under ASan+UBSan: ok ($((SECONDS - start))s)"
	else
		echo "FAIL: $name under ASan+UBSan; the end of .output/asan/$name.log:"
		tail -n 30 "$TOP/.output/asan/$name.log"
		rc=1
	fi
done
[ $rc = 0 ] && echo "ok"
exit $rc
