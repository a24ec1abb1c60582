// `snapbench compare`: checks a current result set against a baseline; exit 1 when anything regressed.
#include <cmath>
#include <cstdio>
#include <memory>

#include "core/error.h"
#include "harness/commands.h"
#include "harness/compare.h"
#include "harness/compare_format.h"
#include "core/error.h"
#include "harness/csv_table.h"
#include "harness/machines.h"

namespace snap {

namespace {

std::string tolerance_help() {
  std::string help =
      "METRIC=RATIO: the minimum effect, current/baseline median above RATIO (and significant with --decision "
      "utest) is REGRESSED (lower is better; off disables). Defaults:";
  for (const auto& t : default_tolerances()) {
    char ratio[32] = "off", floor[48];
    if (t.ratio > 0) std::snprintf(ratio, sizeof ratio, "%g", t.ratio);
    std::snprintf(floor, sizeof floor, "%.10g", t.floor);
    help += "\n  " + t.metric + "=" + ratio + " (floor " + floor + (t.unit.empty() ? "" : " " + t.unit) +
            (t.strategy.empty() ? "" : ", " + t.strategy + " only") + ")";
  }
  return help;
}

}  // namespace

void add_compare_command(CLI::App& app, int& rc) {
  auto* cmd = app.add_subcommand(
      "compare",
      "check a result CSV against a baseline: per case and metric a Mann-Whitney U test over the repetitions and a "
      "minimum effect (times per same-run calibration), invariants (verified=pass, no duplicates for strategies that never re-save a page, "
      "ok stays ok) and missing cases; exit 1 on a regression");
  struct Opts {
    std::string baseline, current, host;
    std::vector<std::string> tolerances, floors;
    bool markdown = false;
    bool problems_only = false;
    std::string decision = "utest", normalise = "calib", pool = "case";
    double alpha = 0.05;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--baseline", o->baseline, "the reference results CSV")->required();
  cmd->add_option("--current", o->current, "the results CSV to check")->required();
  cmd->add_option("--tolerance", o->tolerances, tolerance_help())->take_all();
  cmd->add_option("--floor", o->floors,
                  "METRIC=VALUE: absolute differences up to VALUE (in the column's unit) are noise, never a regression")
      ->take_all();
  cmd->add_option("--host", o->host,
                  "keep only the current rows run on this host (its host column), e.g. one machine of a merged "
                  "cluster run; a file without the column (schema_version 1-3) is kept whole");
  cmd->add_option("--decision", o->decision,
                  "utest: REGRESSED when a two-sided Mann-Whitney U test over the repetitions gives p < --alpha AND the "
                  "medians differ beyond the metric's ratio and floor (with too few repetitions for p < alpha, the "
                  "median rule alone); median: the medians beyond ratio and floor only")
      ->capture_default_str()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_option("--alpha", o->alpha, "significance level of the U test (two-sided)")
      ->capture_default_str()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_option("--normalise", o->normalise,
                  "calib: judge times (_s metrics) per calibration, each table's median calib_bytes_s (the machine's "
                  "speed during that run), so a uniformly slower machine is no regression; row: per each row's own "
                  "calibration (noisier); off: raw times. Cases without a calibration are judged raw")
      ->capture_default_str()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_option("--pool", o->pool,
                  "case: one test per case and metric; strategy: per strategy[/tracker] and metric one test over the "
                  "repetitions of all its cases, each relative to its case's baseline median (more repetitions per "
                  "test, fewer tests); a case whose baseline median is 0 is judged on its own")
      ->capture_default_str()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_flag("--markdown", o->markdown, "print the table as Markdown (for a CI job summary)");
  cmd->add_flag("--problems-only", o->problems_only, "leave out the rows whose verdict is ok or improved");
  cmd->callback([o, &rc]() {
    CompareOptions options;
    for (const auto& t : o->tolerances) set_tolerance(options.tolerances, t, "--tolerance");
    for (const auto& f : o->floors) set_tolerance(options.tolerances, f, "--floor");
    if (o->decision != "utest" && o->decision != "median")
      throw UsageError("--decision: expected utest or median, got '" + o->decision + "'");
    options.decision = o->decision == "utest" ? Decision::kUTest : Decision::kMedian;
    if (!(o->alpha > 0 && o->alpha < 1)) throw UsageError("--alpha: must be between 0 and 1 (exclusive)");
    options.alpha = o->alpha;
    if (o->normalise == "calib") options.normalise = CompareOptions::Normalise::kTable;
    else if (o->normalise == "row") options.normalise = CompareOptions::Normalise::kRow;
    else if (o->normalise == "off") options.normalise = CompareOptions::Normalise::kOff;
    else throw UsageError("--normalise: expected calib, row or off, got '" + o->normalise + "'");
    if (o->pool == "case") options.pool = CompareOptions::Pool::kCase;
    else if (o->pool == "strategy") options.pool = CompareOptions::Pool::kStrategy;
    else throw UsageError("--pool: expected case or strategy, got '" + o->pool + "'");
    CsvTable baseline = read_csv_table(o->baseline);
    CsvTable current = read_csv_table(o->current);
    if (!o->host.empty()) {
      current = rows_of_host(current, o->host);
      if (current.rows.empty())
        throw UsageError("--host: no row of " + o->current + " ran on '" + o->host + "' (machines: " +
                         list_machines(machines_in(read_csv_table(o->current))) + ")");
    }
    CompareReport report = compare_tables(baseline, current, options);
    std::string text = o->markdown ? format_report_markdown(report, o->problems_only)
                                   : format_report_text(report, o->problems_only);
    std::fputs(text.c_str(), stdout);
    rc = report.failed() ? 1 : 0;
  });
}

}  // namespace snap
