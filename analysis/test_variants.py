#!/usr/bin/env python3
"""Tests of variants.py on small generated CSVs (plain unittest, standard library only)."""
import csv
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = os.path.join(HERE, "variants.py")
COLUMNS = ["strategy", "tracker", "rate", "region_bytes", "params", "status", "completion_s", "notes"]


def write_csv(path, rows, columns=COLUMNS):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)


def row(staging, completion, unprotect, status="ok"):
    return {"strategy": "uffd-wp", "tracker": "", "rate": "0", "region_bytes": "1024",
            "params": "uffd-wp.chunk_pages=64;uffd-wp.staging=%s" % staging, "status": status,
            "completion_s": str(completion), "notes": "fault_wait=read;unprotect_s=%s" % unprotect}


def run(*args):
    p = subprocess.run([sys.executable, VARIANTS] + list(args), capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


class Variants(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.csv = os.path.join(self.dir.name, "results.csv")

    def tearDown(self):
        self.dir.cleanup()

    def table_rows(self, out):
        lines = [l for l in out.splitlines() if l.startswith("| ") and not l.startswith("|---")]
        header = [c.strip() for c in lines[0].strip("|").split("|")]
        return header, [dict(zip(header, (c.strip() for c in l.strip("|").split("|")))) for l in lines[1:]]

    def test_medians_per_case_and_only_the_varying_parameter(self):
        write_csv(self.csv, [row("image", 1.0, 0.1), row("image", 3.0, 0.3), row("image", 2.0, 0.2),
                             row("none", 5.0, 0.5), row("none", 7.0, 0.7), row("none", 100.0, 9.0, "failed")])
        rc, out = run(self.csv, "--metrics", "completion_s,unprotect_s")
        self.assertEqual(rc, 0, out)
        header, rows = self.table_rows(out)
        self.assertEqual(header, ["uffd-wp.staging", "ok reps", "completion_s", "unprotect_s"])
        by = {r["uffd-wp.staging"]: r for r in rows}
        self.assertEqual(by["image"]["ok reps"], "3/3")
        self.assertEqual(float(by["image"]["completion_s"]), 2.0)
        self.assertEqual(float(by["image"]["unprotect_s"]), 0.2)
        # The failed repetition counts in "ok reps" but not in the medians.
        self.assertEqual(by["none"]["ok reps"], "2/3")
        self.assertEqual(float(by["none"]["completion_s"]), 6.0)
        self.assertIn("uffd-wp.chunk_pages=64", out)  # the same in every row: said once, below

    def test_unknown_metric_is_na_and_bad_input_exits_2(self):
        write_csv(self.csv, [row("image", 1.0, 0.1)])
        rc, out = run(self.csv, "--metrics", "no_such_metric")
        self.assertEqual(rc, 0, out)
        self.assertIn("n/a", out)
        rc, out = run(os.path.join(self.dir.name, "missing.csv"))
        self.assertEqual(rc, 2)
        self.assertIn("cannot read", out)
        write_csv(self.csv, [row("image", 1.0, 0.1)], columns=["strategy", "status"])
        rc, out = run(self.csv)
        self.assertEqual(rc, 2)
        self.assertIn("lacks column", out)


if __name__ == "__main__":
    unittest.main()
