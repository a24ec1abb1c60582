#!/usr/bin/env python3
"""The A/B regression gate's power (issue 22), measured on this machine with real code slowdowns.

Each slowdown is a patch in results/regression/slowdowns/ applied to this tree in a throwaway worktree
and built there (build-power/NAME/). One trial is one run of scripts/regression-check with the base,
this tree and every slowed binary interleaved run by run (--also), a seed of its own; then
  - this tree against its base: the gate's own verdict (a failure is a false alarm when the code is the
    base's, i.e. results/baseline/REVISION names this tree's code);
  - each slowed binary against the base, with the gate's settings (regression-check --current): exit 1
    is a detection; the strategies named REGRESSED are recorded.
Writes OUT/trials.csv (one line per trial and check) and OUT/power.md (the table).

Usage: regression_power.py [--trials N] [--first-trial K] [--out DIR] [--work DIR] [--only NAME,...]
Standard library only; run by scripts/regression-power.
"""
import argparse
import csv
import glob
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(cmd, **kw):
    return subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, **kw)


def build_variant(name, patch, work):
    """A worktree of HEAD with the patch applied, its snapbench built with ccache; returns the binary."""
    src, build = os.path.join(work, name, "src"), os.path.join(work, name, "build")
    head = sh(["git", "rev-parse", "HEAD"]).stdout.strip()
    stamp = os.path.join(work, name, "stamp")
    want = head + " " + str(os.path.getmtime(patch))
    if not (os.path.exists(stamp) and open(stamp).read() == want):
        sh(["git", "worktree", "remove", "--force", src])
        sh(["git", "worktree", "prune"])
        r = sh(["git", "worktree", "add", "--detach", "-f", src, head])
        if r.returncode:
            sys.exit(f"regression_power: cannot make a worktree for {name}: {r.stderr}")
        r = subprocess.run(["git", "apply", patch], cwd=src, text=True, capture_output=True)
        if r.returncode:
            sys.exit(f"regression_power: {patch} does not apply to HEAD: {r.stderr}")
    env = dict(os.environ, CCACHE_BASEDIR=src, CCACHE_NOHASHDIR="true")
    for cmd in (["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"],
                ["cmake", "--build", build, "--target", "snapbench", "-j", str(os.cpu_count() or 2)]):
        r = subprocess.run(cmd, text=True, capture_output=True, env=env)
        if r.returncode:
            sys.exit(f"regression_power: {name} does not build:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    open(stamp, "w").write(want)
    return os.path.join(build, "snapbench")


def regressed(text):
    """The case labels of the REGRESSED/BROKEN lines of a compare report."""
    out = []
    for line in text.splitlines():
        if line.rstrip().endswith(("REGRESSED", "BROKEN")):
            out.append(re.split(r"\s{2,}", line.strip())[0] + " " + re.split(r"\s{2,}", line.strip())[1])
    return out


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--first-trial", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "regression"))
    ap.add_argument("--work", default=os.path.join(ROOT, "build-power"))
    ap.add_argument("--only", help="comma-separated slowdown names (default: every patch)")
    a = ap.parse_args(argv)
    patches = sorted(glob.glob(os.path.join(ROOT, "results", "regression", "slowdowns", "*.patch")))
    if a.only:
        keep = set(a.only.split(","))
        patches = [p for p in patches if os.path.basename(p)[:-6] in keep]
    a.work = os.path.abspath(a.work)
    os.makedirs(a.work, exist_ok=True)
    gate = os.path.join(ROOT, "scripts", "regression-check")
    r = sh([gate, "--build-base-only"])
    if r.returncode:
        sys.exit(f"regression_power: the base does not build:\n{r.stderr}")
    base = r.stdout.strip().splitlines()[-1]
    head = os.path.join(ROOT, "build", "snapbench")
    if not os.access(head, os.X_OK):
        sys.exit("regression_power: build this tree first (scripts/build)")
    variants = [(os.path.basename(p)[:-6], build_variant(os.path.basename(p)[:-6], p, a.work)) for p in patches]
    trials_csv = os.path.join(a.out, "trials.csv")
    new = not os.path.exists(trials_csv) or a.first_trial == 0
    with open(trials_csv, "w" if new else "a", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        if new:
            w.writerow(["trial", "check", "exit", "seconds", "regressed", "uptime"])
        for t in range(a.first_trial, a.first_trial + a.trials):
            out = os.path.join(a.work, f"t{t}")
            env = dict(os.environ, REGRESSION_OUT=out, REGRESSION_SEED=str(1000 + t))
            cmd = [gate, "--base-bin", base, "--current-bin", head]
            for name, binary in variants:
                cmd += ["--also", f"{name}={binary}"]
            t0 = time.time()
            g = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, env=env)
            secs = time.time() - t0
            up = open("/proc/loadavg").read().split()[0]
            if g.returncode not in (0, 1):
                sys.exit(f"regression_power: trial {t}: the gate exited {g.returncode}:\n{g.stderr[-3000:]}")
            w.writerow([t, "unchanged", g.returncode, f"{secs:.0f}", "; ".join(regressed(g.stdout)), up])
            for name, _ in variants:
                c = sh([gate, "--current", os.path.join(out, name, "results.csv"),
                        "--baseline", os.path.join(out, "base", "results.csv")])
                w.writerow([t, name, c.returncode, "", "; ".join(regressed(c.stdout)), up])
            f.flush()
            print(f"regression_power: trial {t} done in {secs:.0f} s (gate exit {g.returncode})", file=sys.stderr)
    write_table(trials_csv, os.path.join(a.out, "power.md"), [n for n, _ in variants])
    return 0


def write_table(trials_csv, md, names):
    rows = list(csv.DictReader(open(trials_csv)))
    lines = ["| check | trials | detected (exit 1) | strategies named REGRESSED (trials naming each) |",
             "|---|--:|--:|---|"]
    for check in ["unchanged"] + names:
        rs = [r for r in rows if r["check"] == check]
        named = {}
        for r in rs:
            for label in {x.split(" (")[0] for x in r["regressed"].split("; ") if x}:
                named[label] = named.get(label, 0) + 1
        what = ", ".join(f"{k} {v}/{len(rs)}" for k, v in sorted(named.items())) or "-"
        hits = sum(r["exit"] == "1" for r in rs)
        label = "unchanged tree (false alarm)" if check == "unchanged" else check
        lines.append(f"| {label} | {len(rs)} | {hits}/{len(rs)} | {what} |")
    secs = [float(r["seconds"]) for r in rows if r["check"] == "unchanged" and r["seconds"]]
    if secs:
        lines.append("")
        lines.append(f"One trial ({2 + len(names)} binaries interleaved): {min(secs):.0f}-{max(secs):.0f} s.")
    open(md, "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
