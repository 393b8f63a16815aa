#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn one bench/run.sh results directory into results.md, summary.csv and PNG plots.

Every figure is the median over the rounds in which the measurement succeeded, with its min-max
spread. Ratios are taken per round against direct in the same round, and their median is shown:
the machine drifts too much for a ratio of two medians to mean anything.

Usage: bench/report.py RESULTS-DIR
       bench/report.py --meta RESULTS-DIR ELAPSED-SECONDS QUICK (run.sh's settings in the
       environment; writes meta.json)
"""
import csv
import glob
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
from collections import defaultdict

VARIANTS = ["direct", "direct-tcp", "sr-auto", "sr-auto-1w", "sr-auto-base", "sr-auto-1w-base",
            "sr-bpf", "sr-bpf-base", "sr-bpf-1w",
            "sr-bpf-upload", "sr-splice", "sr-splice-1w", "sr-splice-base", "sd-proxyd", "socat",
            "haproxy", "haproxy-1t", "nginx", "nginx-1p"]
TITLES = {
    "direct": "direct to the Unix backend",
    "direct-tcp": "direct to the backend on TCP (no proxy)",
    "sr-auto": "sockredir (default `--mode auto`)",
    "sr-auto-1w": "sockredir (default `--mode auto`) `--workers 1`",
    "sr-auto-base": "sockredir (default `--mode auto`), the base build",
    "sr-auto-1w-base": "sockredir (default `--mode auto`) `--workers 1`, the base build",
    "sr-bpf": "sockredir `--mode bpf`",
    "sr-bpf-1w": "sockredir `--mode bpf --workers 1`",
    "sr-bpf-upload": "sockredir `--mode bpf --kernel-upload`",
    "sr-splice": "sockredir `--mode splice`",
    "sr-splice-1w": "sockredir `--mode splice --workers 1`",
    "sr-bpf-base": "sockredir `--mode bpf`, the base build",
    "sr-splice-base": "sockredir `--mode splice`, the base build",
    "sd-proxyd": "systemd-socket-proxyd",
    "socat": "socat",
    "haproxy": "haproxy `mode tcp`",
    "haproxy-1t": "haproxy `mode tcp`, `nbthread 1`",
    "nginx": "nginx `stream`",
    "nginx-1p": "nginx `stream`, `worker_processes 1`",
}
# Variants without a proxy process: no proxy wakeups, fds or memory to show.
DIRECT = ("direct", "direct-tcp")
# Plain titles for the plots' legends.
PLAIN = {k: v.replace("`", "") for k, v in TITLES.items()}
# The http phase: its baseline is the HTTP server's own TCP listener (the direct-tcp variant).
HTTP_BASE = "direct-tcp"
HTTP_TITLES = dict(TITLES, **{HTTP_BASE: "no proxy (TCP)"})
HTTP_SHAPES = {
    "chatty": "chatty: keep-alive, 3 B responses",
    "bulk": "bulk: keep-alive, 1 MiB responses",
    "close": "a new connection per request: 3 B responses, `Connection: close`",
}
# The targets sockredir is held to in the http phase, per shape: the connection count it is
# judged at, the least throughput and the most CPU per request, as ratios to the best peer with
# as many processes (the most throughput; the least CPU).
HTTP_TARGETS = [("chatty", 50, 1.1, 0.9), ("bulk", 10, 1.2, 0.8), ("close", 20, 1.0, 1.0)]
# Every proxy at one process (or thread), and every proxy at one per CPU: sockredir's variants
# and the peers they are set against.
HTTP_SETS = [
    ("one", ["sr-auto-1w", "sr-bpf-1w", "sr-splice-1w"], ["haproxy-1t", "nginx-1p"]),
    ("per CPU", ["sr-auto", "sr-bpf", "sr-splice"], ["haproxy", "nginx"]),
]


def size_name(n):
    n = int(n)
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div and n % div == 0:
            return "%d %s" % (n // div, unit)
    return "%d B" % n


def fmt(v, digits=3):
    """A number with about three significant digits, without exponents."""
    if v is None:
        return "–"
    a = abs(v)
    if a >= 1000:
        return "{:,.0f}".format(v)
    if a >= 100:
        return "%.0f" % v
    if a >= 10:
        return "%.1f" % v
    if a >= 1:
        return "%.2f" % v
    if a == 0:
        return "0"
    return "%.3g" % v


class Results:
    def __init__(self, path):
        self.path = path
        self.meta = json.load(open(os.path.join(path, "meta.json")))
        self.rows = [json.loads(l) for l in open(os.path.join(path, "raw.jsonl")) if l.strip()]
        present = {r["variant"] for r in self.rows}
        self.variants = [v for v in VARIANTS if v in present]
        # The main and scale phases' variants: the http phase's one-process ones run nowhere else.
        ran = {r["variant"] for r in self.rows if not r.get("test", "").startswith("http-")}
        self.main_variants = [v for v in self.variants if v in ran]
        self.rounds = sorted({r["round"] for r in self.rows})
        # (test, size, conns) -> variant -> round -> row
        self.by = defaultdict(lambda: defaultdict(dict))
        for r in self.rows:
            self.by[self.key_of(r)][r["variant"]][r["round"]] = r

    @staticmethod
    def key_of(row):
        """(test, size, conns); an http row's test also names its server: "http-bulk/caddy"."""
        test = row["test"]
        if row.get("server"):
            test += "/" + row["server"]
        return test, int(row["size"]), int(row["conns"])

    def has(self, prefix):
        """Were there measurements whose test starts with prefix?"""
        return any(k[0].startswith(prefix) for k in self.by)

    def cell(self, key, variant):
        return self.by.get(key, {}).get(variant, {})

    def values(self, key, variant, metric):
        """Per-round values of metric from the rounds that succeeded."""
        return {rd: row[metric] for rd, row in self.cell(key, variant).items()
                if row.get("status") == "ok" and row.get(metric) is not None}

    def stat(self, key, variant, metric):
        vals = list(self.values(key, variant, metric).values())
        if not vals:
            return None
        return statistics.median(vals), min(vals), max(vals)

    def ratio(self, key, variant, metric, against="direct"):
        """Median, min and max of the per-round ratio to direct (or another variant)."""
        mine = self.values(key, variant, metric)
        base = self.values(key, against, metric)
        rs = [mine[rd] / base[rd] for rd in mine if rd in base and base[rd]]
        if not rs:
            return None
        return statistics.median(rs), min(rs), max(rs)

    def failures(self, key, variant):
        """round -> the reason, with what the proxy itself logged."""
        out = {}
        for rd, row in self.cell(key, variant).items():
            if row.get("status") == "ok":
                continue
            why = row.get("reason", "?")
            if row.get("proxy_log"):
                why += ". The proxy's log: \"%s\"" % row["proxy_log"]
            out[rd] = why
        return out


def spread(st, unit=""):
    if st is None:
        return "–"
    med, lo, hi = st
    if len(set((lo, hi))) == 1:
        return "%s%s" % (fmt(med), unit)
    return "%s%s (%s–%s)" % (fmt(med), unit, fmt(lo), fmt(hi))


def latency_cell(st):
    """A latency spread in µs, or in ms from 10 ms up."""
    if st is None:
        return "–"
    if st[0] >= 10000:
        return spread(tuple(x / 1000 for x in st), " ms")
    return spread(st, " µs")


def ratio_cell(rt):
    if rt is None:
        return "–"
    med, lo, hi = rt
    if lo == hi:
        return "%.2f×" % med
    return "%.2f× (%.2f–%.2f)" % (med, lo, hi)


def status_cell(res, key, v, n_rounds, text):
    """text, or FAILED with how many rounds failed; the reasons are listed under the table."""
    fails = res.failures(key, v)
    if not res.cell(key, v):
        return "not run"
    if fails and len(fails) == len(res.cell(key, v)):
        return "**FAILED**"
    if fails:
        return "%s, **failed in %d of %d rounds**" % (text, len(fails), len(res.cell(key, v)))
    return text


class Report:
    def __init__(self, res):
        self.res = res
        self.out = []
        self.notes = []  # failure reasons, listed after each table

    def line(self, s=""):
        self.out.append(s)

    def table(self, head, rows):
        self.line("| " + " | ".join(head) + " |")
        self.line("|" + "|".join("---" for _ in head) + "|")
        for r in rows:
            self.line("| " + " | ".join(r) + " |")
        self.line()

    def failure_notes(self, keys):
        res = self.res
        seen = []
        for key in keys:
            for v in res.variants:
                for rd, why in sorted(res.failures(key, v).items()):
                    seen.append((v, key, rd, why))
        if not seen:
            return
        # One line per variant, test and reason; the rounds it happened in.
        # The same failure in several rounds once: counts differ a little from round to round.
        grouped = {}
        for v, key, rd, why in seen:
            g = grouped.setdefault((v, key, re.sub(r"[0-9][0-9,.]*", "#", why)), [why, []])
            g[1].append(rd)
        self.line("Failed:")
        for (v, key, _), (why, rds) in grouped.items():
            test, size, conns = key
            what = "%s %s" % (test, size_name(size)) if test in ("rr", "connrate") else test
            if conns > 1:
                what += " over %s connections" % "{:,}".format(conns)
            title = HTTP_TITLES[v] if test.startswith("http-") else PLAIN[v]
            self.line("- %s, %s, round%s %s: %s" % (title, what, "s" if len(rds) > 1 else "",
                                                   ", ".join(map(str, rds)), why))
        self.line()

    def header(self):
        m = self.res.meta
        s = m["settings"]
        self.line("# sockredir benchmark, %s" % m["date"])
        self.line()
        self.line("- Command: `%s` (bench/run.sh), %d s in all."
                  % (m["command"], m["elapsed_seconds"]))
        self.line("- Machine: %d vCPUs (%s), %s GiB, Linux %s. Other work may have shared it."
                  % (m["cpus"], m["cpu_model"], m["mem_gib"], m["kernel"]))
        self.line("- sockredir %s (git %s); %s; %s; %s; %s."
                  % (m["versions"]["sockredir"].split()[-1] if m["versions"]["sockredir"] else "?",
                     m["git"], m["versions"]["haproxy"].split(" - ")[0], m["versions"]["nginx"],
                     m["versions"]["socat"], m["versions"]["systemd"]))
        if self.res.has("http-"):
            self.line("- HTTP servers: %s; caddy %s; %s." % (
                m["versions"]["nginx"], m["versions"].get("caddy", "?").split()[0],
                " ".join(m["versions"].get("wrk", "wrk ?").split()[:2])))
        self.line("- %d interleaved round(s), the order rotated each round. Each figure is the"
                  " median over rounds, with min–max in brackets; a ratio is to direct in the same"
                  " round, then the median of those." % s["rounds"])
        self.line("- RR: one connection, one message in flight, %s s per size. Bulk: %s in one"
                  " connection. Connection rate: %d processes, each connect, one 64 B round trip,"
                  " close, for %s s. Scale: 64 B round trips over N connections (2 client"
                  " processes), %s s, proxy started fresh for each level; socat at 5,000"
                  " connections and more in the first round only (a process per connection:"
                  " 53 s a round at 10,000)."
                  % (s["rr_seconds"], size_name(s["bulk_bytes"]), s["connrate_procs"],
                     s["connrate_seconds"], s["scale_seconds"]))
        self.line("- CPU is the whole machine's (/proc/stat, so kernel workers count); context"
                  " switches per round trip are the machine's (/proc/stat ctxt); proxy wakeups"
                  " are the proxy's own voluntary + involuntary switches, all its processes and"
                  " threads.")
        self.line()

    def summary_rows(self):
        """The headline: ratios to direct (lower is better for latency and CPU)."""
        res = self.res
        k64 = ("rr", 64, 1)
        bulk = res.meta["settings"]["bulk_bytes"]
        levels = [int(x) for x in res.meta["settings"]["scale_levels"]]
        head = ["variant", "RR 64 B p50", "RR 64 B p99", "upload", "download",
                "CPU/GiB up", "CPU/GiB down", "conn/s"]
        head += ["p50 at %s conns" % "{:,}".format(l) for l in levels]
        rows = []
        for v in res.main_variants:
            r = [TITLES[v],
                 status_cell(res, k64, v, 0, ratio_cell(res.ratio(k64, v, "p50_us"))),
                 status_cell(res, k64, v, 0, ratio_cell(res.ratio(k64, v, "p99_us"))),
                 status_cell(res, ("up", bulk, 1), v, 0,
                             ratio_cell(res.ratio(("up", bulk, 1), v, "mb_s"))),
                 status_cell(res, ("down", bulk, 1), v, 0,
                             ratio_cell(res.ratio(("down", bulk, 1), v, "mb_s"))),
                 status_cell(res, ("up", bulk, 1), v, 0,
                             ratio_cell(res.ratio(("up", bulk, 1), v, "cpu_s_per_gib"))),
                 status_cell(res, ("down", bulk, 1), v, 0,
                             ratio_cell(res.ratio(("down", bulk, 1), v, "cpu_s_per_gib"))),
                 status_cell(res, ("connrate", 64, 1), v, 0,
                             ratio_cell(res.ratio(("connrate", 64, 1), v, "rate")))]
            for l in levels:
                r.append(status_cell(res, ("rr", 64, l), v, 0,
                                     ratio_cell(res.ratio(("rr", 64, l), v, "p50_us"))))
            rows.append(r)
        return head, rows

    def summary(self):
        self.line("## Summary: ratios to direct")
        self.line()
        self.line("Latency and CPU: lower is better. Throughput and conn/s: higher is better.")
        self.line()
        head, rows = self.summary_rows()
        self.table(head, rows)

    def absolute(self):
        res = self.res
        k64 = ("rr", 64, 1)
        bulk = res.meta["settings"]["bulk_bytes"]
        self.line("## Absolute figures")
        self.line()
        head = ["variant", "RR 64 B p50", "RR 64 B p99", "upload MB/s", "download MB/s",
                "CPU-s/GiB up", "CPU-s/GiB down", "conn/s"]
        rows = []
        for v in res.main_variants:
            rows.append([TITLES[v], spread(res.stat(k64, v, "p50_us"), " µs"),
                         spread(res.stat(k64, v, "p99_us"), " µs"),
                         spread(res.stat(("up", bulk, 1), v, "mb_s")),
                         spread(res.stat(("down", bulk, 1), v, "mb_s")),
                         spread(res.stat(("up", bulk, 1), v, "cpu_s_per_gib")),
                         spread(res.stat(("down", bulk, 1), v, "cpu_s_per_gib")),
                         spread(res.stat(("connrate", 64, 1), v, "rate"))])
        self.table(head, rows)

    def latency(self):
        res = self.res
        self.line("## Request/response latency, one connection")
        self.line()
        sizes = sorted({k[1] for k in res.by if k[0] == "rr" and k[2] == 1})
        for s in sizes:
            key = ("rr", s, 1)
            self.line("### %s messages" % size_name(s))
            self.line()
            head = ["variant", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "RR/s",
                    "p50 × direct", "p99 × direct"]
            rows = []
            for v in res.main_variants:
                if res.failures(key, v) and len(res.failures(key, v)) == len(res.cell(key, v)):
                    rows.append([TITLES[v], "**FAILED**"] + [""] * 7)
                    continue
                rows.append([TITLES[v]] + [spread(res.stat(key, v, m)) for m in
                                           ("p50_us", "p90_us", "p99_us", "p999_us", "max_us",
                                            "rate")] +
                            [ratio_cell(res.ratio(key, v, "p50_us")),
                             ratio_cell(res.ratio(key, v, "p99_us"))])
            self.table(head, rows)
            self.failure_notes([key])

    def efficiency(self):
        res = self.res
        key = ("rr", 64, 1)
        self.line("## Cost of a 64 B round trip")
        self.line()
        head = ["variant", "CPU-s per 10k RR (machine)", "× direct", "context switches per RR"
                " (machine)", "proxy wakeups per RR", "proxy RSS KiB"]
        rows = []
        for v in res.main_variants:
            px = v not in DIRECT
            rows.append([TITLES[v], spread(res.stat(key, v, "cpu_s_per_10k")),
                         ratio_cell(res.ratio(key, v, "cpu_s_per_10k")),
                         spread(res.stat(key, v, "ctxt_per_rr")),
                         spread(res.stat(key, v, "proxy_wakeups_per_rr")) if px else "–",
                         spread(res.stat(key, v, "proxy_after_rss_kb")) if px else "–"])
        self.table(head, rows)

    def bulk(self):
        res = self.res
        bulk = res.meta["settings"]["bulk_bytes"]
        self.line("## Bulk transfer, %s in one connection" % size_name(bulk))
        self.line()
        head = ["variant", "upload MB/s", "× direct", "CPU-s/GiB", "× direct", "download MB/s",
                "× direct", "CPU-s/GiB", "× direct", "proxy wakeups up / down"]
        rows = []
        ku, kd = ("up", bulk, 1), ("down", bulk, 1)
        for v in res.main_variants:
            wk = "–"
            if v not in DIRECT:
                a, b = res.stat(ku, v, "proxy_wakeups"), res.stat(kd, v, "proxy_wakeups")
                wk = "%s / %s" % (fmt(a[0]) if a else "–", fmt(b[0]) if b else "–")
            rows.append([TITLES[v],
                         status_cell(res, ku, v, 0, spread(res.stat(ku, v, "mb_s"))),
                         ratio_cell(res.ratio(ku, v, "mb_s")),
                         spread(res.stat(ku, v, "cpu_s_per_gib")),
                         ratio_cell(res.ratio(ku, v, "cpu_s_per_gib")),
                         status_cell(res, kd, v, 0, spread(res.stat(kd, v, "mb_s"))),
                         ratio_cell(res.ratio(kd, v, "mb_s")),
                         spread(res.stat(kd, v, "cpu_s_per_gib")),
                         ratio_cell(res.ratio(kd, v, "cpu_s_per_gib")), wk])
        self.table(head, rows)
        self.failure_notes([ku, kd])

    def connrate(self):
        res = self.res
        key = ("connrate", 64, 1)
        self.line("## Connection rate (connect, one 64 B round trip, close)")
        self.line()
        head = ["variant", "conn/s", "× direct", "p50 µs per connection", "p99 µs",
                "CPU-s per 10k connections"]
        rows = []
        for v in res.main_variants:
            rows.append([TITLES[v], status_cell(res, key, v, 0, spread(res.stat(key, v, "rate"))),
                         ratio_cell(res.ratio(key, v, "rate")),
                         spread(res.stat(key, v, "p50_us")), spread(res.stat(key, v, "p99_us")),
                         spread(res.stat(key, v, "cpu_s_per_10k"))])
        self.table(head, rows)
        self.failure_notes([key])

    def scale(self):
        res = self.res
        levels = [1] + [int(x) for x in res.meta["settings"]["scale_levels"]]
        self.line("## Scale: 64 B round trips over many connections")
        self.line()
        self.line("Level 1 is the one-connection RR run above. fds, RSS and Pss per connection are"
                  " (held − idle) / connections for all of the proxy's processes, read while the"
                  " connections are open; Pss shares pages between socat's processes fairly."
                  " raw.jsonl also has the change in the machine's MemAvailable per connection"
                  " (machine_kb_per_conn), but other work on this machine makes it noise.")
        self.line()
        keys = []
        for l in levels:
            key = ("rr", 64, l)
            keys.append(key)
            self.line("### %s connection%s" % ("{:,}".format(l), "" if l == 1 else "s"))
            self.line()
            if l == 1:
                head = ["variant", "p50 µs", "p99 µs", "RR/s", "proxy fds", "proxy RSS KiB"]
            else:
                head = ["variant", "p50 µs", "p99 µs", "RR/s", "p50 × direct", "fds/conn",
                        "RSS KiB/conn", "Pss KiB/conn"]
            rows = []
            for v in res.main_variants:
                fails = res.failures(key, v)
                if res.cell(key, v) and len(fails) == len(res.cell(key, v)):
                    held = [r.get("established") for r in res.cell(key, v).values()
                            if r.get("established") is not None]
                    text = "**FAILED**"
                    if held and l > 1:
                        text += " (held %s)" % "{:,}".format(int(statistics.median(held)))
                    rows.append([TITLES[v], text] + [""] * (len(head) - 2))
                    continue
                px = v not in DIRECT
                if l == 1:
                    rows.append([TITLES[v], spread(res.stat(key, v, "p50_us")),
                                 spread(res.stat(key, v, "p99_us")),
                                 spread(res.stat(key, v, "rate")),
                                 spread(res.stat(key, v, "proxy_after_fds")) if px else "–",
                                 spread(res.stat(key, v, "proxy_after_rss_kb")) if px else "–"])
                    continue
                rows.append([TITLES[v],
                             status_cell(res, key, v, 0, spread(res.stat(key, v, "p50_us"))),
                             spread(res.stat(key, v, "p99_us")), spread(res.stat(key, v, "rate")),
                             ratio_cell(res.ratio(key, v, "p50_us")),
                             spread(res.stat(key, v, "fds_per_conn")) if px else "–",
                             spread(res.stat(key, v, "rss_kb_per_conn")) if px else "–",
                             spread(res.stat(key, v, "pss_kb_per_conn")) if px else "–"])
            self.table(head, rows)
            self.failure_notes([key])

    def http_keys(self):
        """The http phase's keys in the order of the servers, the shapes and the counts."""
        res = self.res
        servers = res.meta["settings"].get("http_servers", "").split()
        keys = [k for k in res.by if k[0].startswith("http-")]

        def order(k):
            shape, server = k[0][len("http-"):].split("/", 1)
            return (servers.index(server) if server in servers else len(servers), server,
                    list(HTTP_SHAPES).index(shape) if shape in HTTP_SHAPES else 9, k[2])
        return sorted(keys, key=order)

    @staticmethod
    def http_what(key, short=False):
        shape, server = key[0][len("http-"):].split("/", 1)
        if short:
            return "%s %s ×%s" % (server, shape, "{:,}".format(key[2]))
        return "%s, %s, %s connection%s" % (server, HTTP_SHAPES.get(shape, shape),
                                           "{:,}".format(key[2]), "" if key[2] == 1 else "s")

    def http_summary(self):
        res = self.res
        self.line("## HTTP (wrk): throughput against no proxy")
        self.line()
        self.line("Requests/s (bulk: bytes/s) through each proxy, as a ratio to the same HTTP"
                  " server on TCP with no proxy in the same round: higher is better.")
        self.line()
        all_keys = self.http_keys()
        # A table per server: with every shape at four counts, one table would be too wide to read.
        for server in dict.fromkeys(k[0].split("/", 1)[1] for k in all_keys):
            keys = [k for k in all_keys if k[0].endswith("/" + server)]
            rows = []
            for v in res.variants:
                if not any(res.cell(k, v) for k in keys):
                    continue
                r = [HTTP_TITLES[v]]
                for k in keys:
                    if v == HTTP_BASE:
                        m = "gib_s" if k[0].startswith("http-bulk") else "rps"
                        unit = " GiB/s" if m == "gib_s" else " req/s"
                        r.append(status_cell(res, k, v, 0, spread(res.stat(k, v, m), unit)))
                    else:
                        r.append(status_cell(res, k, v, 0,
                                             ratio_cell(res.ratio(k, v, "rps", HTTP_BASE))))
                rows.append(r)
            self.table(["variant"] + [self.http_what(k, True) for k in keys], rows)

    def http_targets(self):
        """Each sockredir variant against the best peer with as many processes, per shape."""
        res = self.res
        servers = res.meta["settings"].get("http_servers", "").split()
        cpus = res.meta.get("cpus", "?")
        self.line("## HTTP: sockredir against the best peer, and the targets")
        self.line()
        self.line("Per shape, at the connection count it is judged at, each sockredir variant"
                  " against the peers (haproxy, nginx) with as many processes: one (`--workers"
                  " 1`, `nbthread 1`, `worker_processes 1`), or one per CPU (%s here)."
                  " Throughput is set against the peer with the most (median over rounds), CPU"
                  " per request (the whole machine's) against the peer with the least; each"
                  " ratio is taken per round, then the median. The target is met when both"
                  " medians, to two decimals, are." % cpus)
        self.line()
        head = ["server", "shape", "processes", "sockredir", "throughput", "best peer",
                "× best peer", "CPU µs/req", "leanest peer", "× leanest peer", "target", "met"]
        rows = []
        for srv in servers:
            for shape, conns, want_tp, want_cpu in HTTP_TARGETS:
                test = "http-%s/%s" % (shape, srv)
                keys = [k for k in res.by if k[0] == test and k[2] == conns]
                if not keys:
                    continue
                key = keys[0]
                m, unit = ("gib_s", " GiB/s") if shape == "bulk" else ("rps", " req/s")
                for procs, mine, peers in HTTP_SETS:
                    tps = {p: res.stat(key, p, m) for p in peers}
                    tps = {p: st[0] for p, st in tps.items() if st}
                    cpus_ = {p: res.stat(key, p, "cpu_us_per_req") for p in peers}
                    cpus_ = {p: st[0] for p, st in cpus_.items() if st}
                    best = max(tps, key=tps.get) if tps else None
                    lean = min(cpus_, key=cpus_.get) if cpus_ else None
                    target = "≥%.1f×, CPU ≤%.1f×" % (want_tp, want_cpu)
                    for v in mine:
                        if not res.cell(key, v):
                            continue
                        r = [srv, "%s ×%d" % (shape, conns), procs, "`%s`" % v]
                        if len(res.failures(key, v)) == len(res.cell(key, v)):
                            rows.append(r + ["**FAILED**", "", "", "", "", "", target, "**no**"])
                            continue
                        rt = res.ratio(key, v, m, best) if best else None
                        rc = res.ratio(key, v, "cpu_us_per_req", lean) if lean else None
                        if rt is None or rc is None:
                            met = "–"
                        else:
                            # Judged on the ratios as shown, so that the table never
                            # reads "0.90×, not met" against a target of 0.9.
                            tp_, cpu_ = round(rt[0], 2), round(rc[0], 2)
                            short = [what for what, bad in (("throughput", tp_ < want_tp),
                                                            ("CPU", cpu_ > want_cpu)) if bad]
                            met = "yes" if not short else "**no** (%s)" % ", ".join(short)
                        r += [status_cell(res, key, v, 0, spread(res.stat(key, v, m), unit)),
                              "`%s` %s%s" % (best, fmt(tps[best]), unit) if best else "–",
                              ratio_cell(rt),
                              spread(res.stat(key, v, "cpu_us_per_req")),
                              "`%s` %s" % (lean, fmt(cpus_[lean])) if lean else "–",
                              ratio_cell(rc), target, met]
                        rows.append(r)
        if rows:
            self.table(head, rows)
        else:
            self.line("Not measured: none of these variants ran at these connection counts.")
            self.line()

    def http(self):
        res = self.res
        s = res.meta["settings"]
        self.line("## HTTP through each proxy (wrk)")
        self.line()
        self.line("wrk (%s s per run at the connection count a shape is judged at, in every"
                  " round; %s s at the others, in the first %s round(s), a single run where that"
                  " is one; `--latency`) against nginx and caddy serving files on a"
                  " Unix socket, through each proxy; the baseline is the same server on TCP,"
                  " no proxy. CPU and context switches are the whole machine's (`perf stat -a`"
                  " around wrk, so wrk, the proxy and the server all count), per request. Before"
                  " each proxy was measured, curl fetched both files through it and they were"
                  " compared byte for byte; every run here had no socket error and no 4xx or 5xx"
                  " response, or it is marked failed." % (s.get("http_seconds", "?"),
                                                     s.get("http_scan_seconds", "?"),
                                                     s.get("http_scan_rounds",
                                                           s.get("rounds", "?"))))
        self.line()
        for key in self.http_keys():
            bulk = key[0].startswith("http-bulk")
            self.line("### %s" % self.http_what(key))
            self.line()
            head = ["variant", "GiB/s" if bulk else "req/s", "× no proxy", "p50", "p99",
                    "CPU µs/req", "× no proxy", "context switches/req"]
            rows = []
            for v in res.variants:
                if not res.cell(key, v):
                    continue
                fails = res.failures(key, v)
                if len(fails) == len(res.cell(key, v)):
                    rows.append([HTTP_TITLES[v], "**FAILED**"] + [""] * (len(head) - 2))
                    continue
                base = v != HTTP_BASE
                rows.append([
                    HTTP_TITLES[v],
                    status_cell(res, key, v, 0,
                                spread(res.stat(key, v, "gib_s" if bulk else "rps"))),
                    ratio_cell(res.ratio(key, v, "rps", HTTP_BASE)) if base else "–",
                    latency_cell(res.stat(key, v, "p50_us")),
                    latency_cell(res.stat(key, v, "p99_us")),
                    spread(res.stat(key, v, "cpu_us_per_req")),
                    ratio_cell(res.ratio(key, v, "cpu_us_per_req", HTTP_BASE)) if base else "–",
                    spread(res.stat(key, v, "ctxt_per_req"))])
            self.table(head, rows)
            self.failure_notes([key])

    def correctness(self):
        res = self.res
        self.line("## Were the bytes right?")
        self.line()
        self.line("Every echo is compared with its request, and every bulk byte with the pattern"
                  " it must be (the backend checks uploads and reports the first wrong offset).")
        self.line()
        head = ["variant", "measurements", "ok", "failed", "bytes checked", "wrong bytes seen"]
        rows = []
        for v in res.variants:
            mine = [r for r in res.rows if r["variant"] == v]
            ok = [r for r in mine if r.get("status") == "ok"]
            wrong = [r for r in mine if "wrong byte" in r.get("reason", "")
                     or "differs" in r.get("reason", "")]
            checked = sum(int(r.get("verified_bytes", 0)) for r in mine)
            rows.append([TITLES[v], str(len(mine)), str(len(ok)), str(len(mine) - len(ok)),
                         "{:,}".format(checked), str(len(wrong))])
        self.table(head, rows)

    def sockredir_log(self):
        path = os.path.join(self.res.path, "sockredir-log.txt")
        lines = open(path).read().splitlines() if os.path.exists(path) else []
        self.line("## sockredir's own log")
        self.line()
        warn = [l for l in lines if re.search(r": <[0-4]>", l) or "killed" in l
                or "exit status" in l or "pins left" in l]
        counters = [l for l in lines if re.search(r": <[5-7]>Connections:", l)]
        splice = 0
        for l in counters:
            m = re.search(r"(\d+) accepted, (\d+) on the kernel path .*?, (\d+) on splice"
                          r" \(mode (\d+)", l)
            if m and re.search(r", sr-bpf[^,:]*: ", l):
                splice += int(m.group(3)) - int(m.group(4))
        self.line("Warnings, errors and abnormal exits: %d line(s)." % len(warn))
        self.line("Connections that fell back to splice in a kernel-path variant (exit counters):"
                  " %d." % splice)
        self.line()
        if warn:
            # The same message in many rounds once, with a count.
            uniq = defaultdict(int)
            for l in warn:
                uniq[re.sub(r"^round \d+, ", "", l)] += 1
            self.line("```")
            for l, n in sorted(uniq.items()):
                self.line("%s%s" % (l, "  (x%d)" % n if n > 1 else ""))
            self.line("```")
            self.line()

    def plots(self, made):
        self.line("## Plots")
        self.line()
        for name, title in made:
            self.line("![%s](%s)" % (title, name))
            self.line()

    def write(self, made):
        res = self.res
        self.header()
        if res.has("rr") or res.has("up") or res.has("connrate"):
            self.summary()
            self.absolute()
            self.latency()
            self.efficiency()
            self.bulk()
            self.connrate()
            self.scale()
        if res.has("http-"):
            self.http_summary()
            self.http_targets()
            self.http()
        self.correctness()
        self.sockredir_log()
        self.plots(made)
        with open(os.path.join(self.res.path, "results.md"), "w") as f:
            f.write("\n".join(self.out).rstrip() + "\n")


def value_ratio(res, key, v, metric, unit=""):
    """'71 µs (1.62×, 1.5–1.7)': the median value, then the median ratio and its range."""
    fails = res.failures(key, v)
    if res.cell(key, v) and len(fails) == len(res.cell(key, v)):
        return "FAILED"
    st = res.stat(key, v, metric)
    if st is None:
        return "–"
    if unit == " µs" and st[0] >= 10000:
        text = fmt(st[0] / 1000) + " ms"
    else:
        text = fmt(st[0]) + unit
    rt = res.ratio(key, v, metric)
    if rt and v not in DIRECT:
        text += " (%.2f×" % rt[0]
        text += ", %.2f–%.2f)" % (rt[1], rt[2]) if rt[1] != rt[2] else ")"
    if fails:
        text += ", failed in %d of %d rounds" % (len(fails), len(res.cell(key, v)))
    return text


def write_readme_tables(res):
    """The README's two tables, from this run, to paste into its Performance section."""
    bulk = res.meta["settings"]["bulk_bytes"]
    levels = [int(x) for x in res.meta["settings"]["scale_levels"]]
    out = []

    def table(head, rows):
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join("---" for _ in head) + "|")
        out.extend("| " + " | ".join(r) + " |" for r in rows)
        out.append("")

    k64, ku, kd, kc = ("rr", 64, 1), ("up", bulk, 1), ("down", bulk, 1), ("connrate", 64, 1)
    rows = []
    for v in res.main_variants:
        rows.append([TITLES[v], value_ratio(res, k64, v, "p50_us", " µs"),
                     value_ratio(res, k64, v, "p99_us", " µs"),
                     value_ratio(res, ku, v, "mb_s"), value_ratio(res, kd, v, "mb_s"),
                     value_ratio(res, ku, v, "cpu_s_per_gib"),
                     value_ratio(res, kd, v, "cpu_s_per_gib"),
                     value_ratio(res, kc, v, "rate")])
    table(["variant", "RR 64 B p50", "RR 64 B p99", "upload MB/s", "download MB/s",
           "CPU-s/GiB up", "CPU-s/GiB down", "connections/s"], rows)

    rows = []
    top = levels[-1] if levels else None
    for v in res.main_variants:
        r = [TITLES[v]]
        for l in levels:
            key = ("rr", 64, l)
            fails = res.failures(key, v)
            if res.cell(key, v) and len(fails) == len(res.cell(key, v)):
                held = [x.get("established") for x in res.cell(key, v).values()
                        if x.get("established") is not None]
                r.append("FAILED, held %s" % "{:,}".format(int(statistics.median(held)))
                         if held else "FAILED")
            else:
                r.append(value_ratio(res, key, v, "p50_us", " µs"))
        # Per-connection cost at the highest level that every round held.
        for m in ("fds_per_conn", "rss_kb_per_conn", "pss_kb_per_conn"):
            got = "–"
            for l in reversed(levels):
                st = res.stat(("rr", 64, l), v, m)
                if st and v not in DIRECT:
                    got = "%s (at %s)" % (fmt(st[0]), "{:,}".format(l))
                    break
            r.append(got)
        rows.append(r)
    table(["variant"] + ["p50 at %s" % "{:,}".format(l) for l in levels] +
          ["fds/conn", "RSS KiB/conn", "Pss KiB/conn"], rows)
    with open(os.path.join(res.path, "readme-tables.md"), "w") as f:
        f.write("\n".join(out))


def write_summary_csv(res):
    """Every (test, variant, metric): median, min, max, and the ratio to direct."""
    metrics = ["p50_us", "p90_us", "p99_us", "p999_us", "max_us", "rate", "mb_s", "cpu_s_per_gib",
               "cpu_s_per_10k", "ctxt_per_rr", "proxy_wakeups_per_rr", "fds_per_conn",
               "rss_kb_per_conn", "pss_kb_per_conn", "machine_kb_per_conn", "rps", "gib_s",
               "cpu_us_per_req", "ctxt_per_req"]
    with open(os.path.join(res.path, "summary.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["test", "size", "conns", "variant", "metric", "median", "min", "max",
                    "ratio_median", "ratio_min", "ratio_max", "rounds_ok", "rounds_failed"])
        for key in sorted(res.by):
            for v in res.variants:
                fails = len(res.failures(key, v))
                ok = len(res.cell(key, v)) - fails
                for m in metrics:
                    st = res.stat(key, v, m)
                    if st is None:
                        continue
                    rt = res.ratio(key, v, m) or (None, None, None)
                    w.writerow(list(key) + [v, m] + ["%.6g" % x for x in st] +
                               ["" if x is None else "%.4f" % x for x in rt] + [ok, fails])


def merged_hist(res, variant, test, size, conns):
    """Histogram buckets summed over rounds: [(ns, count)], sorted."""
    acc = defaultdict(int)
    pat = os.path.join(res.path, "raw", "hist",
                       "r*-%s-%s-%s-c%s.csv*" % (variant, test, size, conns))
    for p in glob.glob(pat):
        rd = int(re.search(r"/r(\d+)-", p).group(1))
        row = res.cell((test, size, conns), variant).get(rd)
        if not row or row.get("status") != "ok":
            continue
        with (gzip.open(p, "rt") if p.endswith(".gz") else open(p)) as f:
            next(f, None)
            for line in f:
                ns, n = line.strip().split(",")
                acc[float(ns)] += int(n)
    return sorted(acc.items())


# One color per variant in the http plot, the same in every panel and every run: each sockredir
# mode a hue (lighter for one worker, darker for the base build), the peers warm colors.
HTTP_COLORS = {
    "sr-auto": "#1f5fa8", "sr-auto-1w": "#7fa9d9",
    "sr-bpf": "#2a8a3e", "sr-bpf-1w": "#8fcf8f", "sr-bpf-base": "#1b4d26",
    "sr-bpf-upload": "#3fa6a0",
    "sr-splice": "#7b4aa8", "sr-splice-1w": "#bfa2dc", "sr-splice-base": "#46286a",
    "haproxy": "#e07b39", "haproxy-1t": "#f2b98f",
    "nginx": "#c8323c", "nginx-1p": "#ec8f95",
    "sd-proxyd": "#8c6d31", "socat": "#7f7f7f", "direct": "#404040",
}


def http_plot_data(res, server):
    """[(shape label, [(variant, (median, min, max))])]: per judged shape, each proxy's throughput
    as a ratio to the server with no proxy, per round and then the median (Results.ratio)."""
    groups = []
    for shape, conns, _, _ in HTTP_TARGETS:
        test = "http-%s/%s" % (shape, server)
        keys = [k for k in res.by if k[0] == test and k[2] == conns]
        if not keys:
            continue
        m = "gib_s" if shape == "bulk" else "rps"
        bars = []
        for v in res.variants:
            if v == HTTP_BASE:
                continue
            rt = res.ratio(keys[0], v, m, HTTP_BASE)
            if rt:
                bars.append((v, rt))
        if bars:
            groups.append(("%s ×%d" % (shape, conns), bars))
    return groups


def http_plot(res, d):
    """gnuplot lines for http.png, a panel per server (nginx, then caddy), or [] without data."""
    servers = sorted({k[0].split("/", 1)[1] for k in res.by if k[0].startswith("http-")},
                     key=lambda s: (["nginx", "caddy"].index(s) if s in ("nginx", "caddy")
                                    else 2, s))
    panels = [(srv, http_plot_data(res, srv)) for srv in servers]
    panels = [(srv, g) for srv, g in panels if g]
    if not panels:
        if servers:
            sys.stderr.write("report: no %s baseline in the http phase, so no http.png\n"
                             % HTTP_BASE)
        return []
    # Every panel on the same scale, with room for the value over each bar.
    top = max(rt[2] for _, g in panels for _, bars in g for _, rt in bars)
    gp = ['set terminal pngcairo size %d,620 font "sans,10"' % (200 + 650 * len(panels)),
          'set output "%s"' % os.path.join(res.path, "http.png"),
          'unset logscale', 'unset grid', 'set grid ytics', 'set style data lines',
          'set style fill solid 0.85 border -1', 'set xlabel ""',
          'set ylabel "× no proxy (TCP)"', 'set yrange [0:%g]' % (max(top, 1) * 1.18),
          'set arrow 1 from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 1.5 lc "black"',
          'set key outside bottom center horizontal Left reverse samplen 1.5 width 2',
          'set multiplot layout 1,%d title "HTTP throughput through each proxy against the'
          ' server with no proxy, at the judged connection counts\\n(wrk; the ratio per round,'
          ' its median and min–max over the rounds)"' % len(panels)]
    for srv, groups in panels:
        # Bars of one width within a group, the group centred on its tic.
        n = max(len(bars) for _, bars in groups)
        w = 0.8 / n
        fn = os.path.join(d, "http-%s.dat" % srv)
        order = [v for v in res.variants if any(v == b[0] for _, bars in groups for b in bars)]
        blocks = []
        with open(fn, "w") as f:
            for v in order:
                f.write("# %s: x\tmedian\tmin\tmax\n" % v)
                for x, (_, bars) in enumerate(groups):
                    vs = [b[0] for b in bars]
                    if v in vs:
                        j = vs.index(v)
                        rt = dict(bars)[v]
                        f.write("%.4f\t%g\t%g\t%g\n"
                                % (x + (j - (len(bars) - 1) / 2) * w, rt[0], rt[1], rt[2]))
                f.write("\n\n")
                blocks.append(v)
        # Values across the bars while they are wide enough, else along them.
        lab = "center offset 0,0.7" if n <= 4 else "rotate by 90 left offset 0,0.4"
        parts = []
        for i, v in enumerate(blocks):
            c = HTTP_COLORS.get(v, "#999999")
            # lt 1: solid lines, whatever the earlier plots made of the other linetypes.
            parts += ['"%s" index %d using 1:2 with boxes lt 1 lc rgb "%s" title "%s" noenhanced'
                      % (fn, i, c, PLAIN.get(v, v)),
                      # min–max as a capped vector: yerrorbars gaps its line at the median.
                      '"" index %d using 1:3:(0):($4-$3) with vectors heads size screen'
                      ' 0.004,90 lt 1 lw 1.5 lc "black" notitle' % i,
                      '"" index %d using 1:4:(sprintf("%%.2f", $2)) with labels %s font ",8"'
                      ' notitle' % (i, lab)]
        tics = ", ".join('"%s" %d' % (label, x) for x, (label, _) in enumerate(groups))
        gp += ['set title "%s"' % srv, 'set boxwidth %g absolute' % (w * 0.92),
               'set xrange [-0.6:%g]' % (len(groups) - 0.4), 'set xtics (%s)' % tics,
               "plot " + ", \\\n  ".join(parts)]
    gp += ['unset multiplot', 'unset arrow 1', 'unset title', 'set xtics autofreq',
           'set xrange [*:*]', 'set yrange [*:*]', 'set grid', 'set key outside right top',
           'set terminal pngcairo size 1000,640 font "sans,10"']
    return gp


def plots(res):
    """Data files and a gnuplot script in RESULTS/plots/, PNGs in RESULTS. Returns what was made."""
    d = os.path.join(res.path, "plots")
    os.makedirs(d, exist_ok=True)
    made = []
    gp = ['set terminal pngcairo size 1000,640 font "sans,10"',
          'set datafile separator "\\t"', 'set grid', 'set key outside right top']
    styles = {v: i + 1 for i, v in enumerate(VARIANTS)}
    lt = ['set linetype %d lw 2 dt %d' % (i + 1, 1 if i < 4 else 2) for i in range(len(VARIANTS))]
    gp += lt

    # CDFs of one-connection latency: the 64 B one alone, and all sizes.
    sizes = sorted({k[1] for k in res.by if k[0] == "rr" and k[2] == 1})
    cdf_files = {}
    for s in sizes:
        for v in res.variants:
            h = merged_hist(res, v, "rr", s, 1)
            total = sum(n for _, n in h)
            if not total:
                continue
            fn = os.path.join(d, "cdf-%s-%s.dat" % (s, v))
            with open(fn, "w") as f:
                seen = 0
                for ns, n in h:
                    seen += n
                    f.write("%.3f\t%.6f\n" % (ns / 1e3, seen / total))
            cdf_files[(s, v)] = fn

    def cdf_plot(s, title):
        parts = []
        for v in res.variants:
            if (s, v) in cdf_files:
                parts.append('"%s" using 1:2 with steps lt %d title "%s"'
                             % (cdf_files[(s, v)], styles[v], PLAIN[v]))
        return parts, title

    if any(k[0] == 64 for k in cdf_files):
        # Left the CDF; right the same data as the fraction slower than x, on a log scale,
        # where p99 and p99.9 can be read.
        parts, _ = cdf_plot(64, "")
        tail = [p.replace("using 1:2", "using 1:(1-$2)") for p in parts]
        gp += ['set output "%s"' % os.path.join(res.path, "latency-cdf-64.png"),
               'set terminal pngcairo size 1300,560 font "sans,10"',
               'set multiplot layout 1,2 title "64 B request/response latency, one connection'
               ' (all rounds merged)"',
               'set logscale x', 'set xlabel "round-trip time (µs)"', 'set format x "%g"',
               'set title "CDF"', 'set ylabel "fraction of round trips"', 'set yrange [0:1]',
               'set key inside bottom right', "plot " + ", \\\n  ".join(parts),
               'set title "tail"', 'set ylabel "fraction slower than x"', 'set logscale y',
               'set yrange [1e-5:1]', 'set format y "10^{%T}"', 'set key inside top right',
               "plot " + ", \\\n  ".join(tail),
               'unset multiplot', 'unset logscale', 'set format y "%g"', 'set yrange [*:*]',
               'unset title', 'set key outside right top',
               'set terminal pngcairo size 1000,640 font "sans,10"']
        made.append(("latency-cdf-64.png", "64 B latency CDF and tail"))
    if len(sizes) > 1:
        gp += ['set output "%s"' % os.path.join(res.path, "latency-cdf-sizes.png"),
               'set terminal pngcairo size 1200,900 font "sans,9"',
               'set multiplot layout 2,2', 'set logscale x', 'set yrange [0:1]',
               'set xlabel "round-trip time (µs)"', 'set ylabel "fraction"',
               'set key inside bottom right']
        for s in sizes:
            parts, _ = cdf_plot(s, "")
            gp += ['set title "%s messages"' % size_name(s), "plot " + ", \\\n  ".join(parts)]
        gp += ['unset multiplot', 'unset logscale x', 'unset title', 'set key outside right top',
               'set terminal pngcairo size 1000,640 font "sans,10"', 'set yrange [*:*]']
        made.append(("latency-cdf-sizes.png", "latency CDF per message size"))

    # Throughput bars with min-max error bars.
    if res.has("up") or res.has("down"):
        bulk = res.meta["settings"]["bulk_bytes"]
        fn = os.path.join(d, "throughput.dat")
        with open(fn, "w") as f:
            f.write("# variant\tup\tup_lo\tup_hi\tdown\tdown_lo\tdown_hi\n")
            for v in res.variants:
                u = res.stat(("up", bulk, 1), v, "mb_s") or (0, 0, 0)
                w = res.stat(("down", bulk, 1), v, "mb_s") or (0, 0, 0)
                f.write('"%s"\t%g\t%g\t%g\t%g\t%g\t%g\n' % ((PLAIN[v],) + u + w))
        gp += ['set output "%s"' % os.path.join(res.path, "throughput.png"),
               'set title "Bulk throughput, %s in one connection (median, min–max)"'
               % size_name(bulk),
               'set style data histograms', 'set style histogram errorbars gap 2 lw 1',
               'set style fill solid 0.7 border -1', 'set ylabel "MB/s"', 'set xlabel ""',
               'set yrange [0:*]', 'set xtics rotate by -25 left', 'set key inside top right',
               'plot "%s" using 2:3:4:xtic(1) title "upload (client → backend)" lc rgb "#3b6ea5",'
               ' \\\n  "" using 5:6:7 title "download (backend → client)" lc rgb "#e07b39"' % fn,
               'unset style', 'set style data lines', 'set xtics norotate', 'set yrange [*:*]',
               'set key outside right top', 'unset title']
        made.append(("throughput.png", "throughput per direction"))

    # Latency and memory against concurrency; failed levels are left out of the lines.
    levels = [1] + [int(x) for x in res.meta["settings"]["scale_levels"]]
    sfiles = {}
    for v in res.variants:
        fn = os.path.join(d, "scale-%s.dat" % v)
        n = 0
        with open(fn, "w") as f:
            for l in levels:
                p50 = res.stat(("rr", 64, l), v, "p50_us")
                p99 = res.stat(("rr", 64, l), v, "p99_us")
                rss = res.stat(("rr", 64, l), v, "rss_kb_per_conn") if l > 1 else None
                if p50:
                    f.write("%d\t%g\t%g\t%s\n"
                            % (l, p50[0], p99[0], "%g" % rss[0] if rss else "NaN"))
                    n += 1
        if n:
            sfiles[v] = fn
    if sfiles:
        gp += ['set output "%s"' % os.path.join(res.path, "latency-vs-connections.png"),
               'set terminal pngcairo size 1200,560 font "sans,10"',
               'set multiplot layout 1,2 title "64 B request/response latency against concurrent'
               ' connections (median over rounds; a missing point failed)"',
               'set logscale xy', 'set xlabel "concurrent connections"', 'set ylabel "µs"',
               'set format x "%g"', 'set key inside top left', 'set xrange [0.7:15000]']
        for col, name in ((2, "p50"), (3, "p99")):
            parts = ['"%s" using 1:%d with linespoints lt %d pt 7 title "%s"'
                     % (fn, col, styles[v], PLAIN[v]) for v, fn in sfiles.items()]
            gp += ['set title "%s"' % name, "plot " + ", \\\n  ".join(parts)]
        gp += ['unset multiplot', 'unset logscale', 'set xrange [*:*]', 'unset title']
        made.append(("latency-vs-connections.png", "latency against concurrency"))

    mem_parts = ['"%s" using 1:4 with linespoints lt %d pt 7 title "%s"'
                 % (fn, styles[v], PLAIN[v]) for v, fn in sfiles.items() if v not in DIRECT]
    if mem_parts and len(levels) > 1:
        gp += ['set terminal pngcairo size 1000,560 font "sans,10"',
               'set output "%s"' % os.path.join(res.path, "memory-per-connection.png"),
               'set title "Proxy RSS per connection (all its processes; held − idle)"',
               'set logscale x', 'set xlabel "concurrent connections"', 'set ylabel "KiB"',
               'set xrange [50:15000]', 'set yrange [0:*]', 'set key outside right top',
               "plot " + ", \\\n  ".join(mem_parts)]
        made.append(("memory-per-connection.png", "proxy memory per connection"))

    # The http phase at each shape's judged connection count, against no proxy.
    http = http_plot(res, d)
    if http:
        gp += http
        made.append(("http.png", "HTTP throughput against no proxy, at the judged connection"
                                 " counts"))

    script = os.path.join(d, "plots.gp")
    with open(script, "w") as f:
        f.write("\n".join(gp) + "\n")
    r = subprocess.run(["gnuplot", script], capture_output=True, text=True, timeout=120)
    # A level with one point gives an empty range, which gnuplot widens itself: not news.
    said = "\n".join(l for l in r.stderr.splitlines() if "empty" not in l and "range" not in l)
    if r.returncode != 0:
        sys.stderr.write("report: gnuplot failed:\n%s\n" % r.stderr)
    elif said.strip():
        sys.stderr.write("report: gnuplot says:\n%s\n" % said)
    return [(n, t) for n, t in made if os.path.exists(os.path.join(res.path, n))]


def run(*cmd, starts=""):
    """The first line of a command's output that starts with starts (some print on stderr)."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as e:
        return "unavailable (%s)" % e
    out = [l for l in (r.stdout + r.stderr).splitlines() if l.startswith(starts)]
    return out[0].strip() if out else ""


def write_meta(path, elapsed, quick):
    """meta.json: the machine, the versions, and the settings run.sh exported."""
    env = os.environ
    model = ""
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = [l for l in open("/proc/meminfo") if l.startswith("MemTotal")][0].split()[1]
    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    meta = {
        "date": os.path.basename(os.path.normpath(path)),
        "command": "make bench" + (" QUICK=1" if quick else ""),
        "kernel": os.uname().release,
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(int(mem) / 1048576, 1),
        "git": run("git", "-C", top, "describe", "--always", "--dirty"),
        "versions": {
            "haproxy": run("haproxy", "-v"),
            "nginx": run("nginx", "-v"),
            "socat": run("socat", "-V", starts="socat version"),
            "systemd": run("systemd-socket-activate", "--version"),
            "sockredir": run(os.path.join(top, ".output", "sockredir"), "--version"),
            "caddy": run("caddy", "version"),
            "wrk": run("wrk", "-v", starts="wrk"),
        },
        "settings": {
            "rounds": int(env["ROUNDS"]), "rr_seconds": float(env["RR_SECONDS"]),
            "rr_sizes": env["RR_SIZES"].split(), "bulk_bytes": int(env["BULK_BYTES"]),
            "connrate_seconds": float(env["CONNRATE_SECONDS"]),
            "connrate_procs": int(env["CONNRATE_PROCS"]),
            "scale_levels": env["SCALE_LEVELS"].split(),
            "scale_seconds": float(env["SCALE_SECONDS"]), "scale_procs": int(env["SCALE_PROCS"]),
            "stall_seconds": float(env["STALL"]), "scale_stall_seconds": float(env["SCALE_STALL"]),
            "variants": env["VARIANTS"].split(),
            "http_variants": env.get("HTTP_VARIANTS", env["VARIANTS"]).split(),
            "phases": env.get("PHASES", "main scale").split(),
            "http_seconds": int(env.get("HTTP_SECONDS", "0")),
            "http_scan_seconds": int(env.get("HTTP_SCAN_SECONDS", env.get("HTTP_SECONDS", "0"))),
            "http_scan_rounds": int(env.get("HTTP_SCAN_ROUNDS", env["ROUNDS"])),
            "http_conns": env.get("HTTP_CONNS", ""),
            "http_servers": env.get("HTTP_SERVERS", ""),
        },
        "elapsed_seconds": int(elapsed),
    }
    with open(os.path.join(path, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--meta":
        write_meta(sys.argv[2], sys.argv[3], sys.argv[4] == "1")
        return
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    res = Results(sys.argv[1])
    write_summary_csv(res)
    write_readme_tables(res)
    made = plots(res)
    Report(res).write(made)
    # The headline, for the terminal.
    if res.has("rr") or res.has("up") or res.has("connrate"):
        head, rows = Report(res).summary_rows()
        print("| " + " | ".join(head) + " |")
        for r in rows:
            print("| " + " | ".join(r) + " |")
    if res.has("http-"):
        rep = Report(res)
        rep.http_summary()
        print("\n".join(rep.out[4:]))
        rep = Report(res)
        rep.http_targets()
        print("\n".join(l for l in rep.out if l.startswith("|")))


if __name__ == "__main__":
    main()
