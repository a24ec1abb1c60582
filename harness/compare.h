// Regression checks between two result sets: runs are matched by their parameters, each metric's
// repetitions are judged (a Mann-Whitney U test and a minimum effect, or medians within a ratio; times
// relative to each run's same-run calibration), and invariants are checked exactly on the current rows.
// Pure functions over parsed tables (no files), so tests need none. Formatting: compare_format.h.
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
  // The minimum effect: REGRESSED above baseline x ratio, improved below baseline / ratio (medians,
  // of the times per calibration when normalised); 0 = not checked.
  double ratio = 1.5;
  double floor = 0;        // absolute differences up to this are ignored (noise), in the column's unit
  std::string strategy;    // only cases of these strategies, comma-separated ("" = every strategy)
};

// The defaults, tuned for a shared 2-core machine (documented in docs/compare.md). Some metrics are
// listed with ratio 0 (not checked) so that --tolerance can switch them on.
std::vector<MetricTolerance> default_tolerances();
// Applies "METRIC=RATIO" (or METRIC=off) from --tolerance, or "METRIC=VALUE" from --floor
// (`flag` names which); throws UsageError naming the flag and the metric on bad input.
void set_tolerance(std::vector<MetricTolerance>& tolerances, const std::string& assignment, const std::string& flag);

// How a metric's repetitions are judged.
enum class Decision {
  kUTest,   // significant (Mann-Whitney U, two-sided p < alpha) AND the medians differ beyond the ratio;
            // with too few repetitions for p < alpha to be possible, the median rule alone
  kMedian,  // the medians differ beyond the ratio (and the floor)
};

struct CompareOptions {
  std::vector<MetricTolerance> tolerances = default_tolerances();
  Decision decision = Decision::kUTest;
  double alpha = 0.05;  // significance level of the U test (Google Benchmark's compare.py default)
  // Times (metrics in seconds) are judged per calibration: time x calibration / region_bytes, the
  // snapshot's time in units of "saving the region at the calibration rate". kTable (the default)
  // uses each table's median calib_bytes_s (every run measures one; one run's, ~10 ms long, is too
  // noisy on a shared machine, their median tracks the machine's speed that day); kRow each row's
  // own. A case where a row lacks a calibration (none, or a table from before the column existed)
  // is judged raw.
  enum class Normalise { kOff, kTable, kRow } normalise = Normalise::kTable;
  // kCase judges each case's repetitions on their own. kStrategy pools the cases of each
  // strategy[/tracker]: every repetition divided by its case's baseline median (of the judged values),
  // then one test per strategy[/tracker] and metric over all of them. More repetitions per test and
  // fewer tests: a shared machine's per-case noise raises fewer false alarms and a slower strategy is
  // found with fewer repetitions per case. A case whose baseline median is 0 is judged on its own.
  enum class Pool { kCase, kStrategy } pool = Pool::kCase;
};

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
  double baseline_value = 0, current_value = 0;  // medians (metrics only; per calibration when normalised)
  double baseline_raw = 0, current_raw = 0;      // medians of the metric as recorded (metrics only)
  std::string unit;        // the metric's unit (metric rows only; their baseline/current text is empty)
  bool normalised = false; // values are times per calibration
  double p_value = -1;     // two-sided Mann-Whitney p; -1 when no test was made
  size_t baseline_n = 0, current_n = 0;  // repetitions judged
  double ratio = -1;       // current / baseline medians; -1 when it does not apply
  // Pooled rows (Pool::kStrategy): the cases pooled; the values are then relative to each case's
  // baseline median and the raw ones are the median over the cases of each case's median.
  size_t pooled_cases = 0;
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

// A params column value ("unit.param=value;...") without the entries at their registered default:
// what tells a case apart in a comparison.
std::string non_default_params(const std::string& params);

// Compares `current` against `baseline`. Throws UsageError (naming the column and the file) when a
// table lacks a column the comparison needs, or a metric cell is not a number. calib_bytes_s is
// optional: a table without it (schema 1) has no calibration, its times are judged raw.

CompareReport compare_tables(const CsvTable& baseline, const CsvTable& current, const CompareOptions& options);
CompareReport compare_tables(const CsvTable& baseline, const CsvTable& current,
                             const std::vector<MetricTolerance>& tolerances = default_tolerances());

}  // namespace snap
