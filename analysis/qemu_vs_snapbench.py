#!/usr/bin/env python3
"""QEMU and snapbench side by side on the same guest: the figure and table of results/qemu/.

Usage: qemu_vs_snapbench.py RESULTS.csv --out DIR

Reads the rows of configs/qemu-vs-snapbench.toml (workloads `kvm` = snapbench's own VMM and
strategies, `qemu` = QEMU's precopy and background-snapshot on the same guest program). Only
status=ok rows count. Per pattern, one row of three panels against the write rate the guest
*achieved* during the snapshot (rate_during_pages_s, in MiB/s; the target rate is what the guest was
asked for, and under QEMU it falls short): image_ratio, completion_s and the writers' p99 latency,
one line per strategy and workload (solid: snapbench on its VMM; dashed: QEMU), the median over
repetitions with min-max bars in both axes. Writes DIR/qemu-vs-snapbench.{png,pdf} and
DIR/summary.md (the medians per case, with the warm-up p99 as each row's own latency baseline).
Needs Debian's python3-matplotlib (see find_python.sh).
"""
import argparse
import csv
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402

PAGE_BYTES = 4096
MIB = 1 << 20
COLOURS = {"precopy": "tab:blue", "uffd-wp": "tab:red", "stop-copy": "tab:green"}
STYLES = {"kvm": "-", "qemu": "--"}
NAMES = {"kvm": "snapbench", "qemu": "QEMU"}
PANELS = [("image_ratio", "image / non-zero RSS", False),
          ("completion_s", "completion (s)", False),
          ("write_p99_us", "writer p99 during snapshot (us)", True)]


def median(values):
    v = sorted(values)
    n = len(v)
    return None if n == 0 else (v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2.0)


def target_mib(row):
    t = float(row["rate_target_pages_s"])
    return "max" if t < 0 else t * PAGE_BYTES / MIB


def load(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"workload", "strategy", "pattern", "status", "rate_target_pages_s", "rate_during_pages_s",
            "image_ratio", "completion_s", "write_p99_us", "write_before_p99_us", "duplicate_pages",
            "downtime_s", "passes", "verified"}
    missing = need - set(rows[0].keys() if rows else need)
    if missing:
        sys.exit(f"qemu_vs_snapbench.py: {path} lacks columns {sorted(missing)}")
    return rows


def cases(rows):
    """(pattern, strategy, workload, target) -> list of ok rows, plus counts of the others."""
    out, other = defaultdict(list), defaultdict(int)
    for r in rows:
        if r["workload"] not in STYLES:
            continue
        key = (r["pattern"], r["strategy"], r["workload"], target_mib(r))
        if r["status"] == "ok":
            out[key].append(r)
        else:
            other[(key, r["status"])] += 1
    return out, other


def sort_target(t):
    return float("inf") if t == "max" else t


def plot(groups, out_dir):
    patterns = sorted({k[0] for k in groups})
    fig, axes = plt.subplots(len(patterns), len(PANELS), figsize=(5 * len(PANELS), 3.8 * len(patterns)),
                             squeeze=False)
    for pi, pattern in enumerate(patterns):
        for ci, (col, ylabel, log) in enumerate(PANELS):
            ax = axes[pi][ci]
            series = sorted({(k[1], k[2]) for k in groups if k[0] == pattern})
            for strategy, workload in series:
                keys = sorted((k for k in groups if k[:3] == (pattern, strategy, workload)),
                              key=lambda k: sort_target(k[3]))
                points = []
                for k in keys:
                    rs = groups[k]
                    x = [float(r["rate_during_pages_s"]) * PAGE_BYTES / MIB for r in rs]
                    y = [float(r[col]) for r in rs]
                    mx, my = median(x), median(y)
                    if log and my <= 0:
                        continue  # an idle guest has no write latency to draw on a log axis
                    points.append((mx, my, mx - min(x), max(x) - mx, my - min(y), max(y) - my))
                # Joined in the order of the achieved rate, which a loaded machine may not keep
                # in the order of the target.
                points.sort()
                xs = [p[0] for p in points]
                ys = [p[1] for p in points]
                xerr = [[p[2] for p in points], [p[3] for p in points]]
                yerr = [[p[4] for p in points], [p[5] for p in points]]
                ax.errorbar(xs, ys, xerr=xerr, yerr=yerr, marker="o", ms=4, capsize=2,
                            linestyle=STYLES[workload], color=COLOURS.get(strategy, "black"),
                            label=f"{strategy} ({NAMES[workload]})")
            if log:
                ax.set_yscale("log")
            ax.set_xlabel("guest write rate achieved during the snapshot (MiB/s)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{pattern}: {col}")
            ax.grid(True, alpha=0.3)
            if pi == 0 and ci == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    for ext in ("png", "pdf"):
        fig.savefig(os.path.join(out_dir, f"qemu-vs-snapbench.{ext}"), dpi=110)
    plt.close(fig)


def fmt(v, digits=3):
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def summary(groups, other, out_dir):
    lines = ["# QEMU vs snapbench: medians per case", "",
             "Target and achieved rates in MiB/s (achieved: the guest's own count during the snapshot). "
             "`p99 before` is the same row's warm-up p99, its latency without a snapshot.", "",
             "| pattern | strategy | VMM | target | achieved | runs | image_ratio | duplicate_pages | "
             "completion_s | downtime_s | passes | p99 us | p99 before us | verified |",
             "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
    for k in sorted(groups, key=lambda k: (k[0], k[1], sort_target(k[3]), k[2])):
        rs = groups[k]
        med = {c: median([float(r[c]) for r in rs]) for c in
               ("rate_during_pages_s", "image_ratio", "duplicate_pages", "completion_s", "downtime_s",
                "passes", "write_p99_us", "write_before_p99_us")}
        verdicts = ",".join(sorted({r["verified"] for r in rs}))
        lines.append(f"| {k[0]} | {k[1]} | {NAMES[k[2]]} | {fmt(k[3])} | "
                     f"{med['rate_during_pages_s'] * PAGE_BYTES / MIB:.1f} | {len(rs)} | {med['image_ratio']:.3f} | "
                     f"{med['duplicate_pages']:.0f} | {med['completion_s']:.3f} | {med['downtime_s']:.3f} | "
                     f"{med['passes']:.0f} | {fmt(med['write_p99_us'])} | {fmt(med['write_before_p99_us'])} | "
                     f"{verdicts} |")
    if other:
        lines += ["", "Rows not ok:", ""]
        for (k, status), n in sorted(other.items(), key=lambda kv: str(kv[0])):
            lines.append(f"- {k[0]} {k[1]} {NAMES[k[2]]} target {fmt(k[3])}: {n} {status}")
    with open(os.path.join(out_dir, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    groups, other = cases(load(a.csv))
    if not groups:
        sys.exit(f"qemu_vs_snapbench.py: no ok rows of the kvm or qemu workload in {a.csv}")
    os.makedirs(a.out, exist_ok=True)
    plot(groups, a.out)
    summary(groups, other, a.out)
    print(f"wrote {a.out}/qemu-vs-snapbench.png, .pdf and summary.md ({sum(map(len, groups.values()))} ok rows)")


if __name__ == "__main__":
    main()
