#!/usr/bin/env python3
"""Tests of analysis/model.py: its formulas against hand-computed cases, and its error against the
committed study (results/paper/results.csv). Standard library only; run by ctest (PlotScripts.*)."""
import contextlib
import csv
import io
import math
import os
import statistics
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import model  # noqa: E402

PAPER = os.path.join(HERE, "..", "results", "paper", "results.csv")

# The bound on the median relative error of precopy's image_ratio over the paper's precopy runs
# with writers (both trackers, uniform and hotset, converged or not). Why 10 %: it is the issue's
# aim, and it is below the spread of the measurement itself, which the model cannot follow: at the
# same case, repetitions of the paper study differ by up to 50 % (uniform 512 MiB at 1 GiB/s: 4.3 to
# 8.2) because the writers' achieved rate differs by 3x between repetitions on this shared 2-core
# machine. The model takes each row's own measured rate, so its median error (about 3 % at the
# commit that added it) sits well inside the bound; a model that counts writes instead of distinct
# pages, or ignores the downtime stop rule, lands far outside it (tested below).
IMAGE_RATIO_BOUND = 0.10


def precopy_errors(rows, predict):
    """Relative errors (predicted - measured) / measured of image_ratio over precopy rows with writers."""
    save_rates, copies = model.uncapped_save_rates(rows), model.verify_copy_times(rows)
    errors = []
    for r in rows:
        if r["strategy"] != "precopy" or r["status"] != "ok" or float(r["rate_target_pages_s"]) == 0:
            continue
        p = predict(r, save_rates, copies)
        measured = float(r["image_ratio"])
        errors.append((p["model_image_ratio"] - measured) / measured)
    return errors


class DistinctPages(unittest.TestCase):
    def test_uniform_is_n_one_minus_exp(self):
        p = model.Pattern("uniform", 1000)
        self.assertAlmostEqual(p.distinct(1000), 1000 * (1 - math.exp(-1)), places=9)
        self.assertEqual(p.distinct(0), 0)
        self.assertAlmostEqual(p.distinct(1), 1.0, delta=1e-3)       # one write, one page
        self.assertAlmostEqual(p.distinct(1e9), 1000, places=6)      # saturates at N

    def test_hotset_is_the_sum_of_its_parts(self):
        p = model.Pattern("hotset:0.1:0.9", 1000)
        self.assertEqual([n for n, _ in p.parts], [100, 900])
        self.assertAlmostEqual(p.parts[0][1], 0.9 / 100, places=15)
        self.assertAlmostEqual(p.parts[1][1], 0.1 / 900, places=15)
        w = 500
        hand = 100 * (1 - math.exp(-w * 0.9 / 100)) + 900 * (1 - math.exp(-w * 0.1 / 900))
        self.assertAlmostEqual(p.distinct(w), hand, places=9)
        # Concentrated writes repeat pages: fewer distinct than uniform for the same writes.
        self.assertLess(p.distinct(w), model.Pattern("uniform", 1000).distinct(w))

    def test_hotset_covering_everything_is_uniform(self):
        self.assertEqual(model.Pattern("hotset:1:0.5", 64).parts, [(64, 1 / 64)])

    def test_zipf_parts_are_a_distribution(self):
        for pages, theta in ((100, 0.99), (1 << 18, 1.0), (1 << 24, 1.2)):
            p = model.Pattern(f"zipf:{theta}", pages)
            self.assertEqual(sum(n for n, _ in p.parts), pages)
            self.assertAlmostEqual(sum(n * q for n, q in p.parts), 1.0, places=9)
        self.assertLess(len(model.Pattern("zipf:1", 1 << 24).parts), 5000)  # binned, not 16 M terms

    def test_zipf_small_region_matches_the_exact_sum(self):
        theta, pages, w = 0.8, 500, 300
        h = sum(k ** -theta for k in range(1, pages + 1))
        exact = sum(1 - math.exp(-w * k ** -theta / h) for k in range(1, pages + 1))
        self.assertAlmostEqual(model.Pattern(f"zipf:{theta}", pages).distinct(w), exact, places=9)

    def test_sequential_never_repeats_before_wrapping(self):
        p = model.Pattern("sequential", 1000, writers=2)
        self.assertEqual(p.distinct(300), 300)
        self.assertEqual(p.distinct(5000), 1000)

    def test_bad_patterns(self):
        for text in ("hotset:0.1", "zipf:0", "zipf:x", "gaussian", "uniform:1"):
            with self.assertRaises(model.ModelError, msg=text):
                model.Pattern(text, 100)


N = 1000
RECORD = model.PAGE + model.RECORD_HEADER
CAP = N * RECORD  # bytes/s: a fully populated pass 1 takes exactly 1 s


def run(strategy, rate, **kw):
    args = dict(pages=N, pattern=model.Pattern("uniform", N), populate=1.0, rate=rate, warmup_writes=0.0,
                saver=model.Saver(CAP, True), downtime_ms=300, max_passes=30)
    args.update(kw)
    return model.MODELS[strategy](**args)


class Precopy(unittest.TestCase):
    def test_zero_rate_is_one_copy_in_two_passes(self):
        p = run("precopy", 0.0)
        self.assertEqual(p["model_passes"], 2)   # the full pass, then an empty stop-and-copy
        self.assertEqual(p["model_converged"], 1)
        self.assertEqual(p["model_duplicate_pages"], 0)
        self.assertEqual(p["model_downtime_s"], 0)
        fixed = model.image_fixed_bytes("precopy")
        self.assertAlmostEqual(p["model_image_ratio"], (fixed + N * RECORD) / (N * model.PAGE), places=12)
        self.assertAlmostEqual(p["model_completion_s"], 1.0, places=12)

    def test_converges_after_the_first_pass(self):
        # 100 pages/s for 1 s: D1 = 1000 (1 - e^-0.1) = 95.16 pages; precopy's bandwidth estimate is
        # 1000 * 4096 B / 1 s, so D1 takes 95 ms < 300 ms: stop-and-copy at once.
        d1 = N * (1 - math.exp(-0.1))
        p = run("precopy", 100.0)
        self.assertEqual((p["model_passes"], p["model_converged"]), (2, 1))
        self.assertAlmostEqual(p["model_duplicate_pages"], d1, places=9)
        self.assertAlmostEqual(p["model_downtime_s"], d1 * RECORD / CAP, places=12)
        self.assertAlmostEqual(p["model_completion_s"], 1.0 + d1 * RECORD / CAP, places=12)
        fixed = model.image_fixed_bytes("precopy")
        self.assertAlmostEqual(p["model_image_ratio"], (fixed + (N + d1) * RECORD) / (N * model.PAGE), places=12)
        self.assertAlmostEqual(p["tracker_faults"], d1, places=9)

    def test_a_tighter_budget_takes_one_more_pass(self):
        # Budget 50 ms < 95 ms: D1 is re-saved in 95.16 ms, during which 9.516 writes dirty
        # D2 = 1000 (1 - e^-0.009516) = 9.47 pages (9 ms): then it converges.
        d1 = N * (1 - math.exp(-0.1))
        t2 = d1 * RECORD / CAP
        d2 = N * (1 - math.exp(-100.0 * t2 / N))
        p = run("precopy", 100.0, downtime_ms=50)
        self.assertEqual((p["model_passes"], p["model_converged"]), (3, 1))
        self.assertAlmostEqual(p["model_duplicate_pages"], d1 + d2, places=9)
        self.assertAlmostEqual(p["model_completion_s"], 1.0 + t2 + d2 * RECORD / CAP, places=12)

    def test_max_passes_stops_a_run_that_cannot_converge(self):
        # Writes far above the save rate dirty every page in every pass: each pass re-saves ~N pages.
        p = run("precopy", 1e6, max_passes=5)
        self.assertEqual((p["model_passes"], p["model_converged"]), (5, 0))
        self.assertAlmostEqual(p["model_duplicate_pages"], 4 * N, delta=1e-6)
        self.assertAlmostEqual(p["model_image_ratio"], 5 * RECORD / model.PAGE, delta=0.001)
        self.assertAlmostEqual(p["model_downtime_s"], 1.0, places=6)  # the last dirty set: all of it

    def test_max_passes_two_is_one_pass_and_the_stop_and_copy(self):
        p = run("precopy", 1e6, max_passes=2)
        self.assertEqual((p["model_passes"], p["model_converged"]), (2, 0))

    def test_zero_pages_are_cheap_and_writes_make_them_count(self):
        # Half the pages never populated: pass 1 costs 500 full records + 500 headers; the ratio's
        # denominator is the non-zero pages at the pause, which idle writers leave at 500.
        p = run("precopy", 0.0, populate=0.5)
        fixed = model.image_fixed_bytes("precopy")
        self.assertAlmostEqual(p["model_image_ratio"],
                               (fixed + N * model.RECORD_HEADER + 500 * model.PAGE) / (500 * model.PAGE), places=12)
        self.assertAlmostEqual(p["model_completion_s"], (N * model.RECORD_HEADER + 500 * model.PAGE) / CAP)


class OtherStrategies(unittest.TestCase):
    def test_stop_copy_downtime_is_completion_is_save_time(self):
        p = run("stop-copy", 5000.0)
        self.assertEqual(p["model_downtime_s"], p["model_completion_s"])
        self.assertAlmostEqual(p["model_completion_s"], (model.image_fixed_bytes("stop-copy") + N * RECORD) / CAP)

    def test_uffd_wp_faults(self):
        self.assertEqual(run("uffd-wp", 0.0)["model_faults"], 0)
        # lam T = 0.1 per page: faults = N (1 - (1 - e^-0.1) / 0.1) = 48.4, of ~100 writes.
        t = (model.image_fixed_bytes("uffd-wp") + N * RECORD) / CAP
        x = 100.0 * t / N
        p = run("uffd-wp", 100.0)
        self.assertAlmostEqual(p["model_faults"], N * (1 - (1 - math.exp(-x)) / x), places=9)
        self.assertAlmostEqual(p["model_fault_share"], p["model_faults"] / (100.0 * t), places=12)
        self.assertGreater(p["model_fault_share"], 0.45)  # about half: a page is ahead of the saver half the time
        self.assertLess(p["model_fault_share"], 0.5)
        # Writes so fast that every page is written before the saver reaches it: every page faults once.
        self.assertAlmostEqual(run("uffd-wp", 1e9)["model_faults"], N, delta=1e-3)
        self.assertEqual(run("uffd-wp", 1e9)["model_duplicate_pages"], 0)

    def test_fork_cow_copies_the_distinct_populated_pages_written(self):
        t = (model.image_fixed_bytes("fork-cow") + N * RECORD) / CAP
        p = run("fork-cow", 200.0)
        self.assertAlmostEqual(p["model_extra_rss_bytes"], model.PAGE * N * (1 - math.exp(-200.0 * t / N)), places=6)
        # Never-populated pages written after the fork are not shared: nothing to copy.
        self.assertEqual(run("fork-cow", 200.0, populate=0.0)["model_extra_rss_bytes"], 0)
        self.assertEqual(run("fork-cow", 0.0)["model_extra_rss_bytes"], 0)


class Parsing(unittest.TestCase):
    def test_rates_and_sizes(self):
        self.assertEqual(model.parse_rate("10Gbit/s", "x"), 1.25e9)
        self.assertEqual(model.parse_rate("1GiB/s", "x"), 1 << 30)
        self.assertEqual(model.parse_rate("1.25GB/s", "x"), 1.25e9)
        self.assertEqual(model.parse_rate("200MiB/s", "x"), 200 << 20)
        self.assertEqual(model.parse_rate("20000pages/s", "x"), 20000 * 4096)
        self.assertEqual(model.parse_size("64G"), 64 << 30)
        self.assertEqual(model.parse_size("512MiB"), 512 << 20)
        with self.assertRaises(model.ModelError):
            model.parse_rate("fast", "--rate")


def call(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = model.main(argv)
    return rc, out.getvalue(), err.getvalue()


class CommandLine(unittest.TestCase):
    def test_predict_prints_a_marked_table(self):
        rc, out, _ = call(["--predict", "--mem", "64G", "--rate", "1GiB/s", "--bandwidth", "10Gbit/s"])
        self.assertEqual(rc, 0)
        self.assertTrue(out.startswith("PREDICTION"))
        rows = [l for l in out.splitlines() if l.startswith("| 64 GiB")]
        self.assertEqual([r.split("|")[3].strip() for r in rows], model.STRATEGIES)

    def test_bad_input_is_one_line_and_exit_2(self):
        for argv in (["--predict", "--rate", "fast"], ["--predict", "--strategy", "none"], [],
                     ["--predict", "--bandwidth", "0"], ["no-such.csv", "--out", "x.csv"]):
            rc, _, err = call(argv)
            self.assertEqual(rc, 2, argv)
            self.assertEqual(len(err.strip().splitlines()), 1, (argv, err))

    def test_csv_in_csv_out_keeps_every_row(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "predicted.csv")
            rc, _, err = call([PAPER, "--out", out])
            self.assertEqual(rc, 0, err)
            with open(PAPER) as f:
                measured = list(csv.DictReader(f))
            with open(out) as f:
                predicted = list(csv.DictReader(f))
        self.assertEqual(len(predicted), len(measured))
        for m, p in zip(measured, predicted):
            self.assertEqual((m["strategy"], m["rate"], m["rep"]), (p["strategy"], p["rate"], p["rep"]))
            modelled = m["status"] == "ok" and m["strategy"] != "none"
            self.assertEqual(p["model_image_ratio"] != "", modelled, p)
            self.assertEqual(p["model_note"] == "", modelled, p)


class ErrorTable(unittest.TestCase):
    def test_one_line_per_case_group_with_writers(self):
        rc, out, err = call([PAPER, "--errors"])
        self.assertEqual(rc, 0, err)
        lines = [l for l in out.splitlines() if l.startswith("| ") and not l.startswith("| strategy")]
        # stop-copy, 2 precopy trackers, uffd-wp, fork-cow x 2 patterns x 2 sizes
        self.assertEqual(len(lines), 20)
        self.assertTrue(all(l.split("|")[4].strip() == "12" for l in lines))  # 4 paced rates x 3 reps

    def test_with_the_achieved_save_rate_the_completion_is_reproduced(self):
        # The diagnostic replaces the cap by image bytes / (completion - reference copy): a model run
        # at that rate must give back each stop-copy run's completion (to the model's image size, within
        # 1 %), or the bookkeeping of the copy or the rate is off.
        with open(PAPER, newline="") as f:
            rows = list(csv.DictReader(f))
        copies = model.verify_copy_times(rows)
        for r in rows:
            if r["strategy"] == "stop-copy" and r["status"] == "ok":
                p = model.model_row(r, {}, copies, achieved=True)
                self.assertAlmostEqual(p["model_completion_s"], float(r["completion_s"]),
                                       delta=0.01 * float(r["completion_s"]))


class UncappedSaveRate(unittest.TestCase):
    def test_from_stop_copy_rows_else_the_rows_own(self):
        with open(PAPER, newline="") as f:
            rows = [dict(r, bandwidth_bytes_s="0") for r in csv.DictReader(f)
                    if r["status"] == "ok" and r["region_bytes"] == "134217728" and r["pattern"] == "uniform"]
        stop = [r for r in rows if r["strategy"] == "stop-copy"]
        pre = next(r for r in rows if r["strategy"] == "precopy")
        expected = statistics.median(float(r["region_bytes"]) / float(r["downtime_s"]) for r in stop)
        p = model.model_row(pre, model.uncapped_save_rates(rows))
        self.assertEqual(p["model_save_from"], "stop-copy rows")
        self.assertAlmostEqual(p["model_save_bytes_s"], expected, places=3)
        p = model.model_row(pre, model.uncapped_save_rates([pre]))
        self.assertEqual(p["model_save_from"], "own image/completion")
        self.assertAlmostEqual(p["model_save_bytes_s"], float(pre["image_bytes"]) / float(pre["completion_s"]))


class AgainstThePaperStudy(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(PAPER, newline="") as f:
            cls.rows = list(csv.DictReader(f))

    def test_precopy_image_ratio_median_error_within_bound(self):
        errors = precopy_errors(self.rows, model.model_row)
        self.assertEqual(len(errors), 96)  # both trackers x 2 patterns x 2 sizes x 4 rates x 3 reps
        median = statistics.median(abs(e) for e in errors)
        self.assertLessEqual(median, IMAGE_RATIO_BOUND,
                             f"median |relative error| of precopy image_ratio {median:.1%} > {IMAGE_RATIO_BOUND:.0%}")

    def test_the_bound_rejects_a_model_that_counts_writes_as_pages(self):
        # The classic simplification (dirty pages = rate x time) must fail the same check.
        class Naive(model.Pattern):
            def distinct(self, writes):
                return min(float(writes), float(self.pages)) if writes > 0 else 0.0

        def naive_row(r, save_rates, copies):
            kwargs, _ = model.row_inputs(r, save_rates)
            kwargs["pattern"] = Naive(r["pattern"], kwargs["pages"])
            return model.precopy(**kwargs)

        median = statistics.median(abs(e) for e in precopy_errors(self.rows, naive_row))
        self.assertGreater(median, IMAGE_RATIO_BOUND)

    def test_passes_match_in_most_runs(self):
        save_rates, copies = model.uncapped_save_rates(self.rows), model.verify_copy_times(self.rows)
        pre = [(r, model.model_row(r, save_rates, copies)) for r in self.rows
               if r["strategy"] == "precopy" and r["status"] == "ok"]
        same = sum(int(r["passes"]) == p["model_passes"] for r, p in pre)
        self.assertGreaterEqual(same / len(pre), 0.6, f"passes match in {same} of {len(pre)} runs")


if __name__ == "__main__":
    unittest.main()
