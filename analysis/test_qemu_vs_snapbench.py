#!/usr/bin/env python3
"""Tests of qemu_vs_snapbench.py on a small synthetic CSV (plain unittest; needs matplotlib).

Run: `$(analysis/find_python.sh) analysis/test_qemu_vs_snapbench.py`.
"""
import csv
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "qemu_vs_snapbench.py")
COLUMNS = ["workload", "strategy", "pattern", "status", "rate_target_pages_s", "rate_during_pages_s",
           "image_ratio", "completion_s", "write_p99_us", "write_before_p99_us", "duplicate_pages",
           "downtime_s", "passes", "verified"]


def row(workload, strategy, target, during, ratio, status="ok"):
    return {"workload": workload, "strategy": strategy, "pattern": "uniform", "status": status,
            "rate_target_pages_s": target, "rate_during_pages_s": during, "image_ratio": ratio,
            "completion_s": 4.0, "write_p99_us": 30, "write_before_p99_us": 20, "duplicate_pages": 10,
            "downtime_s": 0.1, "passes": 3, "verified": "pass"}


class QemuVsSnapbench(unittest.TestCase):
    def run_on(self, rows):
        d = tempfile.mkdtemp()
        path = os.path.join(d, "r.csv")
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        p = subprocess.run([sys.executable, SCRIPT, path, "--out", os.path.join(d, "fig")],
                           capture_output=True, text=True, timeout=120)
        return p, os.path.join(d, "fig")

    def test_medians_per_case_and_the_figure(self):
        rows = [row("kvm", "precopy", 16384, 16000, r) for r in (1.1, 1.3, 1.2)]
        rows += [row("qemu", "precopy", 16384, 9000, r) for r in (1.5, 1.4, 1.6)]
        rows += [row("qemu", "uffd-wp", -1, 20000, 1.0), row("qemu", "uffd-wp", -1, 0, 0, status="failed")]
        p, out = self.run_on(rows)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(os.path.join(out, "qemu-vs-snapbench.png"), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        text = open(os.path.join(out, "summary.md")).read()
        # 16384 pages/s = 64 MiB/s target; medians 1.2 (kvm) and 1.5 (qemu); achieved 9000 pages/s = 35.2 MiB/s.
        self.assertIn("| uniform | precopy | snapbench | 64 | 62.5 | 3 | 1.200 |", text)
        self.assertIn("| uniform | precopy | QEMU | 64 | 35.2 | 3 | 1.500 |", text)
        self.assertIn("| uniform | uffd-wp | QEMU | max |", text)
        self.assertIn("uniform uffd-wp QEMU target max: 1 failed", text)

    def test_no_usable_rows_is_an_error(self):
        p, _ = self.run_on([row("threads", "precopy", 100, 100, 1.0)])
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("no ok rows", p.stderr)


if __name__ == "__main__":
    unittest.main()
