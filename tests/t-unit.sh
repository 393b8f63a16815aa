#!/bin/bash
# Unit tests: BACKEND and --listen parsing, every accepted form and every rejected one; the
# metrics renderer, and its output judged by outside parsers: promtool (the Prometheus text
# format, and its lint) and prometheus_client's OpenMetrics parser (# EOF, units, histograms).
set -euo pipefail
# Debian's tools first, as in lib.sh: the python3 that has prometheus_client is Debian's.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH
TOP=$(cd "$(dirname "$0")/.." && pwd)
"$TOP/.output/test-address"
"$TOP/.output/test-metrics"

# Two shapes each: one instance without a name label (GET /metrics), and two with one.
if command -v promtool >/dev/null; then
	for shape in text-single text; do
		"$TOP/.output/test-metrics" --dump $shape | promtool check metrics
	done
	echo "# promtool check metrics: no problem"
else
	echo "# no promtool (make deps-test installs prometheus): the text format is not checked by it"
fi
if python3 -c 'import prometheus_client.openmetrics.parser' 2>/dev/null; then
	for shape in openmetrics-single openmetrics; do
		"$TOP/.output/test-metrics" --dump $shape | python3 -c '
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse
n = sum(len(f.samples) for f in parse(sys.stdin.read()))
print("# prometheus_client parsed %d OpenMetrics samples" % n)'
	done
else
	echo "# no prometheus_client (make deps-test installs python3-prometheus-client):" \
		"OpenMetrics is not checked by it"
fi
