#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Run every test (tests/t-*.sh, or those named as arguments), one line each, then the totals.
# A test passes with status 0, is skipped with 77 (it prints why), and fails otherwise.
cd "$(dirname "$0")/.." || exit 1
logs=${TEST_LOG_DIR:-.output/test-logs}
mkdir -p "$logs"
pass=0 failed=0 skipped=0
start_all=$SECONDS

if [ $# -gt 0 ]; then
	tests=()
	for a in "$@"; do tests+=("tests/${a%.sh}.sh"); done
else
	tests=(tests/t-*.sh)
fi

for t in "${tests[@]}"; do
	name=$(basename "$t" .sh)
	start=$SECONDS
	timeout --kill-after=10 "${TEST_TIMEOUT:-600}" bash "$t" >"$logs/$name.log" 2>&1
	rc=$?
	dur=$((SECONDS - start))
	case $rc in
	0)
		pass=$((pass + 1))
		echo "PASS $name (${dur}s)"
		;;
	77)
		skipped=$((skipped + 1))
		echo "SKIP $name: $(grep -m1 '^SKIP:' "$logs/$name.log" | cut -c7-)"
		;;
	*)
		failed=$((failed + 1))
		[ $rc = 124 ] && why="timed out" || why="status $rc"
		echo "FAIL $name (${dur}s, $why); the end of $logs/$name.log:"
		tail -n 25 "$logs/$name.log" | sed 's/^/    /'
		;;
	esac
done

echo "# total time $((SECONDS - start_all))s"
echo "$pass passed, $failed failed, $skipped skipped"
[ $failed = 0 ]
