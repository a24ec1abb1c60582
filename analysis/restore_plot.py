#!/usr/bin/env python3
"""Figures and a summary table of the restore study (issue 24) from snapbench results CSVs.

Usage: restore_plot.py RESULTS.csv [more.csv ...] --out DIR

Reads the rows of restore runs (restore column non-empty, status ok): ready_s and access p99 against
region size (one line per restore strategy; panels by pattern x access mix; one figure per page-cache
state), fault counts per restore strategy, and DIR/summary.md with every case's medians. A restore
that was not ready (or resident) within its window has an empty cell: it is drawn at the window's end
with an open marker and listed as "> window" in the table.
Needs Debian's python3-matplotlib (see find_python.sh).
"""
import argparse
import csv
import os
import statistics
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ORDER = ["eager", "mmap", "uffd-lazy", "uffd-lazy-prefault", "prefetch"]
REQUIRED = ["restore", "restore_access", "restore_cache", "restore_window_s", "pattern", "region_bytes",
            "status", "ready_s", "resident_s", "resume_s", "access_p99_us", "restore_faults",
            "restore_read_bytes", "restore_verified", "host"]


def load(paths):
    rows, skipped = [], 0
    for p in paths:
        with open(p, newline="") as f:
            r = csv.DictReader(f)
            missing = [c for c in REQUIRED if c not in (r.fieldnames or [])]
            if missing:
                sys.exit("restore_plot: %s lacks columns %s (not a schema-6 CSV with restore runs)" % (p, ", ".join(missing)))
            for row in r:
                if not row["restore"]:
                    continue
                if row["status"] != "ok":
                    skipped += 1
                    continue
                rows.append(row)
    return rows, skipped


def median_or_none(values):
    vals = [float(v) for v in values if v != ""]
    return statistics.median(vals) if len(vals) == len(values) and vals else None


def cases(rows):
    out = defaultdict(list)
    for r in rows:
        out[(r["restore_cache"], r["pattern"], r["restore_access"], r["restore"], int(r["region_bytes"]))].append(r)
    return out


def plot_metric(grouped, metric, ylabel, fname, out, log=True):
    caches = sorted({k[0] for k in grouped})
    patterns = sorted({k[1] for k in grouped})
    mixes = sorted({k[2] for k in grouped})
    written = []
    for cache in caches:
        fig, axes = plt.subplots(len(patterns), len(mixes), figsize=(5 * len(mixes), 3.6 * len(patterns)), squeeze=False)
        for i, pat in enumerate(patterns):
            for j, mix in enumerate(mixes):
                ax = axes[i][j]
                for name in ORDER:
                    pts = sorted((k[4], v) for k, v in grouped.items() if k[:4] == (cache, pat, mix, name))
                    if not pts:
                        continue
                    xs, ys, open_x, open_y = [], [], [], []
                    for size, rs in pts:
                        m = median_or_none([r[metric] for r in rs])
                        if m is None:  # not reached within the window: drawn at the window's end
                            open_x.append(size / 2**20)
                            open_y.append(max(float(r["restore_window_s"]) for r in rs) if metric.endswith("_s") else 0)
                        else:
                            xs.append(size / 2**20)
                            ys.append(m)
                    line, = ax.plot(xs, ys, marker="o", label=name)
                    if open_x:
                        ax.plot(open_x, open_y, linestyle="none", marker="o", mfc="none", color=line.get_color())
                ax.set_xscale("log", base=2)
                if log:
                    ax.set_yscale("log")
                ax.set_xlabel("region (MiB)")
                ax.set_ylabel(ylabel)
                ax.set_title("%s, %s, %s cache" % (pat, mix, cache), fontsize=9)
                ax.grid(True, alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(out, "%s_%s.png" % (fname, cache))
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def plot_faults(grouped, out):
    sizes = sorted({k[4] for k in grouped})
    big = sizes[-1]
    keys = sorted({(k[0], k[1], k[2]) for k in grouped if k[4] == big})
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(keys)), 4))
    width = 0.8 / len(ORDER)
    for n, name in enumerate(ORDER):
        vals = []
        for key in keys:
            rs = grouped.get(key + (name, big), [])
            vals.append(median_or_none([r["restore_faults"] for r in rs]) or 0)
        ax.bar([i + n * width for i in range(len(keys))], vals, width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(keys))])
    ax.set_xticklabels(["%s\n%s\n%s" % k for k in keys], fontsize=7)
    ax.set_yscale("symlog")
    ax.set_ylabel("faults served in the window")
    ax.set_title("faults at %d MiB (mmap: the process's page faults)" % (big // 2**20), fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(out, "faults.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fmt(v, unit=""):
    return "> window" if v is None else ("%.4g%s" % (v, unit))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rows, skipped = load(a.csv)
    if not rows:
        sys.exit("restore_plot: no restore run with status=ok in %s" % ", ".join(a.csv))
    os.makedirs(a.out, exist_ok=True)
    grouped = cases(rows)
    figs = plot_metric(grouped, "ready_s", "ready_s (s)", "ready_s", a.out)
    figs += plot_metric(grouped, "access_p99_us", "access p99 (us)", "access_p99", a.out)
    figs.append(plot_faults(grouped, a.out))
    hosts = sorted({r["host"] for r in rows})
    lines = ["# Restore study summary", "",
             "%d restore runs (status ok) from %s on %s; %d not ok left out. Medians over repetitions; "
             "\"> window\": not reached within the run's restore window." % (len(rows), ", ".join(a.csv), ", ".join(hosts), skipped),
             "", "| cache | pattern | access | restore | MiB | resume_s | ready_s | resident_s | access p99 us | faults | read MiB | verified |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(grouped, key=lambda k: (k[0], k[1], k[2], k[4], ORDER.index(k[3]) if k[3] in ORDER else 99)):
        rs = grouped[key]
        verified = "/".join(sorted({r["restore_verified"] for r in rs}))
        lines.append("| %s | %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (
            key[0], key[1], key[2], key[3], key[4] // 2**20,
            fmt(median_or_none([r["resume_s"] for r in rs])), fmt(median_or_none([r["ready_s"] for r in rs])),
            fmt(median_or_none([r["resident_s"] for r in rs])), fmt(median_or_none([r["access_p99_us"] for r in rs])),
            fmt(median_or_none([r["restore_faults"] for r in rs])),
            fmt((median_or_none([r["restore_read_bytes"] for r in rs]) or 0) / 2**20), verified))
    lines += ["", "Figures: " + ", ".join(os.path.basename(f) for f in figs)]
    with open(os.path.join(a.out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
