#!/usr/bin/env python3
"""Medians of a results CSV per case, showing only the parameters that tell the cases apart.

For comparing one strategy's design alternatives (a matrix with parameter axes such as
configs/uffd-wp-variants.toml): prints a markdown table with one row per case (strategy, tracker,
rate, size and every `params` entry that is not the same in all rows), the number of finished
repetitions and the median of each metric. Metrics are CSV columns or `notes` keys.

  analysis/variants.py RESULTS.csv [--metrics completion_s,write_p99_us,unprotect_s] [--out FILE]

Needs only the Python standard library.
"""
import argparse
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from results_kit import keyed as split_kv, median  # noqa: E402

DEFAULT_METRICS = "completion_s,freeze_s,write_p50_us,write_p99_us,write_max_us,faults,extra_rss_bytes"


def fmt(v):
    if v is None:
        return "n/a"
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
        return "%.3g" % v
    return "%.4g" % v


def metric(row, name):
    text = row.get(name)
    if text is None:
        text = split_kv(row.get("notes", "")).get(name)
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="a snapbench results CSV")
    ap.add_argument("--metrics", default=DEFAULT_METRICS,
                    help="comma-separated CSV columns or notes keys (default: %(default)s)")
    ap.add_argument("--out", help="also write the table to this file")
    args = ap.parse_args(argv)
    try:
        with open(args.results, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        print("variants.py: cannot read %s: %s" % (args.results, e), file=sys.stderr)
        return 2
    if not rows:
        print("variants.py: %s has no rows" % args.results, file=sys.stderr)
        return 2
    missing = [c for c in ("strategy", "tracker", "rate", "region_bytes", "params", "status") if c not in rows[0]]
    if missing:
        print("variants.py: %s lacks column(s) %s" % (args.results, ", ".join(missing)), file=sys.stderr)
        return 2
    metrics = [m for m in args.metrics.split(",") if m]

    # The params entries that differ somewhere tell the cases apart; the others are left out.
    parsed = [split_kv(r["params"]) for r in rows]
    keys = sorted({k for p in parsed for k in p})
    # (an entry only some strategies have does not vary by itself: it is part of the strategy)
    varying = [k for k in keys if len({p[k] for p in parsed if k in p}) > 1]
    fixed_cols = [c for c in ("strategy", "tracker", "rate", "region_bytes") if len({r[c] for r in rows}) > 1]

    cases = {}
    for r, p in zip(rows, parsed):
        key = tuple(r[c] for c in fixed_cols) + tuple(p.get(k, "") for k in varying)
        cases.setdefault(key, []).append(r)

    header = fixed_cols + varying + ["ok reps"] + metrics
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for key, rs in cases.items():
        ok = [r for r in rs if r["status"] == "ok"]
        cells = list(key) + ["%d/%d" % (len(ok), len(rs))]
        for m in metrics:
            cells.append(fmt(median([v for v in (metric(r, m) for r in ok) if v is not None])))
        lines.append("| " + " | ".join(cells) + " |")
    same = {k: next(p[k] for p in parsed if k in p) for k in keys if k not in varying}
    text = "\n".join(lines)
    text += "\n\nMedians over the finished repetitions of each case. Same in every row: " + (
        "; ".join("%s=%s" % kv for kv in sorted(same.items())) or "nothing else") + "."
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
