#!/usr/bin/env python3
"""The restore targets of issue 24 as ratios to the machine's primitives, for scripts/perf-report.

Usage: restore_targets.py MICRO.json RESTORE.csv

MICRO.json: snapbench-micro's output with BM_MissingFaultCopy (p50_ns, p99_ns) and BM_PageCacheRead
(bytes_per_second). RESTORE.csv: restore runs (uffd-lazy and eager, uniform read, warm; prefetch and
uffd-lazy on hotset:0.1:0.9). Prints a markdown section; a figure that is missing is "n/a" with why.
"""
import csv
import json
import statistics
import sys


def micro(path):
    out = {}
    with open(path) as f:
        for b in json.load(f).get("benchmarks", []):
            out[b["name"].split("/")[0]] = b
    return out


def med(rows, col):
    vals = [float(r[col]) for r in rows if r.get(col, "") != ""]
    return statistics.median(vals) if vals else None


def pick(rows, restore, pattern):
    return [r for r in rows if r["restore"] == restore and r["pattern"] == pattern and r["status"] == "ok"]


def fmt(v):
    return "n/a" if v is None else "%.3g" % v


def main():
    m = micro(sys.argv[1])
    with open(sys.argv[2], newline="") as f:
        rows = list(csv.DictReader(f))
    fault = m.get("BM_MissingFaultCopy", {})
    pc = m.get("BM_PageCacheRead", {})
    rt_p50 = fault.get("p50_ns", 0) / 1000 or None
    rt_p99 = fault.get("p99_ns", 0) / 1000 or None
    pc_rate = pc.get("bytes_per_second")
    lazy = pick(rows, "uffd-lazy", "uniform")
    eager = pick(rows, "eager", "uniform")
    lazy_hot = pick(rows, "uffd-lazy", "hotset:0.1:0.9")
    pre_hot = pick(rows, "prefetch", "hotset:0.1:0.9")
    lazy_p99 = med(lazy, "access_p99_us")
    eager_rate = None
    if eager:
        rates = [float(r["restore_read_bytes"]) / float(r["resume_s"]) for r in eager if float(r["resume_s"]) > 0]
        eager_rate = statistics.median(rates) if rates else None
    # Not ready within the window counts as the window's length: the ratio is then a lower bound.
    def ready(rs):
        vals = [float(r["ready_s"]) if r["ready_s"] else float(r["restore_window_s"]) for r in rs]
        return (statistics.median(vals), any(not r["ready_s"] for r in rs)) if vals else (None, False)
    lazy_ready, lazy_open = ready(lazy_hot)
    pre_ready, pre_open = ready(pre_hot)
    def ratio(a, b):
        return a / b if a is not None and b else None
    size = lambda rs: "%d MiB" % (int(rs[0]["region_bytes"]) // 2**20) if rs else "n/a"
    lines = ["## Restore targets (issue 24), ratios to this run's primitives", "",
             "| target | measured | primitive | ratio | goal | met |", "|---|---|---|---|---|---|"]
    r1 = ratio(lazy_p99, rt_p50)
    lines.append("| uffd-lazy access p99 vs MISSING+UFFDIO_COPY round trip p50 (%s, uniform read, warm) | %s us | %s us (p99 %s us) | %s | <= 2 | %s |" % (
        size(lazy), fmt(lazy_p99), fmt(rt_p50), fmt(rt_p99), fmt(r1), "n/a" if r1 is None else ("yes" if r1 <= 2 else "no")))
    r2 = ratio(eager_rate, pc_rate)
    lines.append("| eager restore rate (image bytes / resume_s, %s, warm) vs page-cache read | %s GB/s | %s GB/s | %s | >= 0.6 | %s |" % (
        size(eager), fmt(eager_rate and eager_rate / 1e9), fmt(pc_rate and pc_rate / 1e9), fmt(r2),
        "n/a" if r2 is None else ("yes" if r2 >= 0.6 else "no")))
    r3 = ratio(lazy_ready, pre_ready)
    note = " (uffd-lazy not ready within its window: a lower bound)" if lazy_open else ""
    note += " (prefetch not ready within its window)" if pre_open else ""
    lines.append("| uffd-lazy ready_s / prefetch ready_s (%s, hotset:0.1:0.9)%s | %s s / %s s | - | %s | >= 3 | %s |" % (
        size(pre_hot), note, fmt(lazy_ready), fmt(pre_ready), fmt(r3),
        "n/a" if r3 is None or pre_open else ("yes" if r3 >= 3 else ("at least %.3g" % r3 if lazy_open else "no"))))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
