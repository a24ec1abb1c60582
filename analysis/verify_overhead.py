#!/usr/bin/env python3
"""The verify-overhead table (issue 19): for each strategy[/tracker] and rate of a results CSV with a
verify axis (configs/verify-overhead.toml), the ratio of medians with --verify to without, for
completion_s and downtime_s, judged against the target: within 5 % or 2 ms, whichever is larger.

Usage: verify_overhead.py RESULTS.csv [--machine MACHINE.json] [--out TABLE.md]
Exit: 0 every supported case within the target, 1 a case outside it, 2 bad input.
Standard library only.
"""
import argparse
import json
import sys

from results_kit import median, num, read_csv

REL, ABS_S = 0.05, 0.002


def within(with_v, without_v):
    return abs(with_v - without_v) <= max(REL * without_v, ABS_S)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv")
    ap.add_argument("--machine", help="the host's `snapbench machine --json` (its line heads the table)")
    ap.add_argument("--out", help="write the markdown table here as well as to stdout")
    a = ap.parse_args(argv)
    rows = read_csv(a.csv)
    if not rows or "verified" not in rows[0]:
        print(f"verify_overhead.py: no results in {a.csv}", file=sys.stderr)
        return 2
    groups, unsupported = {}, {}
    for r in rows:
        name = r["strategy"] + (("/" + r["tracker"]) if r.get("tracker") else "")
        key = (name, r["rate"])
        if r["status"] == "unsupported":
            unsupported[name] = r["reason"]
            continue
        on = r["verified"] != "off"
        g = groups.setdefault(key, {True: [], False: [], "bad": []})
        if r["status"] != "ok" or (on and r["verified"] != "pass"):
            g["bad"].append(f"{r['status']} verified={r['verified']}: {r['reason']}")
            continue
        g[on].append(r)
    lines = []
    if a.machine:
        with open(a.machine) as f:
            m = json.load(f)
        lines.append(f"Machine: {m.get('host', '?')}, kernel {m.get('kernel', '?')}, {m.get('cpu_model', '?')}, "
                     f"/dev/kvm {'yes' if m.get('dev_kvm') else 'no'}; memcpy {m.get('memcpy_gb_s', '?')} GB/s, "
                     f"first touch {m.get('first_touch_us_per_page', '?')} us/page.")
        lines.append("")
    lines += ["| strategy | rate | reps (on/off) | completion_s on / off | ratio | downtime_s on / off | ratio | "
              "verifier time taken out (median) | within 5 % or 2 ms |",
              "|---|---|--:|--:|--:|--:|--:|--:|---|"]
    bad = 0
    for (name, rate), g in sorted(groups.items()):
        on, off = g[True], g[False]
        if g["bad"] or not on or not off:
            bad += 1
            lines.append(f"| {name} | {rate} | {len(on)}/{len(off)} | - | - | - | - | - | **no**: "
                         f"{'; '.join(g['bad']) or 'a side has no ok run'} |")
            continue
        c_on, c_off = median([num(r, "completion_s") for r in on]), median([num(r, "completion_s") for r in off])
        d_on, d_off = median([num(r, "downtime_s") for r in on]), median([num(r, "downtime_s") for r in off])
        taken = []
        for r in on:
            notes = dict(kv.split("=", 1) for kv in r.get("notes", "").split(";") if "=" in kv)
            taken.append(float(notes.get("verify_reference_s", 0)) + float(notes.get("verify_copy_s", 0)))
        ok = within(c_on, c_off) and within(d_on, d_off)
        bad += not ok
        lines.append(f"| {name} | {rate} | {len(on)}/{len(off)} | {c_on * 1e3:.1f} / {c_off * 1e3:.1f} ms | "
                     f"{c_on / c_off:.3f} | {d_on * 1e3:.2f} / {d_off * 1e3:.2f} ms | "
                     f"{(d_on / d_off) if d_off else float('nan'):.3f} | {median(taken) * 1e3:.0f} ms | "
                     f"{'yes' if ok else '**no**'} |")
    for name, reason in sorted(unsupported.items()):
        lines.append(f"| {name} | all | - | - | - | - | - | - | unsupported here: {reason} |")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
