// `snapbench compare`: the pure comparison over generated tables (tolerances, floors, medians,
// invariants, missing/new cases), the CSV table reader, and the CLI's exit codes (0 / 1 / 2).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <functional>

#include "core/error.h"
#include "harness/compare.h"
#include "harness/compare_format.h"
#include "harness/csv.h"
#include "harness/csv_table.h"
#include "tests/cli_helpers.h"

using namespace snap;

namespace {

// One repetition of a case with the metrics a run of that strategy typically has here.
RunResult rep_of(const std::string& strategy, int rep) {
  RunResult r;
  r.spec.strategy = strategy;
  r.spec.rep = rep;
  r.spec.rate = "100MiB/s";
  r.region_bytes = 64ull << 20;
  r.status = RunStatus::kOk;
  r.verified = "pass";
  r.image_ratio = 1.0;
  const double jitter[] = {1.0, 1.05, 0.95};
  const double j = jitter[rep % 3];
  if (strategy == "none") {
    r.completion_s = 0.001 * j;
    r.downtime_s = 0.0005 * j;
    r.write_p99_us = 20 * j;
    r.image_ratio = 0;
  } else if (strategy == "stop-copy") {
    r.completion_s = 0.100 * j;
    r.downtime_s = 0.100 * j;
    r.write_p99_us = 90 * j;
  } else if (strategy == "precopy") {
    r.tracker = "uffd-async";
    r.completion_s = 0.300 * j;
    r.downtime_s = 0.010 * j;
    r.image.duplicate_pages = uint64_t(2000 * j);
    r.image_ratio = 1.8 * j;
  } else if (strategy == "uffd-wp") {
    r.completion_s = 0.200 * j;
    r.downtime_s = 0.002 * j;
    r.freeze_s = 0.003 * j;
    r.write_p50_us = 2 * j;
    r.write_p99_us = 80 * j;
    r.extra_rss_bytes = 1 << 20;
  } else if (strategy == "fork-cow") {
    r.completion_s = 0.150 * j;
    r.downtime_s = 0.025 * j;
    r.freeze_s = 0.020 * j;
    r.extra_rss_bytes = uint64_t((32 << 20) * j);
  }
  return r;
}

std::vector<RunResult> baseline_runs() {
  std::vector<RunResult> runs;
  for (const char* s : {"none", "stop-copy", "precopy", "uffd-wp", "fork-cow"})
    for (int rep = 0; rep < 3; ++rep) runs.push_back(rep_of(s, rep));
  return runs;
}

std::string csv_text(const std::vector<RunResult>& runs) {
  std::string text = csv_header() + "\n";
  for (const auto& r : runs) text += csv_row(r) + "\n";
  return text;
}

CsvTable table(const std::string& name, const std::vector<RunResult>& runs) {
  return parse_csv_table(name, csv_text(runs));
}

// Applies `f` to every run of `strategy`.
void each(std::vector<RunResult>& runs, const std::string& strategy, const std::function<void(RunResult&)>& f) {
  for (auto& r : runs)
    if (r.spec.strategy == strategy) f(r);
}

const CompareRow* find_row(const CompareReport& rep, const std::string& case_prefix, const std::string& check) {
  for (const auto& r : rep.rows)
    if (r.case_label.rfind(case_prefix, 0) == 0 && r.check == check) return &r;
  return nullptr;
}

// The same table without one column (header and every row).
std::string without_column(const std::string& text, const std::string& column) {
  CsvTable t = parse_csv_table("x", text);
  size_t c = t.require_column(column);
  t.columns.erase(t.columns.begin() + long(c));
  for (auto& r : t.rows) r.erase(r.begin() + long(c));
  return format_csv_table(t);
}

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

}  // namespace

TEST(Compare, VerdictsPerChange) {
  struct Case {
    std::string name;
    std::function<void(std::vector<RunResult>&)> change;
    bool fails;
    std::string case_prefix, check;  // the row that must carry `verdict` ("" = none to check)
    Verdict verdict;
  } cases[] = {
      {"identical", [](auto&) {}, false, "stop-copy", "completion_s", Verdict::kOk},
      {"faster is an improvement",
       [](auto& runs) { each(runs, "stop-copy", [](RunResult& r) { r.completion_s *= 0.3; }); }, false, "stop-copy",
       "completion_s", Verdict::kImproved},
      {"completion 3x slower regresses",
       [](auto& runs) { each(runs, "stop-copy", [](RunResult& r) { r.completion_s *= 3; }); }, true, "stop-copy",
       "completion_s", Verdict::kRegressed},
      {"completion 1.4x is within 1.5",
       [](auto& runs) { each(runs, "uffd-wp", [](RunResult& r) { r.completion_s *= 1.4; }); }, false, "uffd-wp",
       "completion_s", Verdict::kOk},
      {"1 ms -> 3 ms is below the 5 ms floor",
       [](auto& runs) { each(runs, "none", [](RunResult& r) { r.completion_s *= 3; }); }, false, "none",
       "completion_s", Verdict::kOk},
      {"20 us -> 60 us p99 is below the 50 us floor",
       [](auto& runs) { each(runs, "none", [](RunResult& r) { r.write_p99_us *= 3; }); }, false, "none",
       "write_p99_us", Verdict::kOk},
      {"p99 80 us -> 400 us regresses",
       [](auto& runs) { each(runs, "uffd-wp", [](RunResult& r) { r.write_p99_us *= 5; }); }, true, "uffd-wp",
       "write_p99_us", Verdict::kRegressed},
      {"one slow repetition does not move the median",
       [](auto& runs) { runs[4].completion_s *= 10; }, false, "stop-copy", "completion_s", Verdict::kOk},
      {"precopy duplicates 3x regress",
       [](auto& runs) { each(runs, "precopy", [](RunResult& r) { r.image.duplicate_pages *= 3; }); }, true,
       "precopy", "duplicate_pages", Verdict::kRegressed},
      {"fork-cow extra memory 2x regresses",
       [](auto& runs) { each(runs, "fork-cow", [](RunResult& r) { r.extra_rss_bytes *= 2; }); }, true, "fork-cow",
       "extra_rss_bytes", Verdict::kRegressed},
      {"verified=fail breaks",
       [](auto& runs) { each(runs, "uffd-wp", [](RunResult& r) { r.verified = r.spec.rep == 1 ? "fail" : "pass"; }); },
       true, "uffd-wp", "verified", Verdict::kBroken},
      {"verified=off is not checked",
       [](auto& runs) { each(runs, "uffd-wp", [](RunResult& r) { r.verified = "off"; }); }, false, "uffd-wp",
       "completion_s", Verdict::kOk},
      {"a duplicate page in uffd-wp breaks",
       [](auto& runs) { runs[9].image.duplicate_pages = 1; }, true, "uffd-wp", "duplicate_pages=0", Verdict::kBroken},
      {"a duplicate page in stop-copy breaks (its registry entry says it never re-saves)",
       [](auto& runs) { runs[4].image.duplicate_pages = 1; }, true, "stop-copy", "duplicate_pages=0", Verdict::kBroken},
      {"a duplicate page in fork-cow breaks",
       [](auto& runs) { runs[14].image.duplicate_pages = 3; }, true, "fork-cow", "duplicate_pages=0",
       Verdict::kBroken},
      {"failed where the baseline was ok breaks",
       [](auto& runs) {
         runs[6].status = RunStatus::kFailed;
         runs[6].reason = "sink error";
       },
       true, "precopy", "status", Verdict::kBroken},
      {"unsupported where the baseline was ok breaks",
       [](auto& runs) {
         each(runs, "precopy", [](RunResult& r) {
           r.status = RunStatus::kUnsupported;
           r.reason = "no PAGEMAP_SCAN";
         });
       },
       true, "precopy", "status", Verdict::kBroken},
      {"a missing case fails",
       [](auto& runs) {
         runs.erase(std::remove_if(runs.begin(), runs.end(), [](auto& r) { return r.spec.strategy == "fork-cow"; }),
                    runs.end());
       },
       true, "fork-cow", "-", Verdict::kMissing},
      {"a new case is information",
       [](auto& runs) {
         RunResult r = rep_of("uffd-wp", 0);
         r.spec.writers = 4;
         runs.push_back(r);
       },
       false, "uffd-wp writers=4", "-", Verdict::kNew},
      {"a new case's invariants still hold exactly",
       [](auto& runs) {
         RunResult r = rep_of("uffd-wp", 0);
         r.spec.writers = 4;
         r.verified = "fail";
         runs.push_back(r);
       },
       true, "uffd-wp writers=4", "verified", Verdict::kBroken},
  };
  const auto base_runs = baseline_runs();
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto cur_runs = base_runs;
    c.change(cur_runs);
    CompareReport rep = compare_tables(table("base.csv", base_runs), table("cur.csv", cur_runs));
    EXPECT_EQ(rep.failed(), c.fails) << format_report_text(rep, false);
    const CompareRow* row = find_row(rep, c.case_prefix, c.check);
    ASSERT_NE(row, nullptr) << format_report_text(rep, false);
    EXPECT_EQ(row->verdict, c.verdict) << format_report_text(rep, false);
    // A failure names what failed in the one summary line.
    if (c.fails && c.verdict != Verdict::kMissing) {
      EXPECT_NE(summary_line(rep).find(c.check), std::string::npos) << summary_line(rep);
    }
    EXPECT_NE(summary_line(rep).find(c.fails ? "FAIL" : "PASS"), std::string::npos) << summary_line(rep);
  }
}

TEST(Compare, IdenticalTablesAreAllOkWithMediansAndRatioOne) {
  const auto runs = baseline_runs();
  CompareReport rep = compare_tables(table("a.csv", runs), table("b.csv", runs));
  EXPECT_FALSE(rep.failed());
  EXPECT_EQ(rep.cases_matched, 5u);
  EXPECT_EQ(rep.cases_missing + rep.cases_new, 0u);
  for (const auto& r : rep.rows) EXPECT_EQ(r.verdict, Verdict::kOk) << r.case_label << " " << r.check;
  const CompareRow* c = find_row(rep, "stop-copy", "completion_s");
  ASSERT_NE(c, nullptr);
  EXPECT_DOUBLE_EQ(c->baseline_value, 0.100);  // median of 0.100, 0.105, 0.095
  EXPECT_DOUBLE_EQ(c->ratio, 1.0);
  // duplicate_pages is a tolerance metric for precopy only, an exact invariant for the strategies that
  // never re-save a page.
  EXPECT_NE(find_row(rep, "precopy", "duplicate_pages"), nullptr);
  EXPECT_EQ(find_row(rep, "stop-copy", "duplicate_pages"), nullptr);
  EXPECT_NE(find_row(rep, "uffd-wp", "duplicate_pages=0"), nullptr);
  EXPECT_NE(find_row(rep, "fork-cow", "duplicate_pages=0"), nullptr);
  EXPECT_NE(find_row(rep, "stop-copy", "duplicate_pages=0"), nullptr);
  EXPECT_EQ(find_row(rep, "precopy", "duplicate_pages=0"), nullptr);  // may re-save: a tolerance instead
  EXPECT_EQ(find_row(rep, "none", "duplicate_pages=0"), nullptr);     // saves no image
  EXPECT_NE(find_row(rep, "precopy/uffd-async", "status"), nullptr);
}

TEST(Compare, MediansUseOnlyFinishedRepetitions) {
  auto base = baseline_runs();
  auto cur = base;
  // The baseline had one failed repetition with absurd numbers: it must not count in the median.
  base[3].status = RunStatus::kFailed;
  base[3].completion_s = 100;
  base[4].status = RunStatus::kOk;
  CompareReport rep = compare_tables(table("a.csv", base), table("b.csv", cur));
  EXPECT_FALSE(rep.failed()) << format_report_text(rep, false);
  const CompareRow* c = find_row(rep, "stop-copy", "completion_s");
  ASSERT_NE(c, nullptr);
  EXPECT_DOUBLE_EQ(c->baseline_value, (0.105 + 0.095) / 2);
}

TEST(Compare, UnsupportedBeforeAndOkNowIsAnImprovement) {
  auto base = baseline_runs();
  each(base, "precopy", [](RunResult& r) {
    r.status = RunStatus::kUnsupported;
    r.reason = "no PAGEMAP_SCAN";
  });
  CompareReport rep = compare_tables(table("a.csv", base), table("b.csv", baseline_runs()));
  EXPECT_FALSE(rep.failed());
  ASSERT_NE(find_row(rep, "precopy", "status"), nullptr);
  EXPECT_EQ(find_row(rep, "precopy", "status")->verdict, Verdict::kImproved);
  EXPECT_EQ(find_row(rep, "precopy", "completion_s"), nullptr);  // nothing to compare against
  // And unsupported on both sides is simply ok.
  rep = compare_tables(table("a.csv", base), table("b.csv", base));
  EXPECT_FALSE(rep.failed());
  EXPECT_EQ(find_row(rep, "precopy", "status")->verdict, Verdict::kOk);
}

TEST(Compare, ToleranceAndFloorOverrides) {
  auto base = baseline_runs();
  auto cur = base;
  each(cur, "stop-copy", [](RunResult& r) { r.completion_s *= 3; });
  auto tol = default_tolerances();
  EXPECT_TRUE(compare_tables(table("a", base), table("b", cur), tol).failed());
  set_tolerance(tol, "completion_s=4", "--tolerance");
  EXPECT_FALSE(compare_tables(table("a", base), table("b", cur), tol).failed());
  tol = default_tolerances();
  set_tolerance(tol, "completion_s=off", "--tolerance");
  EXPECT_FALSE(compare_tables(table("a", base), table("b", cur), tol).failed());
  EXPECT_EQ(find_row(compare_tables(table("a", base), table("b", cur), tol), "stop-copy", "completion_s"), nullptr);
  tol = default_tolerances();
  set_tolerance(tol, "completion_s=0.5", "--floor");  // 100 ms -> 300 ms is within a 500 ms floor
  EXPECT_FALSE(compare_tables(table("a", base), table("b", cur), tol).failed());
  // A metric off by default can be switched on.
  each(cur, "uffd-wp", [](RunResult& r) { r.write_max_us = 50000; });
  tol = default_tolerances();
  EXPECT_EQ(find_row(compare_tables(table("a", base), table("b", cur), tol), "uffd-wp", "write_max_us"), nullptr);
  set_tolerance(tol, "write_max_us=10", "--tolerance");
  auto rep = compare_tables(table("a", base), table("b", cur), tol);
  ASSERT_NE(find_row(rep, "uffd-wp", "write_max_us"), nullptr);
  EXPECT_EQ(find_row(rep, "uffd-wp", "write_max_us")->verdict, Verdict::kRegressed);
}

TEST(Compare, BadToleranceIsAUsageErrorNamingTheFlag) {
  struct Case {
    std::string assignment, flag, must_mention;
  } cases[] = {
      {"completion_s", "--tolerance", "--tolerance"},    {"nosuch_s=2", "--tolerance", "nosuch_s"},
      {"completion_s=fast", "--tolerance", "fast"},      {"completion_s=0.5", "--tolerance", "at least 1"},
      {"completion_s=-1", "--floor", "negative"},        {"=2", "--floor", "--floor"},
  };
  for (const auto& c : cases) {
    auto tol = default_tolerances();
    try {
      set_tolerance(tol, c.assignment, c.flag);
      ADD_FAILURE() << c.assignment << " was accepted";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(c.must_mention), std::string::npos) << e.what();
    }
  }
}

TEST(Compare, MissingColumnIsAUsageErrorNamingColumnAndFile) {
  const std::string full = csv_text(baseline_runs());
  for (const char* column : {"completion_s", "strategy", "params", "verified", "status", "duplicate_pages"}) {
    SCOPED_TRACE(column);
    CsvTable good = parse_csv_table("good.csv", full);
    CsvTable bad = parse_csv_table("results/old.csv", without_column(full, column));
    for (bool bad_is_baseline : {true, false}) {
      try {
        compare_tables(bad_is_baseline ? bad : good, bad_is_baseline ? good : bad);
        ADD_FAILURE() << "accepted a table without " << column;
      } catch (const UsageError& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find(column), std::string::npos) << msg;
        EXPECT_NE(msg.find("results/old.csv"), std::string::npos) << msg;
      }
    }
  }
}

TEST(Compare, LabelsShowOnlyTheParametersThatTellCasesApart) {
  auto runs = baseline_runs();
  RunResult big = rep_of("uffd-wp", 0);
  big.region_bytes = 1ull << 30;
  runs.push_back(big);
  CompareReport rep = compare_tables(table("a", runs), table("b", runs));
  EXPECT_NE(find_row(rep, "uffd-wp mem=1.0GiB", "status"), nullptr) << format_report_text(rep, false);
  EXPECT_NE(find_row(rep, "uffd-wp mem=64.0MiB", "status"), nullptr) << format_report_text(rep, false);
  const CompareRow* sc = find_row(rep, "stop-copy", "status");
  ASSERT_NE(sc, nullptr);
  EXPECT_EQ(sc->case_label, "stop-copy");
}

TEST(Compare, ReportFormats) {
  auto base = baseline_runs();
  auto cur = base;
  each(cur, "stop-copy", [](RunResult& r) { r.completion_s *= 3; });
  CompareReport rep = compare_tables(table("a", base), table("b", cur));
  std::string text = format_report_text(rep, true);
  EXPECT_NE(text.find("REGRESSED"), std::string::npos) << text;
  EXPECT_EQ(text.find("uffd-wp"), std::string::npos) << "problems only:\n" << text;
  EXPECT_NE(text.find("3.00x"), std::string::npos) << text;
  std::string md = format_report_markdown(rep, false);
  EXPECT_NE(md.find("| case | check | baseline | current | ratio | p (reps) | verdict |"), std::string::npos) << md;
  EXPECT_NE(md.find("**REGRESSED**"), std::string::npos) << md;
  EXPECT_NE(md.find("| uffd-wp |"), std::string::npos) << md;
}

TEST(CsvTable, ReadsQuotedFieldsAndRoundTrips) {
  const std::string text =
      "a,b,c\r\n"
      "1,\"x, y\",\"say \"\"hi\"\"\"\r\n"
      "\n"
      "2,,plain\n";
  CsvTable t = parse_csv_table("q.csv", text);
  ASSERT_EQ(t.columns, (std::vector<std::string>{"a", "b", "c"}));
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0], (std::vector<std::string>{"1", "x, y", "say \"hi\""}));
  EXPECT_EQ(t.rows[1], (std::vector<std::string>{"2", "", "plain"}));
  EXPECT_EQ(t.row_lines[1], 4u);
  CsvTable again = parse_csv_table("q2.csv", format_csv_table(t));
  EXPECT_EQ(again.rows, t.rows);
  EXPECT_EQ(again.columns, t.columns);
  // And a real results row survives csv_row -> table -> text unchanged.
  RunResult r = rep_of("uffd-wp", 1);
  r.reason = "a \"quoted\", reason";
  r.params = "uffd-wp.chunk_pages=64;uffd-wp.threads=1";
  const std::string csv = csv_header() + "\n" + csv_row(r) + "\n";
  EXPECT_EQ(format_csv_table(parse_csv_table("r.csv", csv)), csv);
  EXPECT_DOUBLE_EQ(parse_csv_table("r.csv", csv).number(0, parse_csv_table("r.csv", csv).require_column("completion_s")),
                   0.21);
}

TEST(CsvTable, MalformedInputIsAUsageErrorNamingFileAndLine) {
  struct Case {
    std::string text, must_mention;
  } cases[] = {
      {"", "empty"},
      {"a,b\n1,2\n3\n", "line 3"},
      {"a,b\n1,2,3\n", "line 2"},
      {"a,b\n1,\"open\n", "line 2"},
  };
  for (const auto& c : cases) {
    try {
      parse_csv_table("bad.csv", c.text);
      ADD_FAILURE() << "accepted: " << c.text;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("bad.csv"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(c.must_mention), std::string::npos) << e.what();
    }
  }
  CsvTable t = parse_csv_table("n.csv", "x\nabc\n");
  EXPECT_THROW(t.number(0, 0), UsageError);
  EXPECT_THROW(t.require_column("y"), UsageError);
}

TEST(CompareCli, ExitCodes) {
  snaptest::TempDir tmp;
  const auto base = baseline_runs();
  auto slow = base;
  each(slow, "precopy", [](RunResult& r) { r.completion_s *= 3; });
  auto broken = base;
  broken[13].verified = "fail";
  write_file(tmp / "base.csv", csv_text(base));
  write_file(tmp / "same.csv", csv_text(base));
  write_file(tmp / "slow.csv", csv_text(slow));
  write_file(tmp / "broken.csv", csv_text(broken));
  write_file(tmp / "nocol.csv", without_column(csv_text(base), "downtime_s"));
  write_file(tmp / "garbled.csv", csv_header() + "\n1,2,3\n");
  struct Case {
    std::string args;
    int rc;
    std::vector<std::string> must_mention;
  } cases[] = {
      {"--baseline " + tmp / "base.csv" + " --current " + tmp / "same.csv", 0, {"PASS"}},
      {"--baseline " + tmp / "base.csv" + " --current " + tmp / "slow.csv", 1, {"REGRESSED", "completion_s", "FAIL"}},
      {"--baseline " + tmp / "base.csv" + " --current " + tmp / "slow.csv" + " --tolerance completion_s=3.5", 0,
       {"PASS"}},
      {"--baseline " + tmp / "base.csv" + " --current " + tmp / "broken.csv" + " --markdown", 1,
       {"**BROKEN**", "verified"}},
      {"--baseline " + tmp / "base.csv" + " --current " + tmp / "nocol.csv", 2, {"downtime_s", "nocol.csv"}},
      {"--baseline " + tmp / "nocol.csv" + " --current " + tmp / "base.csv", 2, {"downtime_s", "nocol.csv"}},
      {"--baseline " + tmp / "nosuch.csv" + " --current " + tmp / "base.csv", 2, {"nosuch.csv"}},
      {"--baseline " + tmp.path.string() + " --current " + tmp / "base.csv", 2, {"directory"}},
      {"--baseline " + tmp / "base.csv" + " --current " + tmp / "garbled.csv", 2, {"garbled.csv", "line 2"}},
      {"--baseline " + tmp / "base.csv" + " --current " + tmp / "same.csv" + " --tolerance bogus=2", 2,
       {"--tolerance", "bogus"}},
      {"--current " + tmp / "same.csv", 2, {"--baseline"}},
  };
  for (const auto& c : cases) {
    auto r = snaptest::run_snapbench("compare " + c.args);
    EXPECT_EQ(r.rc, c.rc) << c.args << "\n" << r.out;
    for (const auto& m : c.must_mention) EXPECT_NE(r.out.find(m), std::string::npos) << m << " in\n" << r.out;
    if (c.rc == 2) {
      EXPECT_LE(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line:\n" << r.out;
    }
  }
}

// A case is the parameters it sets away from their defaults: a baseline from before a strategy
// gained a parameter still matches, while a value that differs from the default (or from the
// baseline) is a case of its own.
TEST(Compare, CasesMatchOnTheParametersSetAwayFromTheirDefaults) {
  EXPECT_EQ(non_default_params("uffd-wp.chunk_pages=64;uffd-wp.release_thread=false;uffd-wp.staging=image"), "");
  EXPECT_EQ(non_default_params("uffd-wp.chunk_pages=512;uffd-wp.staging=image"), "uffd-wp.chunk_pages=512");
  EXPECT_EQ(non_default_params("uffd-wp.staging=true;made-up.knob=3"), "uffd-wp.staging=true;made-up.knob=3");
  EXPECT_EQ(non_default_params(""), "");

  auto base = baseline_runs();
  each(base, "uffd-wp", [](RunResult& r) { r.params = "uffd-wp.chunk_pages=64"; });
  auto cur = baseline_runs();
  each(cur, "uffd-wp", [](RunResult& r) { r.params = "uffd-wp.chunk_pages=64;uffd-wp.release_thread=false"; });
  CompareReport same = compare_tables(table("base", base), table("cur", cur));
  EXPECT_EQ(same.cases_missing, 0u) << format_report_text(same, false);
  EXPECT_EQ(same.cases_new, 0u);

  each(cur, "uffd-wp", [](RunResult& r) { r.params = "uffd-wp.chunk_pages=512"; });
  CompareReport other = compare_tables(table("base", base), table("cur", cur));
  EXPECT_EQ(other.cases_missing, 1u) << format_report_text(other, false);
  EXPECT_EQ(other.cases_new, 1u);
}

TEST(Compare, ABaselineWithoutTheWorkloadColumnMeansThreadsAndWorkloadsAreCasesApart) {
  auto runs = baseline_runs();
  const std::string old_baseline = without_column(csv_text(runs), "workload");
  CompareReport same = compare_tables(parse_csv_table("old", old_baseline), table("cur", runs));
  EXPECT_EQ(same.cases_missing, 0u) << format_report_text(same, false);
  EXPECT_EQ(same.cases_new, 0u);
  EXPECT_FALSE(same.failed()) << format_report_text(same, false);

  auto other = runs;
  each(other, "stop-copy", [](RunResult& r) { r.spec.workload = "other"; });
  CompareReport apart = compare_tables(parse_csv_table("old", old_baseline), table("cur", other));
  EXPECT_EQ(apart.cases_missing, 1u) << format_report_text(apart, false);
  EXPECT_EQ(apart.cases_new, 1u);
}

namespace {

// `reps` repetitions of stop-copy: completion times spread by +-6 % around `completion`, calibration
// `calib` bytes/s (the same spread, independently ordered, as on a real machine).
std::vector<RunResult> calibrated_runs(int reps, double completion, double calib) {
  std::vector<RunResult> runs;
  const double spread[] = {1.0, 1.04, 0.97, 1.06, 0.95, 1.02, 0.99, 1.05, 0.94, 1.01};
  for (int rep = 0; rep < reps; ++rep) {
    RunResult r = rep_of("stop-copy", rep);
    r.completion_s = completion * spread[rep % 10];
    r.downtime_s = r.completion_s;
    r.calib_bytes_s = calib * spread[(rep + 3) % 10];
    runs.push_back(r);
  }
  return runs;
}

}  // namespace

// A machine 1.5x slower today (every time 1.5x, the calibration 1.5x slower) is not a regression of
// the strategy; the strategy 1.5x slower on an unchanged machine is. Raw times cannot tell them apart.
TEST(Compare, TimesPerCalibrationSeparateASlowerMachineFromASlowerStrategy) {
  const auto base = calibrated_runs(6, 0.100, 6e9);
  const auto slow_machine = calibrated_runs(6, 0.150, 4e9);
  const auto slow_strategy = calibrated_runs(6, 0.150, 6e9);
  auto tol = default_tolerances();
  set_tolerance(tol, "completion_s=1.2", "--tolerance");
  set_tolerance(tol, "downtime_s=1.2", "--tolerance");
  CompareOptions opt;
  opt.tolerances = tol;

  CompareReport machine = compare_tables(table("a", base), table("b", slow_machine), opt);
  EXPECT_FALSE(machine.failed()) << format_report_text(machine, false);
  const CompareRow* c = find_row(machine, "stop-copy", "completion_s");
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->normalised);
  EXPECT_NEAR(c->ratio, 1.0, 0.1);
  EXPECT_NEAR(c->current_raw / c->baseline_raw, 1.5, 0.1);

  CompareReport strategy = compare_tables(table("a", base), table("b", slow_strategy), opt);
  EXPECT_TRUE(strategy.failed()) << format_report_text(strategy, false);
  EXPECT_EQ(find_row(strategy, "stop-copy", "completion_s")->verdict, Verdict::kRegressed);
  EXPECT_EQ(find_row(strategy, "stop-copy", "downtime_s")->verdict, Verdict::kRegressed);
  EXPECT_NE(format_report_text(strategy, true).find("completion_s/cal"), std::string::npos);

  opt.normalise = CompareOptions::Normalise::kRow;  // each row's own calibration: the same verdicts here
  EXPECT_FALSE(compare_tables(table("a", base), table("b", slow_machine), opt).failed());
  EXPECT_TRUE(compare_tables(table("a", base), table("b", slow_strategy), opt).failed());
  opt.normalise = CompareOptions::Normalise::kOff;
  EXPECT_TRUE(compare_tables(table("a", base), table("b", slow_machine), opt).failed());
}

// Without a calibration on every repetition (none, or a schema-1 table without the column) times are
// judged raw: the committed baseline keeps working after the column was added.
TEST(Compare, WithoutACalibrationTimesAreJudgedRaw) {
  const auto base = calibrated_runs(6, 0.100, 6e9);
  auto cur = calibrated_runs(6, 0.100, 6e9);
  cur[2].calib_bytes_s = 0;
  CompareReport rep = compare_tables(table("a", base), table("b", cur), CompareOptions{});
  ASSERT_NE(find_row(rep, "stop-copy", "completion_s"), nullptr);
  EXPECT_FALSE(find_row(rep, "stop-copy", "completion_s")->normalised);

  const std::string old = without_column(csv_text(base), "calib_bytes_s");
  rep = compare_tables(parse_csv_table("old.csv", old), table("b", base), CompareOptions{});
  EXPECT_FALSE(rep.failed()) << format_report_text(rep, false);
  EXPECT_FALSE(find_row(rep, "stop-copy", "completion_s")->normalised);
}

// The U test decides only where its repetitions can reach p < alpha: two samples whose medians differ
// by 1.3x but that overlap (one slow baseline repetition among fast ones, and so on) are not a
// significant change; the median rule alone calls them regressed. Separated samples are both.
TEST(Compare, TheUTestNeedsSignificanceAndTheEffect) {
  auto tol = default_tolerances();
  set_tolerance(tol, "completion_s=1.2", "--tolerance");
  set_tolerance(tol, "downtime_s=off", "--tolerance");
  CompareOptions utest;
  utest.tolerances = tol;
  CompareOptions med = utest;
  med.decision = Decision::kMedian;

  auto base = calibrated_runs(5, 0.100, 6e9);
  auto cur = calibrated_runs(5, 0.100, 6e9);
  // Baseline 0.08 0.09 0.10 0.20 0.21; current 0.085 0.13 0.14 0.15 0.22: medians 0.10 -> 0.14,
  // ranks of current among the 10: 2,5,6,7,10 -> U = 30 - 15 = 15 of 25, p = 0.69 (exact).
  const double b[] = {0.08, 0.09, 0.10, 0.20, 0.21}, c[] = {0.085, 0.13, 0.14, 0.15, 0.22};
  for (int i = 0; i < 5; ++i) {
    base[i].completion_s = b[i];
    cur[i].completion_s = c[i];
    base[i].calib_bytes_s = cur[i].calib_bytes_s = 6e9;
  }
  CompareReport u = compare_tables(table("a", base), table("b", cur), utest);
  const CompareRow* row = find_row(u, "stop-copy", "completion_s");
  ASSERT_NE(row, nullptr);
  EXPECT_NEAR(row->ratio, 1.4, 1e-9);
  EXPECT_NEAR(row->p_value, 0.6904761904761905, 1e-9);
  EXPECT_EQ(row->verdict, Verdict::kOk) << format_report_text(u, false);
  EXPECT_EQ(find_row(compare_tables(table("a", base), table("b", cur), med), "stop-copy", "completion_s")->verdict,
            Verdict::kRegressed);

  for (int i = 0; i < 5; ++i) cur[i].completion_s = 0.3 + 0.01 * i;  // every current above every baseline
  u = compare_tables(table("a", base), table("b", cur), utest);
  EXPECT_NEAR(find_row(u, "stop-copy", "completion_s")->p_value, 2.0 / 252, 1e-9);
  EXPECT_EQ(find_row(u, "stop-copy", "completion_s")->verdict, Verdict::kRegressed);
  // Significant but within the effect (every current above every baseline, medians 1.1x apart): a real
  // but small change is not a regression.
  for (int i = 0; i < 5; ++i) {
    base[i].completion_s = 0.100 + 0.001 * i;
    cur[i].completion_s = 0.110 + 0.001 * i;
  }
  u = compare_tables(table("a", base), table("b", cur), utest);
  EXPECT_NEAR(find_row(u, "stop-copy", "completion_s")->p_value, 2.0 / 252, 1e-9);
  EXPECT_EQ(find_row(u, "stop-copy", "completion_s")->verdict, Verdict::kOk);
}

// With 3 repetitions a side no ordering reaches p < 0.05 (the smallest p is 0.1): the test cannot
// decide, so the median rule does, and the row says no test was made.
TEST(Compare, TooFewRepetitionsForTheTestFallBackToTheMedianRule) {
  auto base = baseline_runs();
  auto cur = base;
  each(cur, "stop-copy", [](RunResult& r) { r.completion_s *= 3; });
  CompareReport rep = compare_tables(table("a", base), table("b", cur), CompareOptions{});
  const CompareRow* row = find_row(rep, "stop-copy", "completion_s");
  ASSERT_NE(row, nullptr);
  EXPECT_EQ(row->verdict, Verdict::kRegressed);
  EXPECT_DOUBLE_EQ(row->p_value, -1);
}

namespace {

// Four stop-copy cases (rates 0..300 MiB/s) of very different times, `reps` repetitions spread 0.7-1.3
// around `scale` x the case's time; calibration constant.
std::vector<RunResult> four_cases(double scale, bool reversed) {
  const double spread[] = {0.7, 0.85, 1.0, 1.15, 1.3};
  const char* rates[] = {"0", "100MiB/s", "200MiB/s", "300MiB/s"};
  std::vector<RunResult> runs;
  for (int c = 0; c < 4; ++c)
    for (int rep = 0; rep < 5; ++rep) {
      RunResult r = rep_of("stop-copy", rep);
      r.spec.rate = rates[c];
      r.completion_s = r.downtime_s = 0.1 * (1 << c) * scale * spread[reversed ? 4 - rep : rep];
      r.calib_bytes_s = 6e9;
      runs.push_back(r);
    }
  return runs;
}

}  // namespace

// Each case alone cannot tell a 1.5x slowdown from noise when its repetitions overlap (5 against 5,
// three pairs out of order: p = 0.056); pooled over the strategy's four cases, each repetition relative
// to its case's baseline median, 20 against 20 can (p < 1e-4). The unchanged table passes either way, and
// a metric whose baseline median is 0 (stop-copy's freeze) is still judged per case.
TEST(Compare, PoolingAStrategysCasesFindsWhatOneCaseCannot) {
  const auto base = four_cases(1.0, false);
  const auto slow = four_cases(1.5, true);
  CompareOptions opt;
  set_tolerance(opt.tolerances, "completion_s=1.3", "--tolerance");
  set_tolerance(opt.tolerances, "downtime_s=1.3", "--tolerance");
  opt.alpha = 0.01;

  CompareReport per_case = compare_tables(table("a", base), table("b", slow), opt);
  EXPECT_FALSE(per_case.failed()) << format_report_text(per_case, false);
  const CompareRow* one = find_row(per_case, "stop-copy rate=0", "completion_s");
  ASSERT_NE(one, nullptr);
  EXPECT_NEAR(one->p_value, 14.0 / 252, 1e-9);

  opt.pool = CompareOptions::Pool::kStrategy;
  CompareReport pooled = compare_tables(table("a", base), table("b", slow), opt);
  EXPECT_TRUE(pooled.failed()) << format_report_text(pooled, false);
  const CompareRow* all = find_row(pooled, "stop-copy (4 cases)", "completion_s");
  ASSERT_NE(all, nullptr) << format_report_text(pooled, false);
  EXPECT_EQ(all->verdict, Verdict::kRegressed);
  EXPECT_EQ(all->pooled_cases, 4u);
  EXPECT_EQ(all->baseline_n, 20u);
  EXPECT_EQ(all->current_n, 20u);
  EXPECT_NEAR(all->ratio, 1.5, 1e-9);
  EXPECT_LT(all->p_value, 1e-4);
  EXPECT_EQ(find_row(pooled, "stop-copy rate=0", "completion_s"), nullptr);  // no per-case row left
  EXPECT_NE(find_row(pooled, "stop-copy rate=0", "freeze_s"), nullptr);    // baseline median 0: per case
  EXPECT_NE(format_report_text(pooled, true).find("x1.5 rel"), std::string::npos) << format_report_text(pooled, true);

  CompareReport same = compare_tables(table("a", base), table("b", four_cases(1.0, true)), opt);
  EXPECT_FALSE(same.failed()) << format_report_text(same, false);
  EXPECT_NEAR(find_row(same, "stop-copy (4 cases)", "completion_s")->ratio, 1.0, 1e-9);
  // The invariants stay per case and exact: one unverified repetition breaks its case.
  auto broken = four_cases(1.0, true);
  broken[7].verified = "fail";
  CompareReport b = compare_tables(table("a", base), table("b", broken), opt);
  EXPECT_TRUE(b.failed());
  EXPECT_EQ(find_row(b, "stop-copy rate=100MiB/s", "verified")->verdict, Verdict::kBroken);
}

TEST(CompareCli, DecisionFlags) {
  snaptest::TempDir tmp;
  const auto base = calibrated_runs(6, 0.100, 6e9);
  write_file(tmp / "base.csv", csv_text(base));
  write_file(tmp / "slow.csv", csv_text(calibrated_runs(6, 0.300, 6e9)));
  write_file(tmp / "machine.csv", csv_text(calibrated_runs(6, 0.300, 2e9)));
  const std::string files = " --baseline " + tmp / "base.csv" + " --current ";
  struct Case {
    std::string args;
    int rc;
    std::string must_mention;
  } cases[] = {
      {files + tmp / "slow.csv", 1, "completion_s/cal"},
      {files + tmp / "machine.csv", 0, "PASS"},
      {files + tmp / "machine.csv" + " --normalise off", 1, "REGRESSED"},
      // The last value wins, so flags after scripts/regression-check's settings override them.
      {files + tmp / "machine.csv" + " --normalise off --normalise calib", 0, "PASS"},
      {files + tmp / "slow.csv" + " --decision median", 1, "REGRESSED"},
      // 6 vs 6 cannot reach p < 1e-4 (the smallest p is 2/924): the median rule decides alone.
      {files + tmp / "slow.csv" + " --alpha 0.0001", 1, "REGRESSED"},
      {files + tmp / "slow.csv" + " --decision vote", 2, "--decision"},
      {files + tmp / "slow.csv" + " --alpha 1.5", 2, "--alpha"},
      {files + tmp / "slow.csv" + " --normalise maybe", 2, "--normalise"},
      {files + tmp / "slow.csv" + " --pool strategy", 1, "stop-copy (1 case)"},
      {files + tmp / "machine.csv" + " --pool strategy", 0, "PASS"},
      {files + tmp / "slow.csv" + " --pool tracker", 2, "--pool"},
  };
  for (const auto& c : cases) {
    auto r = snaptest::run_snapbench("compare" + c.args);
    EXPECT_EQ(r.rc, c.rc) << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find(c.must_mention), std::string::npos) << c.must_mention << " in\n" << r.out;
  }
}
