#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# The benchmark as a smoke test: `bench/run.sh` with QUICK=1 must run every variant, every echo
# and every bulk byte must have come back right, and the report and plots must be written. In the
# http phase, every proxy must have passed curl's byte-for-byte check and every wrk run must have
# had no socket error and no 4xx/5xx response (run.sh fails the run otherwise; checked here too).
# How fast anything was is not checked.
set -euo pipefail

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$TOP/.output
R=""

skip() {
	echo "SKIP: $*"
	exit 77
}

fail() {
	echo "FAIL: $*" >&2
	[ -z "$R" ] || echo "# the results are kept in $R" >&2
	exit 1
}

cleanup() {
	local rc=$?
	# Keep the results of a failed run for a look; a passing one leaves nothing behind.
	[ $rc != 0 ] || [ -z "$R" ] || rm -rf "$R"
	exit $rc
}

check_prereqs() {
	local c b
	[ "$(id -u)" = 0 ] || skip "needs root: network namespaces, BPF and pins"
	for c in unshare ip ss setsid timeout systemd-socket-activate python3 gnuplot haproxy nginx socat \
		wrk caddy curl perf; do
		# `make test` installs them all (deps-test): a missing one is a broken machine.
		command -v "$c" >/dev/null 2>&1 || fail "needs '$c' (run 'make deps' as root)"
	done
	[ -x /lib/systemd/systemd-socket-proxyd ] || fail "needs /lib/systemd/systemd-socket-proxyd"
	[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || skip "needs libnginx-mod-stream"
	for b in sockredir bench-client bench-backend; do
		[ -x "$OUT/$b" ] || skip "$OUT/$b is not built (make all $OUT/bench-client $OUT/bench-backend)"
	done
}

# Every variant ran every test, all of them succeeded with their bytes checked, and a scale
# level either succeeded the same way or failed with a reason; no wrong byte anywhere.
check_results() {
	python3 - "$R" <<-'EOF'
		import json, os, sys
		r = sys.argv[1]
		meta = json.load(open(os.path.join(r, "meta.json")))
		rows = [json.loads(l) for l in open(os.path.join(r, "raw.jsonl")) if l.strip()]
		s = meta["settings"]
		want = [("rr", int(x), 1) for x in s["rr_sizes"]]
		want += [("up", s["bulk_bytes"], 1), ("down", s["bulk_bytes"], 1), ("connrate", 64, 1)]
		scale = [("rr", 64, int(x)) for x in s["scale_levels"]]
		bad = []
		for v in s["variants"]:
		    got = {(x["test"], int(x["size"]), int(x["conns"])): x for x in rows if x["variant"] == v}
		    for k in want + scale:
		        x = got.get(k)
		        what = "%s: %s %s x%s" % (v, *k)
		        if x is None:
		            bad.append("%s did not run" % what)
		        elif x["status"] == "ok":
		            if not x.get("verified") or int(x.get("verified_bytes", 0)) <= 0:
		                bad.append("%s: ok but its bytes were not checked" % what)
		        elif k in scale and x.get("reason"):
		            print("# %s failed, with a reason: %s" % (what, x["reason"]))
		        else:
		            bad.append("%s failed: %s" % (what, x.get("reason", "no reason")))
		    for x in got.values():
		        why = x.get("reason", "")
		        if "wrong byte" in why or "differs" in why:
		            bad.append("%s: WRONG BYTES: %s" % (v, why))
		if "http" in s.get("phases", []):
		    shapes = [(i.split("=")[0], int(c)) for i in s["http_conns"].split()
		              for c in i.split("=")[1].split(",")]
		    for v in s.get("http_variants", s["variants"]):
		        if v == "direct":
		            continue
		        got = {(x["test"], x["server"], int(x["conns"])): x for x in rows
		               if x["variant"] == v and x.get("server")}
		        for srv in s["http_servers"].split():
		            for shape, c in shapes:
		                x = got.get(("http-" + shape, srv, c))
		                what = "%s: http %s %s x%d" % (v, srv, shape, c)
		                if x is None:
		                    bad.append("%s did not run" % what)
		                elif x["status"] != "ok" or not x.get("verified"):
		                    bad.append("%s failed: %s" % (what, x.get("reason", "no reason")))
		                elif x["err_connect"] + x["err_read"] + x["err_write"] + x["err_timeout"] + x["non2xx"]:
		                    bad.append("%s: ok with errors: %s" % (what, x))
		checked = sum(int(x.get("verified_bytes", 0)) for x in rows)
		print("# %d measurements, %d variants, %d bytes checked" % (len(rows), len(s["variants"]), checked))
		for b in bad:
		    print("FAIL: " + b)
		sys.exit(1 if bad else 0)
	EOF
}

main() {
	local f
	check_prereqs
	R=$(mktemp -d /tmp/sockredir-bench-quick.XXXXXX)
	trap cleanup EXIT
	echo "# bench/run.sh, QUICK=1, results in $R"
	QUICK=1 BENCH_RESULTS=$R timeout --kill-after=10 300 "$TOP/bench/run.sh" ||
		fail "bench/run.sh exited with status $?"
	check_results || fail "some variants did not run, or not with every byte right"
	for f in results.md summary.csv latency-cdf-64.png throughput.png latency-vs-connections.png; do
		[ -s "$R/$f" ] || fail "$f was not written"
	done
	if grep -E ': <[0-3]>' "$R/sockredir-log.txt"; then
		echo "# (sockredir logged errors; see above. Not a benchmark failure.)"
	fi
	echo "# ok"
}

main "$@"
