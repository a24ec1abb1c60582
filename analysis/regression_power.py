#!/usr/bin/env python3
"""Measures the power of the CI regression gate (scripts/regression-check) on this machine.

For each trial: run configs/ci.toml on the unchanged tree and check it with exactly CI's settings
(`scripts/regression-check --current`): a failure is a false alarm. Then inject slowdowns into copies
of that run and check each copy the same way:
  * synthetic: one strategy's completion_s (and stop-copy's downtime_s, which is its whole save)
    multiplied by the factor in a copy of the clean CSV; the calibration column is left as measured
    (the machine did not change, the strategy did);
  * cap (real): each of the strategy's cases re-run with the sink's bandwidth cap (`--bandwidth`, a
    user-visible knob outside the strategies' code) set so that the case takes `factor` times its
    baseline time, the rows spliced into a copy of the clean CSV in place of the strategy's own rows,
    with bandwidth_bytes_s relabelled to the clean value so that the cases match the baseline. The cap
    of each case comes from a pilot run once before the trials (work/caps.json): at cap1 = image /
    (factor x baseline completion) a case takes c1 = a + image/cap1, where a is the time outside the
    capped copy; so cap = image / (factor x baseline completion - a) makes it take factor x its
    baseline time. The realised slowdown (median completion capped / the same trial's clean, median
    over the strategy's cases) is reported beside the nominal factor.
A slowdown counts as detected when the check exits 1 with a REGRESSED row of that strategy.
"everything" applies the factor to every strategy at once.

Usage: regression-power [--trials N] [--first-trial K] [--cap-trials M] [--factors 1.25,1.5,2] [--cap-factors F,...]
                        [--report-first K] [--out DIR] [--work DIR] [--reuse]
Trials K..N-1 run now; the report covers every trial in --report-first..N-1 found in the work directory
(each keeps its checks in WORK/tN/checks.csv), so a long measurement can be run in chunks.
Writes DIR/power.md (the table), DIR/trials.csv (one line per check) and DIR/uptime.txt.
"""
import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRATEGIES = ["stop-copy", "precopy", "uffd-wp", "fork-cow"]  # `none` has no snapshot to slow down
LOG_FIELDS = ["trial", "mode", "target", "factor", "exit", "detected", "realised_slowdown", "seconds", "regressed"]


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
    if os.path.exists(results):
        os.remove(results)
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


def case_key(r):
    return (r["strategy"], r["tracker"], r["rate"], r["pattern"])


def spec_for_case(base_spec, case, bandwidth, reps=None):
    """configs/ci.toml reduced to one case (strategy, tracker, rate, pattern) with the bandwidth cap set."""
    strategy, tracker, rate, pattern = case
    lines = []
    for line in base_spec.splitlines():
        if line.startswith("strategy ="):
            line = f'strategy = ["{strategy}"]'
        elif line.startswith("tracker ="):
            line = f'tracker = ["{tracker or "uffd-async"}"]'  # dropped for a strategy without a tracker
        elif line.startswith("rate ="):
            line = f'rate = ["{rate}"]'
        elif line.startswith("pattern ="):
            line = f'pattern = ["{pattern}"]'
        elif line.startswith("bandwidth ="):
            line = f'bandwidth = "{int(bandwidth)}"'
        elif line.startswith("reps =") and reps:
            line = f"reps = {reps}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def check(csv_path):
    """scripts/regression-check --current: (exit code, strategies with a REGRESSED row, output)."""
    res = sh(["scripts/regression-check", "--current", csv_path])
    regressed = set()
    for line in res.stdout.splitlines():
        if "REGRESSED" in line and not line.startswith("compare:"):
            regressed.add(line.split()[0].split("/")[0])
    return res.returncode, regressed, res.stdout


def ok_cases(rows, strategy):
    """The strategy's cases with at least one ok repetition: case -> its ok rows."""
    cases = {}
    for r in rows:
        if r["strategy"] == strategy and r["status"] == "ok":
            cases.setdefault(case_key(r), []).append(r)
    return cases


def med(rows, column):
    return statistics.median(float(r[column]) for r in rows)


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


def pilot_caps(base_spec, baseline_csv, factors, work, binary, reps=3):
    """Per case and factor the cap that makes the case take factor x its baseline completion (see the
    module's doc), from one pilot run per case at the naive cap; kept in work/caps.json."""
    path = os.path.join(work, "caps.json")
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        if all(str(f) in saved.get("factors", []) for f in factors):
            return saved
    _, base_rows = read(baseline_csv)
    caps = {"factors": [str(f) for f in factors], "caps": {}, "pilot": {}}
    for s in STRATEGIES:
        for case, rows in sorted(ok_cases(base_rows, s).items()):
            c0, image0 = med(rows, "completion_s"), med(rows, "image_bytes")
            for factor in factors:
                cap1 = image0 / (factor * c0)
                out_dir = os.path.join(work, "pilot", "-".join(x.replace("/", "_").replace(":", "_") for x in case if x) + f"-{factor}")
                res, _ = run_matrix(spec_for_case(base_spec, case, cap1, reps), out_dir, binary)
                _, prow = read(res)
                prow = [r for r in prow if r["status"] == "ok"]
                c1, image1 = med(prow, "completion_s"), med(prow, "image_bytes")
                outside = c1 - image1 / cap1  # the time not spent in the capped copy
                left = max(factor * c0 - outside, 0.25 * factor * c0)
                cap = image1 / left
                key = "|".join(case)
                caps["caps"].setdefault(key, {})[str(factor)] = cap
                caps["pilot"].setdefault(key, {})[str(factor)] = {"baseline_s": c0, "naive_cap": cap1, "naive_s": c1,
                                                                  "naive_realised": c1 / c0, "cap": cap}
                print(f"pilot {key} x{factor}: naive cap {cap1 / 2**20:.0f} MiB/s realised {c1 / c0:.2f}x -> "
                      f"cap {cap / 2**20:.0f} MiB/s", flush=True)
    os.makedirs(work, exist_ok=True)
    with open(path, "w") as f:
        json.dump(caps, f, indent=1)
    return caps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10, help="run trials up to N-1")
    ap.add_argument("--first-trial", type=int, default=0, help="start at this trial (to run the trials in chunks)")
    ap.add_argument("--cap-trials", type=int, default=10, help="the last M trials also run the real (cap) injections")
    ap.add_argument("--factors", default="1.25,1.5,2")
    ap.add_argument("--cap-factors", default="1.5", help="factors of the real (cap) injections")
    ap.add_argument("--report-first", type=int, default=0, help="the first trial the report covers")
    ap.add_argument("--baseline", default=os.environ.get("REGRESSION_BASELINE", "results/baseline/ci.csv"),
                    help="the baseline the gate compares with (the pilot's reference times)")
    ap.add_argument("--out", default="results/regression")
    ap.add_argument("--work", default="out/regression-power")
    ap.add_argument("--reuse", action="store_true",
                    help="re-check the matrix runs already in --work (e.g. after changing the gate's settings) instead of running them")
    args = ap.parse_args()
    factors = [float(f) for f in args.factors.split(",")]
    cap_factors = [float(f) for f in args.cap_factors.split(",")] if args.cap_factors else []
    binary = os.environ.get("SNAPBENCH_BIN", "build/snapbench")
    out = os.path.join(ROOT, args.out)
    work = os.path.join(ROOT, args.work)
    os.makedirs(out, exist_ok=True)
    os.makedirs(work, exist_ok=True)
    with open(os.path.join(ROOT, "configs/ci.toml")) as f:
        base_spec = f.read()

    started = time.time()
    caps = None
    for trial in range(args.first_trial, args.trials):
        tdir = os.path.join(work, f"t{trial}")
        log = []
        uptime_before = sh(["uptime"]).stdout.strip()
        clean, matrix_s = run_matrix(base_spec, os.path.join(tdir, "clean"), binary, args.reuse)
        t1 = time.time()
        rc, reg, text = check(clean)
        check_s = time.time() - t1
        log.append((trial, "clean", "-", 1.0, rc, rc == 1, 1.0, matrix_s + check_s, ";".join(sorted(reg))))
        if rc not in (0, 1):
            sys.exit(f"regression-power: check of {clean} failed to run:\n{text}")
        with open(os.path.join(tdir, "check.txt"), "w") as f:
            f.write(text)
        fields, rows = read(clean)
        for factor in factors:
            for target in STRATEGIES + ["everything"]:
                group = STRATEGIES if target == "everything" else [target]
                path = os.path.join(tdir, f"synthetic-{target}-{factor}.csv")
                write(path, fields, scaled(rows, group, factor))
                rc, reg, _ = check(path)
                detected = rc == 1 and any(s in reg for s in group)
                log.append((trial, "synthetic", target, factor, rc, detected, factor, 0, ";".join(sorted(reg))))
        if trial >= args.trials - args.cap_trials and cap_factors:
            if caps is None:
                caps = pilot_caps(base_spec, os.path.join(ROOT, args.baseline), cap_factors, work, binary)
            for factor in cap_factors:
                capped_rows, realised = {}, {}
                for s in STRATEGIES:
                    capped_rows[s], ratios = [], []
                    for case, crows_clean in sorted(ok_cases(rows, s).items()):
                        cap = caps["caps"]["|".join(case)][str(factor)]
                        name = "-".join(x.replace("/", "_").replace(":", "_") for x in case if x)
                        path, _ = run_matrix(spec_for_case(base_spec, case, cap), os.path.join(tdir, f"cap-{factor}", name),
                                             binary, args.reuse)
                        _, crows = read(path)
                        for r in crows:
                            r["bandwidth_bytes_s"] = rows[0]["bandwidth_bytes_s"]  # relabel: the baseline's case key
                        capped_rows[s] += crows
                        ok = [r for r in crows if r["status"] == "ok"]
                        if ok:
                            ratios.append(med(ok, "completion_s") / med(crows_clean, "completion_s"))
                    realised[s] = statistics.median(ratios) if ratios else float("nan")
                for target in STRATEGIES + ["everything"]:
                    group = STRATEGIES if target == "everything" else [target]
                    spliced = [r for r in rows if r["strategy"] not in group]
                    for s in group:
                        spliced += capped_rows[s]
                    path = os.path.join(tdir, f"cap-{target}-{factor}.csv")
                    write(path, fields, spliced)
                    rc, reg, _ = check(path)
                    detected = rc == 1 and any(s in reg for s in group)
                    real = statistics.median(realised[s] for s in group)
                    log.append((trial, "cap", target, factor, rc, detected, real, 0, ";".join(sorted(reg))))
        uptime_after = sh(["uptime"]).stdout.strip()
        with open(os.path.join(tdir, "checks.csv"), "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(LOG_FIELDS)
            for row in log:
                w.writerow([row[0], row[1], row[2], row[3], row[4], int(row[5]), f"{row[6]:.3g}", f"{row[7]:.1f}", row[8]])
        with open(os.path.join(tdir, "uptime.txt"), "w") as f:
            f.write(f"trial {trial} start: {uptime_before}\ntrial {trial} end:   {uptime_after}\n")
        print(f"trial {trial}, {trial + 1 - args.first_trial} of {args.trials - args.first_trial} done after {time.time() - started:.0f} s "
              f"(matrix {matrix_s:.0f} s, check {check_s:.1f} s); {uptime_after}", flush=True)
    report(out, work, args.report_first, args.trials, factors, cap_factors)


def report(out, work, first, last, factors, cap_factors):
    log, uptimes = [], []
    for trial in range(first, last):
        path = os.path.join(work, f"t{trial}", "checks.csv")
        if not os.path.exists(path):
            continue
        _, rows = read(path)
        log += rows
        with open(os.path.join(work, f"t{trial}", "uptime.txt")) as f:
            uptimes.append(f.read().rstrip())
    if not log:
        sys.exit("regression-power: no trial to report")
    write(os.path.join(out, "trials.csv"), LOG_FIELDS, log)
    with open(os.path.join(out, "uptime.txt"), "w") as f:
        f.write("\n".join(uptimes) + "\n")

    clean = [r for r in log if r["mode"] == "clean"]
    md = ["| check | runs | failed (exit 1) | rate |", "|---|--:|--:|--:|"]
    fa = sum(r["exit"] == "1" for r in clean)
    md.append(f"| unchanged tree (false alarm) | {len(clean)} | {fa} | {fa}/{len(clean)} |")
    md.append("")
    all_factors = sorted(set(factors) | set(cap_factors))
    md.append("| injection | strategy | " + " | ".join(f"{f:g}x detected" for f in all_factors) + " |")
    md.append("|---|---|" + "--:|" * len(all_factors))
    for mode in ("synthetic", "cap"):
        for target in STRATEGIES + ["everything"]:
            cells = []
            for factor in all_factors:
                rs = [r for r in log if r["mode"] == mode and r["target"] == target and float(r["factor"]) == factor]
                if not rs:
                    cells.append("-")
                    continue
                text = f"{sum(int(r['detected']) for r in rs)}/{len(rs)}"
                if mode == "cap":
                    real = [float(r["realised_slowdown"]) for r in rs]
                    text += f" (realised {statistics.median(real):.2f}x, {min(real):.2f}-{max(real):.2f})"
                cells.append(text)
            md.append(f"| {mode} | {target} | " + " | ".join(cells) + " |")
    secs = [float(r["seconds"]) for r in clean]
    md.append("")
    md.append(f"CI check (matrix + compare) per trial: median {statistics.median(secs):.0f} s, max {max(secs):.0f} s.")
    md.append(f"Trials: {len(clean)} ({', '.join('t' + r['trial'] for r in clean)}).")
    with open(os.path.join(out, "power.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md), flush=True)


if __name__ == "__main__":
    main()
