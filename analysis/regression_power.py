#!/usr/bin/env python3
"""Measures the power of the CI regression gate (scripts/regression-check) on this machine.

For each trial: run configs/ci.toml on the unchanged tree and check it with exactly CI's settings
(`scripts/regression-check --current`): a failure is a false alarm. Then inject slowdowns into copies
of that run and check each copy the same way:
  * synthetic: one strategy's completion_s (and stop-copy's downtime_s, which is its whole save)
    multiplied by the factor in a copy of the clean CSV; the calibration column is left as measured
    (the machine did not change, the strategy did);
  * cap (real): the strategy's cases re-run with the sink's bandwidth cap (`--bandwidth`, a user-visible
    knob outside the strategies' code) set to the strategy's measured uncapped throughput / factor,
    the run's rows spliced into a copy of the clean CSV in place of the strategy's own rows, with
    bandwidth_bytes_s relabelled to the clean value so that the cases match the baseline. The
    realised slowdown (median completion capped / clean) is reported beside the nominal factor.
A slowdown counts as detected when the check exits 1 with a REGRESSED row of that strategy.
"everything" applies the factor to every strategy at once.

Usage: regression-power [--trials N] [--first-trial K] [--cap-trials M] [--factors 1.25,1.5,2] [--cap-factors F,...]
                        [--out DIR] [--work DIR] [--reuse]
Writes DIR/power.md (the table), DIR/trials.csv (one line per check) and DIR/uptime.txt.
"""
import argparse
import csv
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRATEGIES = ["stop-copy", "precopy", "uffd-wp", "fork-cow"]  # `none` has no snapshot to slow down


def sh(args, **kw):
    return subprocess.run(args, cwd=ROOT, text=True, capture_output=True, **kw)


def read(path):
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        return r.fieldnames, list(r)


def write(path, fields, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def run_matrix(spec_text, out_dir, binary, reuse=False):
    """Runs the spec into out_dir (or, with reuse, takes the results already there); returns the CSV
    and the seconds the matrix took (kept in out_dir/seconds)."""
    results = os.path.join(out_dir, "results.csv")
    if reuse and os.path.exists(results) and os.path.exists(os.path.join(out_dir, "seconds")):
        with open(os.path.join(out_dir, "seconds")) as f:
            return results, float(f.read())
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.time()
    spec = os.path.join(out_dir, "spec.toml")
    with open(spec, "w") as f:
        f.write(spec_text)
    res = sh([binary, "matrix", spec, "--out", out_dir, "-q"])
    if res.returncode not in (0, 1):
        sys.exit(f"regression-power: matrix failed ({res.returncode}): {res.stderr.strip()}")
    seconds = time.time() - t0
    with open(os.path.join(out_dir, "seconds"), "w") as f:
        f.write(f"{seconds:.1f}\n")
    return results, seconds


def spec_for(base_spec, strategy, bandwidth):
    """configs/ci.toml with one strategy on the strategy axis and the bandwidth cap set."""
    lines = []
    for line in base_spec.splitlines():
        if line.startswith("strategy ="):
            line = f'strategy = ["{strategy}"]'
        elif line.startswith("bandwidth ="):
            line = f'bandwidth = "{int(bandwidth)}"'
        lines.append(line)
    return "\n".join(lines) + "\n"


def check(csv_path):
    """scripts/regression-check --current: (exit code, strategies with a REGRESSED row)."""
    res = sh(["scripts/regression-check", "--current", csv_path])
    regressed = set()
    for line in res.stdout.splitlines():
        if "REGRESSED" in line and not line.startswith("compare:"):
            regressed.add(line.split()[0].split("/")[0])
    return res.returncode, regressed, res.stdout


def ok_rows(rows, strategy):
    return [r for r in rows if r["strategy"] == strategy and r["status"] == "ok"]


def scaled(rows, strategies, factor):
    out = []
    for r in rows:
        r = dict(r)
        if r["strategy"] in strategies and r["status"] == "ok":
            r["completion_s"] = f"{float(r['completion_s']) * factor:.9g}"
            if r["strategy"] == "stop-copy":
                r["downtime_s"] = f"{float(r['downtime_s']) * factor:.9g}"
        out.append(r)
    return out


def median_completion_by_case(rows, strategy):
    cases = {}
    for r in ok_rows(rows, strategy):
        key = (r["tracker"], r["rate"], r["pattern"])
        cases.setdefault(key, []).append(float(r["completion_s"]))
    return {k: statistics.median(v) for k, v in cases.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--first-trial", type=int, default=0,
                    help="start at this trial's work directory (e.g. 1 when trial 0's run became the baseline)")
    ap.add_argument("--cap-trials", type=int, default=10, help="the last M trials also run the real (cap) injections")
    ap.add_argument("--factors", default="1.25,1.5,2")
    ap.add_argument("--cap-factors", default=None, help="factors of the real (cap) injections (default: --factors)")
    ap.add_argument("--out", default="results/regression")
    ap.add_argument("--work", default="out/regression-power")
    ap.add_argument("--reuse", action="store_true",
                    help="re-check the matrix runs already in --work (e.g. after changing the gate's settings) instead of running them")
    args = ap.parse_args()
    factors = [float(f) for f in args.factors.split(",")]
    cap_factors = [float(f) for f in args.cap_factors.split(",")] if args.cap_factors else factors
    binary = os.environ.get("SNAPBENCH_BIN", "build/snapbench")
    out = os.path.join(ROOT, args.out)
    work = os.path.join(ROOT, args.work)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(ROOT, "configs/ci.toml")) as f:
        base_spec = f.read()

    log = []  # (trial, mode, target, factor, rc, detected, realised, seconds, regressed)
    uptimes = [sh(["uptime"]).stdout.strip()]
    started = time.time()
    for trial in range(args.first_trial, args.trials):
        clean, matrix_s = run_matrix(base_spec, os.path.join(work, f"t{trial}", "clean"), binary, args.reuse)
        t1 = time.time()
        rc, reg, text = check(clean)
        check_s = time.time() - t1
        log.append((trial, "clean", "-", 1.0, rc, rc == 1, 1.0, matrix_s + check_s, ";".join(sorted(reg))))
        if rc not in (0, 1):
            sys.exit(f"regression-power: check of {clean} failed to run:\n{text}")
        fields, rows = read(clean)
        for factor in factors:
            for target in STRATEGIES + ["everything"]:
                group = STRATEGIES if target == "everything" else [target]
                path = os.path.join(work, f"t{trial}", f"synthetic-{target}-{factor}.csv")
                write(path, fields, scaled(rows, group, factor))
                rc, reg, _ = check(path)
                detected = rc == 1 and any(s in reg for s in group)
                log.append((trial, "synthetic", target, factor, rc, detected, factor, 0, ";".join(sorted(reg))))
        if trial >= args.trials - args.cap_trials:
            for factor in cap_factors:
                capped_rows = {}
                realised = {}
                for s in STRATEGIES:
                    srows = ok_rows(rows, s)
                    tput = statistics.median(float(r["image_bytes"]) / float(r["completion_s"]) for r in srows)
                    cap = tput / factor
                    path, _ = run_matrix(spec_for(base_spec, s, cap), os.path.join(work, f"t{trial}", f"cap-{s}-{factor}"),
                                         binary, args.reuse)
                    _, crows = read(path)
                    for r in crows:
                        r["bandwidth_bytes_s"] = rows[0]["bandwidth_bytes_s"]  # relabel: the baseline's case key
                    capped_rows[s] = crows
                    before, after = median_completion_by_case(rows, s), median_completion_by_case(crows, s)
                    ratios = [after[k] / before[k] for k in before if k in after]
                    realised[s] = statistics.median(ratios) if ratios else float("nan")
                for target in STRATEGIES + ["everything"]:
                    group = STRATEGIES if target == "everything" else [target]
                    spliced = [r for r in rows if r["strategy"] not in group]
                    for s in group:
                        spliced += capped_rows[s]
                    path = os.path.join(work, f"t{trial}", f"cap-{target}-{factor}.csv")
                    write(path, fields, spliced)
                    rc, reg, _ = check(path)
                    detected = rc == 1 and any(s in reg for s in group)
                    real = statistics.median(realised[s] for s in group)
                    log.append((trial, "cap", target, factor, rc, detected, real, 0, ";".join(sorted(reg))))
        uptimes.append(sh(["uptime"]).stdout.strip())
        print(f"trial {trial}, {trial + 1 - args.first_trial} of {args.trials - args.first_trial} done after {time.time() - started:.0f} s "
              f"(matrix {matrix_s:.0f} s, check {check_s:.1f} s); {uptimes[-1]}", flush=True)

        report(out, log, uptimes, factors, trial + 1 - args.first_trial)


def report(out, log, uptimes, factors, trials_done):
    with open(os.path.join(out, "trials.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["trial", "mode", "target", "factor", "exit", "detected", "realised_slowdown", "seconds", "regressed"])
        for row in log:
            w.writerow([row[0], row[1], row[2], row[3], row[4], int(row[5]), f"{row[6]:.3g}", f"{row[7]:.1f}", row[8]])
    with open(os.path.join(out, "uptime.txt"), "w") as f:
        f.write("\n".join(uptimes) + "\n")

    # The table: false alarms, then detection per mode, target and factor.
    clean = [r for r in log if r[1] == "clean"]
    md = ["| check | runs | failed (exit 1) | rate |", "|---|--:|--:|--:|"]
    fa = sum(r[4] == 1 for r in clean)
    md.append(f"| unchanged tree (false alarm) | {len(clean)} | {fa} | {fa}/{len(clean)} |")
    md.append("")
    md.append("| injection | strategy | " + " | ".join(f"{f:g}x detected" for f in factors) + " |")
    md.append("|---|---|" + "--:|" * len(factors))
    for mode in ("synthetic", "cap"):
        for target in STRATEGIES + ["everything"]:
            cells = []
            for factor in factors:
                rs = [r for r in log if r[1] == mode and r[2] == target and r[3] == factor]
                if not rs:
                    cells.append("-")
                    continue
                det = sum(r[5] for r in rs)
                text = f"{det}/{len(rs)}"
                if mode == "cap":
                    text += f" (realised {statistics.median(r[6] for r in rs):.2f}x)"
                cells.append(text)
            md.append(f"| {mode} | {target} | " + " | ".join(cells) + " |")
    secs = [r[7] for r in clean]
    md.append("")
    md.append(f"CI check (matrix + compare) per trial: median {statistics.median(secs):.0f} s, max {max(secs):.0f} s.")
    md.append(f"Trials completed: {trials_done}.")
    with open(os.path.join(out, "power.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md), flush=True)



if __name__ == "__main__":
    main()
