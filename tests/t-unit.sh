#!/bin/bash
# Unit tests: BACKEND and --listen parsing, every accepted form and every rejected one; the
# metrics renderer, and its output judged by outside parsers: promtool (the Prometheus text
# format, and its lint) and prometheus_client's OpenMetrics parser (# EOF, units, histograms);
# the /metrics HTTP server against well-behaved and hostile clients.
set -euo pipefail
# Debian's tools first, as in lib.sh: the python3 that has prometheus_client is Debian's.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
TOP=$(cd "$(dirname "$0")/.." && pwd)
cd "$TOP"

# `make test` has built them; run alone, build the missing or stale ones. Unsanitized, as `make
# test` builds them: SANITIZE= overrides a SANITIZE=1 that MAKEFLAGS passes down.
progs=(.output/test-address .output/test-metrics .output/test-metrics-http)
make -s SANITIZE= "${progs[@]}"

rc=0
for p in "${progs[@]}"; do
	"$p" || rc=1
done

# `make deps-test` installs both checkers (prometheus, python3-prometheus-client).
command -v promtool >/dev/null || { echo "FAIL: no promtool: run make deps-test" >&2; exit 1; }
python3 -c 'import prometheus_client.openmetrics.parser' ||
	{ echo "FAIL: no prometheus_client: run make deps-test" >&2; exit 1; }

# Two shapes each: one instance without a name label (GET /metrics), and two with one.
for shape in text-single text; do
	.output/test-metrics --dump $shape | promtool check metrics || rc=1
done
echo "# promtool check metrics: done"
for shape in openmetrics-single openmetrics; do
	.output/test-metrics --dump $shape | python3 -c '
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse
n = sum(len(f.samples) for f in parse(sys.stdin.read()))
print("# prometheus_client parsed %d OpenMetrics samples" % n)' || rc=1
done
exit $rc
