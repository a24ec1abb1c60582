#!/usr/bin/env python3
"""Tests of plot.py on the committed fixture and on edge cases cut from it (plain unittest).

Run with the interpreter that has matplotlib: `$(analysis/find_python.sh) analysis/test_plot.py`.
"""
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PLOT = os.path.join(HERE, "plot.py")
FIXTURE = os.path.join(HERE, "fixtures", "results.csv")
# The snapbench binary whose `columns` the fixture must match (tests/test_plot.cpp passes it).
SNAPBENCH = os.environ.get("SNAPBENCH_BINARY", "")
FIGURES = ["image_ratio", "completion", "duplicate_pages", "write_p99", "latency_quantiles", "downtime",
           "extra_rss"]
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF-"}


def read_fixture():
    with open(FIXTURE, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def label(row):
    return row["strategy"] + ("/" + row["tracker"] if row["tracker"] else "")


def run_plot(*args):
    return subprocess.run([sys.executable, PLOT, *args], capture_output=True, text=True, timeout=300)


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def summary_rows(summary_text, rate_heading):
    """{label: [cells]} of the summary table under `### target write rate <rate_heading>`."""
    after = summary_text.split(f"### target write rate {rate_heading}\n", 1)[1].lstrip("\n")
    out = {}
    for line in after.splitlines():
        if not line.startswith("|"):
            break  # the table ends at the first line that is not a row
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not cells[0].startswith("---") and cells[0] != "strategy/tracker":
            out[cells[0]] = cells
    return out


class FixtureTest(unittest.TestCase):
    """plot.py on the full fixture: every figure, and a summary that matches the data."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="snapbench-plot-")
        cls.out = os.path.join(cls.tmp.name, "figs")
        cls.result = run_plot(FIXTURE, "--out", cls.out)
        cls.header, cls.rows = read_fixture()

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_exits_zero(self):
        self.assertEqual(self.result.returncode, 0, self.result.stderr)

    def test_every_figure_written_as_png_and_pdf(self):
        printed = set(self.result.stdout.split())
        for name in FIGURES:
            for ext, magic in MAGIC.items():
                with self.subTest(figure=name, ext=ext):
                    path = os.path.join(self.out, f"{name}.{ext}")
                    self.assertTrue(os.path.isfile(path), path)
                    self.assertGreater(os.path.getsize(path), 1000, path)
                    with open(path, "rb") as f:
                        self.assertEqual(f.read(len(magic)), magic, path)
                    self.assertIn(path, printed, "plot.py should print the files it wrote")

    def test_summary_has_a_row_per_strategy_at_every_rate(self):
        with open(os.path.join(self.out, "summary.md")) as f:
            text = f.read()
        ok = [r for r in self.rows if r["status"] == "ok"]
        labels = {label(r) for r in ok}
        self.assertEqual(len(labels), 6)  # none, stop-copy, 2 precopy trackers, uffd-wp, fork-cow
        for rate in sorted({float(r["rate_target_pages_s"]) for r in ok}):
            heading = f"{rate * 4096 / (1 << 20):g} MiB/s"
            with self.subTest(rate=heading):
                table = summary_rows(text, heading)
                self.assertEqual(set(table), labels)

    def test_summary_medians_match_the_data(self):
        with open(os.path.join(self.out, "summary.md")) as f:
            table = summary_rows(f.read(), "256 MiB/s")
        for lab, column, index, scale in [("fork-cow", "extra_rss_bytes", 7, 1 / (1 << 20)),
                                          ("precopy/mprotect", "image_ratio", 2, 1.0),
                                          ("uffd-wp", "write_p99_us", 6, 1.0)]:
            with self.subTest(strategy=lab, column=column):
                values = [float(r[column]) * scale for r in self.rows
                          if r["status"] == "ok" and label(r) == lab and r["rate"] == "256MiB/s"]
                shown = float(table[lab][index].split()[0])
                self.assertAlmostEqual(shown, statistics.median(values), delta=abs(statistics.median(values)) * 1e-3)
        self.assertEqual(table["precopy/mprotect"][8], "2/0/0")  # verified pass/fail/off
        self.assertIn("†", table["precopy/mprotect"][2])       # did not converge at 256 MiB/s
        self.assertEqual(table["none"][2], "–")                # takes no snapshot

    def test_summary_counts_rows_not_plotted(self):
        with open(os.path.join(self.out, "summary.md")) as f:
            text = f.read()
        self.assertIn("1 unsupported", text)
        self.assertRegex(text, r"\| unsupported \| precopy/soft-dirty \| 64MiB/s \| 1 \| soft-dirty: ")


    def test_summary_sets_the_model_beside_the_measurement(self):
        with open(os.path.join(self.out, "summary.md")) as f:
            text = f.read()
        self.assertIn("### Model vs measurement", text)
        row = next(l for l in text.split("### Model vs measurement", 1)[1].splitlines()
                   if l.startswith("| precopy/mprotect | 256 |"))
        measured, _, rest = row.split("|")[3].strip().partition(" / ")
        values = [float(r["image_ratio"]) for r in self.rows
                  if r["status"] == "ok" and label(r) == "precopy/mprotect" and r["rate"] == "256MiB/s"]
        self.assertAlmostEqual(float(measured), statistics.median(values), delta=1e-3 * statistics.median(values))
        self.assertRegex(rest, r"^[0-9.]+ \([+-][0-9]+%\)$")  # the prediction and its relative error


class FixtureSchemaTest(unittest.TestCase):
    def test_fixture_header_is_the_real_csv_header(self):
        if not os.access(SNAPBENCH, os.X_OK):
            self.skipTest("no snapbench binary: set SNAPBENCH_BINARY (ctest does)")
        p = subprocess.run([SNAPBENCH, "columns"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        columns = [line.split()[0] for line in p.stdout.splitlines() if line.startswith("  ")]
        header, _ = read_fixture()
        self.assertEqual(header, columns, "schema changed: update COLUMNS in make_fixture.py and rerun it")

    def test_generator_reproduces_the_fixture(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "results.csv")
            subprocess.run([sys.executable, os.path.join(HERE, "make_fixture.py"), out], check=True,
                           capture_output=True, timeout=60)
            with open(out) as a, open(FIXTURE) as b:
                self.assertEqual(a.read(), b.read(), "fixture is stale: rerun analysis/make_fixture.py")


class EdgeCaseTest(unittest.TestCase):
    """Subsets of the fixture: partial strategies, one rate, several workloads, nothing to plot."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="snapbench-plot-edge-")
        self.header, self.rows = read_fixture()

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def test_some_strategies_at_a_single_rate(self):
        rows = [r for r in self.rows if r["rate"] == "64MiB/s" and r["strategy"] in ("uffd-wp", "fork-cow")]
        write_csv(self.path("some.csv"), self.header, rows)
        res = run_plot(self.path("some.csv"), "--out", self.path("out"))
        self.assertEqual(res.returncode, 0, res.stderr)
        for name in FIGURES:
            self.assertGreater(os.path.getsize(self.path(f"out/{name}.png")), 1000, name)
        with open(self.path("out/summary.md")) as f:
            self.assertEqual(set(summary_rows(f.read(), "64 MiB/s")), {"uffd-wp", "fork-cow"})

    def test_no_model_flag_leaves_the_model_out(self):
        rows = [r for r in self.rows if r["rate"] == "64MiB/s" and r["strategy"] == "fork-cow"]
        write_csv(self.path("fork.csv"), self.header, rows)
        for flag, expected in (([], True), (["--no-model"], False)):
            out = self.path("out" + "".join(flag))
            res = run_plot(self.path("fork.csv"), "--out", out, *flag)
            self.assertEqual(res.returncode, 0, res.stderr)
            with open(os.path.join(out, "summary.md")) as f:
                self.assertEqual("### Model vs measurement" in f.read(), expected, flag)

    def test_two_workloads_get_separate_figures(self):
        base = [r for r in self.rows if r["strategy"] == "uffd-wp" and r["rate"] == "16MiB/s"]
        big = [dict(r, region_bytes=str(1 << 30)) for r in base]
        write_csv(self.path("a.csv"), self.header, base)
        write_csv(self.path("b.csv"), self.header, big)
        res = run_plot(self.path("a.csv"), self.path("b.csv"), "--out", self.path("out"))
        self.assertEqual(res.returncode, 0, res.stderr)
        for suffix in ("region-256MiB", "region-1GiB"):
            for name in FIGURES:
                self.assertTrue(os.path.isfile(self.path(f"out/{name}_{suffix}.pdf")), f"{name}_{suffix}")
        with open(self.path("out/summary.md")) as f:
            text = f.read()
        self.assertIn("## 256 MiB region", text)
        self.assertIn("## 1 GiB region", text)

    def test_two_workload_units_get_separate_figures(self):
        base = [r for r in self.rows if r["strategy"] == "uffd-wp" and r["rate"] == "16MiB/s"]
        write_csv(self.path("w.csv"), self.header, base + [dict(r, workload="other") for r in base])
        res = run_plot(self.path("w.csv"), "--out", self.path("out"))
        self.assertEqual(res.returncode, 0, res.stderr)
        for suffix in ("workload-threads", "workload-other"):
            self.assertTrue(os.path.isfile(self.path(f"out/image_ratio_{suffix}.pdf")), suffix)
        with open(self.path("out/summary.md")) as f:
            self.assertIn("## other workload, 256 MiB region", f.read())

    def test_csv_without_workload_column_means_threads(self):
        header = [c for c in self.header if c != "workload"]
        rows = [{c: v for c, v in r.items() if c != "workload"} for r in self.rows]
        write_csv(self.path("v1.csv"), header, rows)
        res = run_plot(self.path("v1.csv"), "--out", self.path("out"))
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertTrue(os.path.isfile(self.path("out/image_ratio.pdf")))

    def test_two_machines_are_never_pooled(self):
        base = [r for r in self.rows if r["strategy"] == "uffd-wp" and r["rate"] == "16MiB/s"]
        other = [dict(r, host="other-host", kernel="5.15.0", write_p99_us="1000") for r in base]
        write_csv(self.path("merged.csv"), self.header, base + other)
        res = run_plot(self.path("merged.csv"), "--out", self.path("out"))
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn("rows of 2 machines", res.stderr)
        for suffix in ("host-fixture-host", "host-other-host"):
            for name in FIGURES:
                self.assertTrue(os.path.isfile(self.path(f"out/{name}_{suffix}.pdf")), f"{name}_{suffix}")
        with open(self.path("out/summary.md")) as f:
            text = f.read()
        self.assertIn("on fixture-host (kernel 6.18.0-fixture)", text)
        self.assertIn("on other-host (kernel 5.15.0)", text)
        # --host keeps one machine: one set of figures without a suffix.
        res = run_plot(self.path("merged.csv"), "--out", self.path("one"), "--host", "other-host")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertTrue(os.path.isfile(self.path("one/write_p99.pdf")))
        res = run_plot(self.path("merged.csv"), "--out", self.path("none"), "--host", "nowhere")
        self.assertEqual(res.returncode, 1)
        self.assertIn("--host nowhere", res.stderr)

    def test_schema_2_without_machine_columns_still_plots(self):
        header = [c for c in self.header if c not in ("host", "kernel", "cpu_model")]
        rows = [{k: v for k, v in r.items() if k in header} for r in self.rows]
        write_csv(self.path("v2.csv"), header, rows)
        res = run_plot(self.path("v2.csv"), "--out", self.path("out"))
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertTrue(os.path.isfile(self.path("out/write_p99.pdf")))

    def test_max_rate_and_chosen_cdf_rate(self):
        rows = [dict(r, rate="max", rate_target_pages_s="-1") for r in self.rows
                if r["status"] == "ok" and r["rate"] == "256MiB/s"]
        write_csv(self.path("max.csv"), self.header, rows + [r for r in self.rows if r["rate"] == "16MiB/s"])
        res = run_plot(self.path("max.csv"), "--out", self.path("out"), "--rate-for-cdf", "max")
        self.assertEqual(res.returncode, 0, res.stderr)
        with open(self.path("out/summary.md")) as f:
            self.assertIn("### target write rate max", f.read())

    def test_unknown_cdf_rate_is_an_error(self):
        res = run_plot(FIXTURE, "--out", self.path("out"), "--rate-for-cdf", "17")
        self.assertEqual(res.returncode, 1)
        self.assertIn("--rate-for-cdf 17", res.stderr)

    def test_nothing_ok_is_a_clear_error(self):
        write_csv(self.path("bad.csv"), self.header, [r for r in self.rows if r["status"] != "ok"])
        res = run_plot(self.path("bad.csv"), "--out", self.path("out"))
        self.assertEqual(res.returncode, 1)
        self.assertIn("no row with status=ok", res.stderr)
        self.assertIn("1 unsupported", res.stderr)
        self.assertFalse(os.path.exists(self.path("out")))

    def test_other_csv_is_rejected(self):
        with open(self.path("other.csv"), "w") as f:
            f.write("a,b\n1,2\n")
        res = run_plot(self.path("other.csv"), "--out", self.path("out"))
        self.assertEqual(res.returncode, 1)
        self.assertIn("not a snapbench results CSV", res.stderr)

    def test_missing_file_is_an_error(self):
        res = run_plot(self.path("missing.csv"), "--out", self.path("out"))
        self.assertEqual(res.returncode, 1)
        self.assertIn("cannot open", res.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
