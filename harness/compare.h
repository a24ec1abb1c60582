// Regression checks between two result sets: runs are matched by their parameters, each metric's
// median over repetitions is compared within a per-metric tolerance, and invariants are checked
// exactly on the current rows. Pure functions over parsed tables (no files), so tests need none.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "harness/csv.h"  // case_key_columns(): the parameters a case is matched on
#include "harness/csv_table.h"

namespace snap {

// How a metric (a CSV column where lower is better) may move before it counts.
struct MetricTolerance {
  std::string metric;      // CSV column
  std::string unit;        // "s", "us", "bytes", "pages" or "" (a plain number), for display
  double ratio = 1.5;      // REGRESSED above baseline x ratio, improved below baseline / ratio; 0 = not checked
  double floor = 0;        // absolute differences up to this are ignored (noise), in the column's unit
  std::string strategy;    // only cases of this strategy ("" = every strategy)
};

// The defaults, tuned for a shared 2-core machine (documented in docs/compare.md). Some metrics are
// listed with ratio 0 (not checked) so that --tolerance can switch them on.
std::vector<MetricTolerance> default_tolerances();
// Applies "METRIC=RATIO" (or METRIC=off) from --tolerance, or "METRIC=VALUE" from --floor
// (`flag` names which); throws UsageError naming the flag and the metric on bad input.
void set_tolerance(std::vector<MetricTolerance>& tolerances, const std::string& assignment, const std::string& flag);

enum class Verdict {
  kOk,         // within tolerance, or invariant holds
  kImproved,   // better than baseline beyond tolerance (or unsupported/failed before, ok now)
  kRegressed,  // worse than baseline beyond tolerance
  kBroken,     // an invariant does not hold on the current rows
  kMissing,    // a baseline case has no current rows
  kNew,        // a current case without a baseline (information)
};
const char* verdict_name(Verdict v);

struct CompareRow {
  std::string case_label;  // strategy[/tracker] plus the parameters that tell its cases apart
  std::string check;       // a metric column, or an invariant: "status", "verified", "duplicate_pages=0"
  std::string baseline;    // display text (median with unit, or a status summary)
  std::string current;
  double baseline_value = 0, current_value = 0;  // medians (metrics only)
  double ratio = -1;       // current / baseline; -1 when it does not apply
  Verdict verdict = Verdict::kOk;
};

struct CompareReport {
  std::vector<CompareRow> rows;
  size_t cases_matched = 0, cases_missing = 0, cases_new = 0;
  std::vector<std::string> warnings;  // e.g. differing schema versions
  size_t count(Verdict v) const;
  // Anything REGRESSED, BROKEN or MISSING.
  bool failed() const;
};

// Compares `current` against `baseline`. Throws UsageError (naming the column and the file) when a
// table lacks a column the comparison needs, or a metric cell is not a number.
// A params column value ("unit.param=value;...") without the entries at their registered default:
// what tells a case apart in a comparison.
std::string non_default_params(const std::string& params);

CompareReport compare_tables(const CsvTable& baseline, const CsvTable& current,
                             const std::vector<MetricTolerance>& tolerances = default_tolerances());

// The report as an aligned text table (or a Markdown table), then the summary line. With
// `problems_only`, rows whose verdict is ok are left out.
std::string format_report_text(const CompareReport& report, bool problems_only);
std::string format_report_markdown(const CompareReport& report, bool problems_only);
// "compare: ... PASS|FAIL".
std::string summary_line(const CompareReport& report);

}  // namespace snap
