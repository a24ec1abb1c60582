#!/usr/bin/env python3
"""uffd-wp's three targets (issue 23) as ratios to the primitives of the machine the runs were taken on.

Reads the results CSVs of configs/uffd-wp-release.toml and configs/uffd-wp-release-2g.toml and that
host's `snapbench machine --json`, and prints, for each uffd-wp.release value, the median of each
figure beside its target:

  idle GB/s / memcpy GB/s (1 and 2 GiB, 1 writer)                          >= 0.6
  writer p99 at 256 MiB/s (1 GiB, 2 writers) / bare SIGBUS round trip p99  <= 2.5
  completion at 200 MiB/s / idle completion (1 GiB, 1 writer)              <= 1.5

and, beside the first, the floor the machine sets for any design that write-protects 4 KiB pages:
one copy, one whole-range arm and one whole-range release per page (memcpy, wp_arm_us_per_page,
unprotect_all_us_per_page of the profile).

Usage: uffd_wp_targets.py MACHINE.json RESULTS.csv... [--out TABLE.md]
Exit: 0 the table was made (whether or not a target is met: the table says), 2 bad input.
Standard library only.
"""
import argparse
import json
import sys

from results_kit import keyed, median, num, read_csv

GiB = float(1 << 30)
PAGE = 4096.0


def fmt(v, digits=3):
    return "n/a" if v is None else "%.*g" % (digits, v)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("machine")
    ap.add_argument("csv", nargs="+")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    try:
        with open(a.machine) as f:
            prof = json.load(f)
    except (OSError, ValueError) as e:
        print(f"uffd_wp_targets.py: cannot read the machine profile {a.machine}: {e}", file=sys.stderr)
        return 2
    rows = [r for path in a.csv for r in read_csv(path) if r.get("strategy") == "uffd-wp"]
    if not rows:
        print("uffd_wp_targets.py: no uffd-wp rows in " + " ".join(a.csv), file=sys.stderr)
        return 2
    memcpy = prof.get("memcpy_gb_s")
    bare_p99 = prof.get("wp_fault_sigbus_p99_us")
    arm, unprot = prof.get("wp_arm_us_per_page"), prof.get("unprotect_all_us_per_page")

    def pick(release, mem_gib, rate, writers):
        return [r for r in rows if r["status"] == "ok" and keyed(r["params"]).get("uffd-wp.release", "chunk") == release
                and num(r, "region_bytes") == mem_gib * GiB and r["rate"] == rate and int(r["writers"]) == writers]

    def med(rs, col):
        vs = [num(r, col) for r in rs]
        return median([v for v in vs if v is not None]) if vs else None

    def ratio(x, y):
        return None if x is None or not y else x / y

    failed = [r for r in rows if r["status"] != "ok" or r.get("verified") not in ("pass", "off")]
    releases = sorted({keyed(r["params"]).get("uffd-wp.release", "chunk") for r in rows})
    out = []
    out.append("Machine: %s, kernel %s, %s, %s cores, /dev/kvm %s; profile measured %s." % (
        prof.get("host"), prof.get("kernel"), prof.get("cpu_model"), prof.get("cores"),
        "yes" if prof.get("dev_kvm") else "no", prof.get("measured_utc")))
    out.append("Primitives: memcpy %s GB/s; SIGBUS WP round trip p99 %s us; whole-range arm %s us/page, "
               "whole-range release %s us/page; un-protect 64 pages per call %s us/page.\n" % (
                   fmt(memcpy), fmt(bare_p99), fmt(arm), fmt(unprot), fmt(prof.get("unprotect_64_us_per_page"))))
    floor_gbps = None
    if memcpy and arm is not None and unprot is not None:
        per_page_s = PAGE / (memcpy * 1e9) + (arm + unprot) * 1e-6
        floor_gbps = PAGE / per_page_s / 1e9
    out.append("| release | figure | median | machine's primitive | ratio | target | met |")
    out.append("|---|---|---|---|---|---|---|")
    for rel in releases:
        for gib in (1, 2):
            rs = pick(rel, gib, "0", 1)
            c = med(rs, "completion_s")
            gbps = None if not c else gib * GiB / c / 1e9
            r = ratio(gbps, memcpy)
            out.append("| %s | idle %d GiB, 1 writer: GB/s (n=%d) | %s | memcpy %s GB/s (floor of copy+arm+release: %s GB/s = %s x memcpy) | %s | >= 0.6 | %s |" % (
                rel, gib, len(rs), fmt(gbps), fmt(memcpy), fmt(floor_gbps), fmt(ratio(floor_gbps, memcpy)), fmt(r),
                "n/a" if r is None else ("yes" if r >= 0.6 else "no")))
        rs = pick(rel, 1, "256MiB/s", 2)
        p99 = med(rs, "write_p99_us")
        r = ratio(p99, bare_p99)
        out.append("| %s | 256 MiB/s, 1 GiB, 2 writers: write_p99_us (n=%d) | %s | SIGBUS round trip p99 %s us | %s | <= 2.5 | %s |" % (
            rel, len(rs), fmt(p99), fmt(bare_p99), fmt(r), "n/a" if r is None else ("yes" if r <= 2.5 else "no")))
        busy, idle = med(pick(rel, 1, "200MiB/s", 1), "completion_s"), med(pick(rel, 1, "0", 1), "completion_s")
        r = ratio(busy, idle)
        out.append("| %s | 200 MiB/s vs idle, 1 GiB, 1 writer: completion_s | %s vs %s | (its own idle run) | %s | <= 1.5 | %s |" % (
            rel, fmt(busy), fmt(idle), fmt(r), "n/a" if r is None else ("yes" if r <= 1.5 else "no")))
    out.append("\nRuns: %d uffd-wp rows; not ok or not verified: %d%s." % (
        len(rows), len(failed), "" if not failed else " (" + "; ".join(
            "%s %s: %s" % (r["rate"], r["status"], r.get("reason") or r.get("verified")) for r in failed[:5]) + ")"))
    text = "\n".join(out)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
