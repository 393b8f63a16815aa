#!/bin/bash
# A real Prometheus (Debian's 2.42) scrapes sockredir's --metrics-listen every second, in the
# test's own network namespace, with its own configuration and storage under the test's
# directory. After a known number of connections through two default backends and a host
# route, its HTTP API must show: the accepted total, one sockredir_backend_up series per route
# and backend pair, all up, the target up with no scrape error, and sockredir_info (which
# Prometheus reads whether it negotiated OpenMetrics or the text format).
. "$(dirname "$0")/lib.sh"
need_cmd prometheus curl
setup "$@"

PY=/usr/bin/python3
MPORT=$((PORT + 1))
PROM_PORT=9090 # the namespace is the test's own: nothing else listens here
PROM_LOG=$T/prometheus.log
PROM_PID=""

# On any failure, Prometheus's log too (fail shows sockredir's and the backends').
prom_fail() {
	if [ -f "$PROM_LOG" ]; then
		echo "--- $PROM_LOG (last 40 lines)" >&2
		tail -n 40 "$PROM_LOG" >&2
	fi
	fail "$@"
}
WAIT_FOR_FAIL=prom_fail

# Two backends for the default route, one for the host route.
for b in one two app; do
	mode=echo
	[ $b = app ] && mode=http
	"$SRPEER" backend --listen "$T/$b.sock" --mode $mode --ready-file "$T/$b.ready" \
		2>"$T/backend-$b.log" &
	BG_PIDS+=($!)
	wait_for "backend $b" 5 test -e "$T/$b.ready"
done

PROXY_BACKEND= start_proxy --mode bpf --metrics-listen "127.0.0.1:$MPORT" \
	--route-host "app.test=$T/app.sock" "$T/one.sock" "$T/two.sock"
proxy_activate # one connection (connect-only)
wait_for "the metrics listener" 5 port_listening $MPORT

cat >"$T/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: sockredir
    static_configs:
      - targets: ['127.0.0.1:$MPORT']
EOF
port_listening $PROM_PORT && prom_fail "something already listens on port $PROM_PORT"
prometheus --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/prometheus-data" \
	--web.listen-address="127.0.0.1:$PROM_PORT" >"$PROM_LOG" 2>&1 &
PROM_PID=$!
BG_PIDS+=($PROM_PID) # cleanup kills it whatever happens
prom_ready() { curl -sf --max-time 2 "http://127.0.0.1:$PROM_PORT/-/ready"; }
wait_for "Prometheus to be ready" 30 prom_ready

# Traffic: 10 connections to the default route (balanced over one and two), 3 by Host to app.
client --test rr --size 4K --rounds 3 --conns 10 || prom_fail "rr through sockredir"
for i in 1 2 3; do
	curl -sS --max-time 10 --resolve "app.test:$PORT:127.0.0.1" "http://app.test:$PORT/$i" \
		-o "$T/curl.out" || prom_fail "curl through the host route"
	grep -q 'pid' "$T/curl.out" || prom_fail "curl through the host route: $(cat "$T/curl.out")"
done
N=14 # with the activation

# query PROMQL: the values of the instant vector it returns, one a line (none if it is empty).
query() {
	curl -sS --max-time 5 -G "http://127.0.0.1:$PROM_PORT/api/v1/query" \
		--data-urlencode "query=$1" | "$PY" -c '
import json, sys
doc = json.load(sys.stdin)
assert doc["status"] == "success", doc
for r in doc["data"]["result"]:
	print(r["value"][1])'
}
query_is() { [ "$(query "$1")" = "$2" ]; }

wait_for "Prometheus to see $N accepted" 40 query_is 'sockredir_connections_accepted_total{job="sockredir"}' $N
wait_for "3 route and backend pairs" 10 query_is 'count(sockredir_backend_up{job="sockredir"})' 3
wait_for "the target up" 10 query_is 'up{job="sockredir"}' 1
query_is 'min(sockredir_backend_up{job="sockredir"})' 1 || prom_fail "a backend is not up"
for r in 'route="default",backend="'"$T"'/one.sock"' 'route="default",backend="'"$T"'/two.sock"' \
	'route="host:app.test",backend="'"$T"'/app.sock"'; do
	query_is "count(sockredir_backend_up{$r})" 1 || prom_fail "no sockredir_backend_up{$r}"
done
query_is 'count(sockredir_info{mode="bpf",dispatch="kernel_download"})' 1 ||
	prom_fail "no sockredir_info with the mode and dispatch: $(query 'sockredir_info')"
query_is 'sockredir_workers' 1 || prom_fail "sockredir_workers: $(query sockredir_workers)"
# One series per fallback reason; every client here is TCP, so none is a Unix one.
query_is 'count(sockredir_fallbacks_total{job="sockredir"})' 7 ||
	prom_fail "want 7 fallback reasons: $(query 'sockredir_fallbacks_total')"
query_is 'sockredir_fallbacks_total{reason="client_unix"}' 0 ||
	prom_fail "sockredir_fallbacks_total{reason=\"client_unix\"}: $(query 'sockredir_fallbacks_total{reason="client_unix"}')"
# No fd store here (no NOTIFY_SOCKET): the families are there, at 0.
for m in sockredir_connections_kept sockredir_connections_restored_total \
	sockredir_connections_restore_closed_total sockredir_fdstore_fds; do
	query_is "$m" 0 || prom_fail "$m: '$(query "$m")', want 0"
done
# The movers' series are there (their values are the data path's): on the kernel path, carried
# for copy, splice and kernel; promotions to splice both ways and of downloads to the kernel;
# copy bytes.
for q in 'count(sockredir_connections_carried_total{job="sockredir"}) 3' \
	'count(sockredir_promotions_total{job="sockredir"}) 3' \
	'count(sockredir_bytes_total{job="sockredir",mover="copy"}) 2'; do
	query_is "${q% *}" "${q##* }" || prom_fail "${q% *}: '$(query "${q% *}")', want ${q##* }"
done
wait_for "no connection open" 10 query_is 'sockredir_connections_open' 0
# The target as Prometheus sees it: healthy, with no scrape error.
curl -sS --max-time 5 "http://127.0.0.1:$PROM_PORT/api/v1/targets" >"$T/targets.json" ||
	prom_fail "the targets API"
"$PY" - "$T/targets.json" <<'PY' || prom_fail "the target: $(cat "$T/targets.json")"
import json, sys
t = json.load(open(sys.argv[1]))["data"]["activeTargets"]
assert len(t) == 1 and t[0]["health"] == "up" and t[0]["lastError"] == "", t
print("# target", t[0]["scrapeUrl"], t[0]["health"], "last scrape", t[0]["lastScrape"])
PY
log "Prometheus sees $(query 'scrape_samples_scraped{job="sockredir"}') samples per scrape"
# It would warn (and drop samples) about anything it could not ingest.
bad=$(grep -iE 'level=(warn|error).*(ingest|pars|append|duplicate|order|invalid|exemplar)' \
	"$PROM_LOG" || true)
[ -z "$bad" ] || prom_fail "Prometheus complains about the scrapes: $bad"

kill -TERM $PROM_PID
wait_for "Prometheus to exit" 20 bash -c "! kill -0 $PROM_PID 2>/dev/null"
stop_proxy
echo "ok"
