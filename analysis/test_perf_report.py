#!/usr/bin/env python3
"""Tests of perf_report.py (plain unittest, standard library only): the committed report is what the
script makes of the committed data, and the uffd-wp stall table matches each fault path to its micro
round trip (sigbus included) and lists runs that failed."""
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPORT = os.path.join(HERE, "perf_report.py")
COMMITTED = os.path.join(os.path.dirname(HERE), "results", "perf")
COLUMNS = ["strategy", "tracker", "rate", "rep", "region_bytes", "params", "status", "reason", "completion_s",
           "write_p50_us", "write_p99_us", "write_p999_us", "write_max_us", "write_before_p99_us", "faults",
           "writes_during", "notes"]


def run(out, *provenance):
    args = list(provenance) or ["T", "0.1 0.1 0.1", "0.2 0.2 0.2", "0", "sha", "kernel", "3"]
    return subprocess.run([sys.executable, REPORT, out] + args, capture_output=True, text=True)


def stall_row(wait, p99, status="ok"):
    return {"strategy": "uffd-wp", "tracker": "", "rate": "256MiB/s", "rep": "0", "region_bytes": str(2 << 30),
            "params": "uffd-wp.fault_wait=%s" % wait, "status": status, "reason": "boom" if status != "ok" else "",
            "completion_s": "1.5", "write_p50_us": "0.02", "write_p99_us": str(p99), "write_p999_us": "70",
            "write_max_us": "900", "write_before_p99_us": "0.8", "faults": "100", "writes_during": "1000",
            "notes": "fault_wait=%s" % wait}


class PerfReportTest(unittest.TestCase):
    def test_committed_report_is_regenerated_from_committed_data(self):
        with open(os.path.join(COMMITTED, "report.md")) as f:
            committed = f.read()
        m = re.search(r"^Measured (\S+), git (\S+), kernel (\S+), (default|quick \(min_time 0.05 s\)) micro-benchmarks; "
                      r"load average (.+) at the start, (.+) at the end\.$", committed, re.M)
        self.assertIsNotNone(m, "no provenance line in the committed report")
        reps = re.search(r"^## Scaling sweep, idle writers \(median of (\d+) repetitions", committed, re.M)
        self.assertIsNotNone(reps)
        p = run(COMMITTED, m.group(1), m.group(5), m.group(6), "1" if m.group(4) != "default" else "0",
                m.group(2), m.group(3), reps.group(1))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines(), committed.splitlines())

    def test_stall_table_matches_each_fault_path_to_its_round_trip(self):
        with tempfile.TemporaryDirectory() as out:
            micro = {"benchmarks": [
                {"name": "BM_WpFaultRoundTrip/read_copy_aside/manual_time", "run_type": "iteration",
                 "ns_per_fault": 80000, "p50_ns": 70000, "p99_ns": 180000},
                {"name": "BM_WpFaultRoundTrip/sigbus_copy_aside/manual_time", "run_type": "iteration",
                 "ns_per_fault": 6000, "p50_ns": 5000, "p99_ns": 10000}]}
            with open(os.path.join(out, "micro.json"), "w") as f:
                json.dump(micro, f)
            with open(os.path.join(out, "harness.csv"), "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
                w.writeheader()
                for r in (stall_row("read", 200), stall_row("sigbus", 20), stall_row("sigbus", 0, status="failed")):
                    w.writerow(r)
            p = run(out)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        header = next(l for l in lines if l.startswith("| rep | fault_wait |"))
        self.assertIn("write_p999_us", header)
        sigbus = [l for l in lines if l.startswith("| 0 | sigbus |")]
        self.assertEqual(len(sigbus), 1, p.stdout)
        cells = [c.strip() for c in sigbus[0].strip("|").split("|")]
        cols = [c.strip() for c in header.strip("|").split("|")]
        self.assertEqual(cells[cols.index("write_p999_us")], "70")
        self.assertEqual(cells[cols.index("micro round trip")], "sigbus_copy_aside")
        self.assertEqual(cells[cols.index("micro p50_us")], "5")
        self.assertEqual(cells[cols.index("p99 / micro p50")], "4")
        self.assertIn("sigbus_copy_aside: mean / p50 / p99 | 6 / 5 / 10", p.stdout)
        self.assertIn("## Runs that did not succeed", p.stdout)
        self.assertIn("boom", p.stdout)

    def test_wrong_arguments_are_refused(self):
        p = subprocess.run([sys.executable, REPORT, "only-one"], capture_output=True, text=True)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("usage", p.stderr)


if __name__ == "__main__":
    unittest.main()
