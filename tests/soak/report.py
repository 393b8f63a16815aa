#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The summary of a tests/soak.sh run, from the files it left in SOAK_OUT.

    report.py SOAK_OUT

Reads facts.txt, runs.txt, trend.csv, the proxy logs (proxy-INST.log, with the counters sockredir
logs at exit) and stats-INST.json. Prints the summary; exits 1 if the soak failed (the reasons
are the last lines), else 0.
"""
import csv
import glob
import json
import os
import re
import statistics
import sys
from collections import Counter, defaultdict

# Kinds and the order they are shown in; anything else (faults) follows.
KIND_ORDER = ["rr1", "rr64k", "up", "down", "halfclose", "replyclose", "sendclose", "banner",
              "churn", "victim-after-fault"]
# RSS counts as "back near the start" within this much.
RSS_SLACK_KB = 4096


def human(n):
    n = float(n)
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"]:
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def num(s):
    try:
        return int(s)
    except (TypeError, ValueError):
        return None


def read_facts(out):
    facts = {}
    with open(os.path.join(out, "facts.txt")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            facts[k] = v
    return facts


def read_runs(out):
    runs = []
    with open(os.path.join(out, "runs.txt")) as f:
        for line in f:
            p = line.split()
            if len(p) < 10:
                continue
            runs.append({"end": int(p[0]), "kind": p[1], "inst": p[2], "class": p[3],
                         "rc": int(p[4]), "ms": int(p[5]), "conns": int(p[6]),
                         "sent": int(p[7]), "recv": int(p[8]),
                         "tail": None if p[9] == "-" else int(p[9]),
                         "exit": int(p[10]) if len(p) > 10 else None})
    return runs


def exit_counters(log):
    """The counters sockredir logs at exit, or {} if it never got there."""
    c = {}
    try:
        text = open(log, errors="replace").read()
    except OSError:
        return c
    m = re.findall(r"Connections: (\d+) accepted, (\d+) on the kernel path \((\d+) with kernel "
                   r"upload\), (\d+) on splice \(mode (\d+), client half-closed (\d+), backend "
                   r"refused (\d+), map full (\d+), other (\d+)(?:, client unix (\d+))?\), (\d+) "
                   r"backend connect failures", text)
    if m:
        v = [int(x) if x else 0 for x in m[-1]]
        c.update(accepted=v[0], kernel=v[1], kernel_upload=v[2], splice=v[3],
                 fb_mode=v[4], fb_client_half_closed=v[5], fb_backend_refused=v[6],
                 fb_map_full=v[7], fb_other=v[8], fb_client_unix=v[9], connect_failed=v[10])
    m = re.findall(r"Bytes: kernel down (\d+), kernel up (\d+), spliced up (\d+), spliced down "
                   r"(\d+), moved by hand (\d+); (\d+) drain checks, (\d+) redirect failures, "
                   r"(\d+) held skbs", text)
    if m:
        v = list(map(int, m[-1]))
        c.update(kernel_down=v[0], kernel_up=v[1], spliced_up=v[2], spliced_down=v[3],
                 by_hand=v[4], drain_checks=v[5], redirect_failed=v[6], held=v[7])
    return c


def norm(line):
    """A log line with its numbers blanked, to group repeats."""
    return re.sub(r"\d+", "N", line.strip())


def main():
    out = sys.argv[1]
    facts = read_facts(out)
    runs = read_runs(out)
    rows = list(csv.DictReader(open(os.path.join(out, "trend.csv"))))
    insts = sorted({r["instance"] for r in rows}, key=lambda i: (i != "bpf", i))
    reasons = []
    p = print

    p("=" * 78)
    p(f"sockredir soak, started {facts.get('start')}; binary sha256 {facts.get('binary')} "
      f"(tree {facts.get('git')})")
    p(f"  DURATION {facts.get('duration')} ({facts.get('duration_s')} s): traffic ran "
      f"{facts.get('traffic_s')} s, the runs in flight took {facts.get('tail_s')} s more, "
      f"the idle check {facts.get('idle_wait_s')} s; wall time {facts.get('wall_s')} s")
    for i in insts:
        p(f"  instance {i}: --mode {i}, 127.0.0.1:{facts.get('ports_' + i)} "
          "(routes echo, banner, proto, victim)")
    p(f"  {facts.get('workers')} worker loops + 1 churn loop; {facts.get('faults')} faults")

    # --- Runs per kind
    normal = [r for r in runs if r["class"] != "faulted"]
    by_kind = defaultdict(list)
    for r in normal:
        by_kind[r["kind"]].append(r)
    kinds = [k for k in KIND_ORDER if k in by_kind] + sorted(k for k in by_kind if k not in KIND_ORDER)
    p("")
    p("runs that must pass (every byte checked by srpeer):")
    p(f"  {'kind':<22}{'runs':>6}{' (bpf/splice)':<14}{'failed':>7}{'conns':>10}{'bytes':>12}"
      f"{'p50 s':>8}{'max s':>8}")
    tot = Counter()
    for k in kinds:
        rs = by_kind[k]
        nb = sum(1 for r in rs if r["inst"] == "bpf")
        ns = len(rs) - nb
        failed = sum(1 for r in rs if r["rc"] != 0)
        conns = sum(r["conns"] for r in rs)
        byts = sum(r["sent"] + r["recv"] for r in rs)
        ms = [r["ms"] for r in rs]
        p(f"  {k:<22}{len(rs):>6}{f' ({nb}/{ns})':<14}{failed:>7}{conns:>10}{human(byts):>12}"
          f"{statistics.median(ms) / 1000:>8.2f}{max(ms) / 1000:>8.2f}")
        tot.update(runs=len(rs), failed=failed, conns=conns, bytes=byts)
    p(f"  {'total':<22}{tot['runs']:>6}{'':<14}{tot['failed']:>7}{tot['conns']:>10}"
      f"{human(tot['bytes']):>12}")
    if tot["failed"]:
        reasons.append(f"{tot['failed']} run(s) that were not faulted failed "
                       f"(see {out}/failures/)")

    # --- Faults
    faulted = [r for r in runs if r["class"] == "faulted" or r["class"] == "fault-pass"]
    p("")
    p(f"faults ({len(faulted)} faulted runs, counted apart):")
    stalls = 0
    by_fault = defaultdict(list)
    for r in faulted:
        by_fault[r["kind"]].append(r)
    for k in sorted(by_fault):
        rs = by_fault[k]
        failed = sum(1 for r in rs if r["rc"] != 0)
        tails = [r["tail"] for r in rs if r["tail"] is not None]
        slow = sum(1 for t in tails if t > int(facts.get("stall_ms", 5000)))
        stalls += slow
        insts_s = "/".join(str(sum(1 for r in rs if r["inst"] == i)) for i in insts)
        if k.startswith("kill9"):
            what = f"client failed as expected {failed}, completed {len(rs) - failed}"
        elif k.startswith("reset"):
            what = "client reset sent"
        else:
            what = f"client waited for the socket and passed {len(rs) - failed}, failed {failed}"
        exits = [r["exit"] for r in rs if r["exit"] is not None]
        p(f"  {k:<12} {len(rs):>3} ({'/'.join(insts)} {insts_s}): {what}; fault to end "
          f"(FIN or exit) max {max(tails) if tails else '-'} ms, median "
          f"{int(statistics.median(tails)) if tails else '-'} ms"
          + (f"; to the client's exit max {max(exits)} ms" if exits and exits != tails else "")
          + (f"; {slow} over the {facts.get('stall_ms')} ms limit (STALL)" if slow else ""))
        if not k.startswith("kill9") and not k.startswith("reset"):
            if failed:
                reasons.append(f"{failed} client(s) waiting for a deleted backend socket failed")
    if stalls:
        reasons.append(f"{stalls} faulted connection(s) took more than "
                       f"{facts.get('stall_ms')} ms to end")

    # --- Connections and bytes
    p("")
    cnt = {i: exit_counters(os.path.join(out, f"proxy-{i}.log")) for i in insts}
    srpeer_conns = sum(r["conns"] for r in runs)
    srpeer_bytes = sum(r["sent"] + r["recv"] for r in runs)
    p(f"connections: srpeer opened {srpeer_conns} (faulted included)"
      + "".join(f"; {i} accepted {cnt[i].get('accepted', '?')}" for i in insts))
    for i in insts:
        c = cnt[i]
        if not c:
            p(f"  {i}: no exit counters in its log")
            continue
        p(f"  {i}: {c['kernel']} kernel path, {c['splice']} splice (mode {c['fb_mode']}, client "
          f"half-closed {c['fb_client_half_closed']}, backend refused {c['fb_backend_refused']}, "
          f"map full {c['fb_map_full']}, other {c['fb_other']}, "
          f"client unix {c['fb_client_unix']}), "
          f"{c['connect_failed']} backend connect failures")
    p(f"bytes: srpeer checked {human(srpeer_bytes)} ({srpeer_bytes} B, sent + received)")
    total_k = total_s = 0
    for i in insts:
        c = cnt[i]
        if "kernel_down" not in c:
            continue
        k = c["kernel_down"] + c["kernel_up"]
        s = c["spliced_down"] + c["spliced_up"]
        total_k += k
        total_s += s
        p(f"  {i}: kernel {human(k)} (down {c['kernel_down']}, up {c['kernel_up']}), spliced "
          f"{human(s)} (down {c['spliced_down']}, up {c['spliced_up']}), by hand {c['by_hand']}; "
          f"{c['drain_checks']} drain checks, {c['redirect_failed']} redirect failures, "
          f"{c['held']} held skbs")
    p(f"  sockredir moved {human(total_k + total_s)}: {human(total_k)} in the kernel, "
      f"{human(total_s)} spliced (from the counters each instance logs at exit; --mode splice "
      "has no pins, so no stats --json)")
    for i in insts:
        sj = os.path.join(out, f"stats-{i}.json")
        if os.path.exists(sj) and os.path.getsize(sj):
            try:
                doc = json.load(open(sj))[0]
                b = doc.get("bytes", {})
                d, u = b.get("down", {}), b.get("up", {})
                p(f"  {i} stats --json before SIGTERM: accepted {doc.get('accepted')}, kernel "
                  f"{doc.get('kernel')}, splice {doc.get('splice')}; down kernel {d.get('kernel')}, "
                  f"spliced {d.get('spliced')}, by hand {d.get('by_hand')}; up kernel "
                  f"{u.get('kernel')}, spliced {u.get('spliced')}; peer_missing "
                  f"{doc.get('peer_missing')}, redirect_failed {doc.get('redirect_failed')}, "
                  f"empty_dropped {doc.get('empty_dropped')}, held_skbs {doc.get('held_skbs')}, "
                  f"connect_failed {doc.get('connect_failed')}")
            except (ValueError, IndexError):
                pass

    # --- Trends
    p("")
    p(f"trend ({os.path.join(out, 'trend.csv')}, a sample every 10 s):")
    for i in insts:
        rs = [r for r in rows if r["instance"] == i and r["phase"] != "probe"]
        start = [r for r in rs if r["phase"] == "start"]
        traffic = [r for r in rs if r["phase"] == "traffic"]
        end = [r for r in rs if r["phase"] == "end"]
        if not start or not end:
            reasons.append(f"{i}: no start or end sample")
            continue
        s0, e = start[0], end[-1]
        died = facts.get(f"died_{i}") or next((r["elapsed_s"] for r in rs if r["alive"] != "1"), None)
        if died is not None:
            reasons.append(f"sockredir ({i}) died during the soak (noticed {died} s in)")

        alive = [r for r in rs if r["alive"] == "1"]

        def col(name, rr=alive):
            return [num(r[name]) for r in rr if num(r[name]) is not None]

        def trend(name):
            v = col(name)
            return f"first {v[0]}, max {max(v)}, last {v[-1]}" if v else "no samples"

        rss0, rssl = num(s0["rss_kb"]), num(e["rss_kb"])
        rss_t = col("rss_kb", [r for r in traffic if r["alive"] == "1"])
        p(f"  {i}: {len(traffic)} samples under traffic" +
          (f"; DIED (noticed {died} s in), the trend stops at its last sample" if died else ""))
        p(f"    RSS KiB   {trend('rss_kb')}")
        if len(rss_t) >= 6:
            half = len(rss_t) // 2
            p(f"    RSS under traffic, mean of the first half {statistics.mean(rss_t[:half]):.0f}, "
              f"of the second half {statistics.mean(rss_t[half:]):.0f}")
        p(f"    fds       {trend('fds')}")
        p(f"    sockets   {trend('sockets')}")
        p(f"    pipes     {trend('pipes')}")
        p(f"    open      {trend('open')}")
        if i != "splice":
            p(f"    sr_peers  {trend('sr_peers')}")
        if died is not None:
            continue
        near = rss0 is not None and rssl is not None and rssl <= rss0 + RSS_SLACK_KB
        p(f"    RSS idle at the end {rssl} KiB vs {rss0} KiB at the start: "
          f"{'back near the start' if near else 'NOT back near the start'} "
          f"(within {RSS_SLACK_KB} KiB)")
        s_socks, e_socks = num(s0["sockets"]), num(e["sockets"])
        s_np = num(s0["fds"]) - num(s0["pipes"]) if num(s0["fds"]) is not None else None
        e_np = num(e["fds"]) - num(e["pipes"]) if num(e["fds"]) is not None else None
        p(f"    at the end, idle: open {e['open']}, sockets {e_socks} (start {s_socks}), fds "
          f"without pipes {e_np} (start {s_np}), pipes {e['pipes']} (start {s0['pipes']})"
          + (f", sr_peers {e['sr_peers']}" if i != "splice" else ""))
        if e["open"] != "0":
            reasons.append(f"{i}: {e['open']} connection(s) still open at the end")
        if e_socks is None or s_socks is None or e_socks > s_socks:
            reasons.append(f"{i}: sockets did not come back: {e_socks} at the end, {s_socks} at the start")
        if e_np is None or s_np is None or e_np > s_np:
            reasons.append(f"{i}: fds (pipes aside) did not come back: {e_np} at the end, {s_np} at the start")
        if i != "splice" and e["sr_peers"] not in ("0", ""):
            reasons.append(f"{i}: {e['sr_peers']} sr_peers entries left with no connection open")

    # --- Exit and logs
    p("")
    for i in insts:
        rc = facts.get(f"exit_{i}")
        p(f"{i}: exit status after SIGTERM {rc}"
          + (", pins left behind" if facts.get(f"pins_left_{i}") else ""))
        if rc != "0":
            reasons.append(f"{i}: exit status {rc} after SIGTERM")
        if facts.get(f"pins_left_{i}") and rc == "0":
            reasons.append(f"{i}: pins left behind after a clean exit")
        w = os.path.join(out, f"warnings-{i}.log")
        lines = open(w, errors="replace").read().splitlines() if os.path.exists(w) else []
        groups = Counter(norm(l) for l in lines)
        p(f"  log lines at warning level or worse: {len(lines)} ({len(groups)} distinct)")
        for g, n in groups.most_common(12):
            p(f"    {n:>6} x {g[:150]}")
    errs = []
    for b in ("echo", "banner", "proto", "victim"):
        e = facts.get(f"backend_errors_{b}", "")
        errs.append(f"{b} {facts.get('backend_conns_' + b, '?')} conns/{e or '?'} errors")
        if b != "victim" and e not in ("0",):
            reasons.append(f"backend {b} counted {e or 'unknown'} errors (it is never faulted)")
    p("backends: " + ", ".join(errs) + " (victim errors are the faults)")
    fails = sorted(glob.glob(os.path.join(out, "failures", "*")))
    if fails:
        p(f"failure outputs: {len(fails)} files in {os.path.join(out, 'failures')}")

    p("")
    if reasons:
        for r in reasons:
            p(f"FAIL: {r}")
        p(f"soak FAILED ({len(reasons)} reason(s)); files in {out}")
        return 1
    p(f"soak PASSED: {tot['runs']} runs, 0 failures, {len(faulted)} faulted runs; files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
