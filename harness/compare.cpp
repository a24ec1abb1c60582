// Matches runs of two result tables by their parameters and judges every metric and invariant
// (formatting is compare_format.cpp).
#include "harness/compare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <set>

#include "core/error.h"
#include "core/params.h"
#include "core/units.h"
#include "harness/machines.h"
#include "harness/mann_whitney.h"
#include "strategies/strategy.h"
#include "strategies/tracking/tracker.h"

namespace snap {

namespace {

// Strategies whose image must hold every page at most once (their registry entry says they never
// re-save a page), so any duplicate record is a bug. A strategy this build does not know is not checked.
bool must_have_no_duplicates(const std::string& strategy) {
  const StrategyEntry* e = strategy_registry().find(strategy);
  return e && !e->may_save_duplicates && e->produces_image;
}

// Whether a tolerance judges a strategy's cases (its `strategy` is a comma-separated list; empty: all).
bool applies_to(const MetricTolerance& t, const std::string& strategy) {
  if (t.strategy.empty()) return true;
  for (size_t at = 0; at <= t.strategy.size();) {
    const size_t comma = std::min(t.strategy.find(',', at), t.strategy.size());
    if (t.strategy.compare(at, comma - at, strategy) == 0) return true;
    at = comma + 1;
  }
  return false;
}

// Where the columns the comparison reads are in one table.
struct Layout {
  std::vector<size_t> key;
  size_t strategy = 0, tracker = 0, region_bytes = 0, status = 0, reason = 0, verified = 0, duplicate_pages = 0;
  std::vector<long> metric;  // per tolerance; -1 for an unchecked metric the table lacks
  long schema_version = -1;
  long calib = -1;           // calib_bytes_s; -1 in tables from before the calibration (schema 1)
};

Layout layout_of(const CsvTable& t, const std::vector<MetricTolerance>& tolerances) {
  Layout l;
  for (const auto& c : case_key_columns()) l.key.push_back(t.require_column(c));
  l.strategy = t.require_column("strategy");
  l.tracker = t.require_column("tracker");
  l.region_bytes = t.require_column("region_bytes");
  l.status = t.require_column("status");
  l.reason = t.require_column("reason");
  l.verified = t.require_column("verified");
  l.duplicate_pages = t.require_column("duplicate_pages");
  for (const auto& m : tolerances) l.metric.push_back(m.ratio > 0 ? long(t.require_column(m.metric)) : t.find_column(m.metric));
  l.schema_version = t.find_column("schema_version");
  l.calib = t.find_column("calib_bytes_s");
  return l;
}

struct Case {
  std::vector<std::string> key;   // case_key_columns() values
  std::string strategy, tracker;
  std::vector<size_t> base, cur;  // row indices in each table
};

std::string trimmed(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n - 3) + "..."; }

// "3 ok" or "2 ok, 1 failed (reason of the first)".
std::string status_summary(const CsvTable& t, const Layout& l, const std::vector<size_t>& rows) {
  if (rows.empty()) return "(none)";
  std::map<std::string, size_t> counts;
  std::string reason;
  for (size_t r : rows) {
    const auto& s = t.rows[r][l.status];
    ++counts[s];
    if (s != "ok" && reason.empty()) reason = t.rows[r][l.reason];
  }
  std::string out;
  for (const char* s : {"ok", "unsupported", "failed"}) {
    auto it = counts.find(s);
    if (it == counts.end()) continue;
    out += (out.empty() ? "" : ", ") + std::to_string(it->second) + " " + it->first;
    counts.erase(it);
  }
  for (const auto& [s, n] : counts) out += (out.empty() ? "" : ", ") + std::to_string(n) + " " + s;
  if (!reason.empty()) out += " (" + trimmed(reason, 60) + ")";
  return out;
}

size_t count_status(const CsvTable& t, const Layout& l, const std::vector<size_t>& rows, const std::string& s) {
  return size_t(std::count_if(rows.begin(), rows.end(), [&](size_t r) { return t.rows[r][l.status] == s; }));
}

// "pass 3/3", "fail 1/3", or "off" when no row was verified.
std::string verified_summary(const CsvTable& t, const Layout& l, const std::vector<size_t>& rows, size_t* not_pass) {
  size_t checked = 0, passed = 0;
  for (size_t r : rows) {
    const auto& v = t.rows[r][l.verified];
    if (v == "off") continue;
    ++checked;
    if (v == "pass") ++passed;
  }
  if (not_pass) *not_pass = checked - passed;
  if (checked == 0) return "off";
  return (passed == checked ? "pass " : "fail ") + std::to_string(passed == checked ? passed : checked - passed) + "/" +
         std::to_string(checked);
}

double max_of(const CsvTable& t, size_t column, const std::vector<size_t>& rows) {
  double m = 0;
  for (size_t r : rows) m = std::max(m, t.number(r, column));
  return m;
}

std::string pages_text(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.0f", v);
  return b;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Short names for the case label.
std::string label_part(const std::string& column, const std::string& value) {
  if (column == "region_bytes" || column == "bandwidth_bytes_s") {
    char* end = nullptr;
    double v = std::strtod(value.c_str(), &end);
    std::string shown = value;
    if (end && *end == '\0' && v > 0) {
      shown = format_bytes(v);
      shown.erase(std::remove(shown.begin(), shown.end(), ' '), shown.end());
    }
    return (column == "region_bytes" ? "mem=" : "bw=") + shown + (column == "region_bytes" ? "" : "/s");
  }
  if (column == "numa_node") return "node=" + value;
  if (column == "params" && value.empty()) return "params=(defaults)";
  if (column == "warmup_s") return "warmup=" + value + "s";
  return column + "=" + value;
}

// Labels name the strategy (and tracker) and then only the parameters that differ between cases
// of that strategy: short where the matrix is small, unambiguous always.
std::vector<std::string> case_labels(const std::vector<Case>& cases) {
  const auto& cols = case_key_columns();
  auto named = [](const std::string& col) { return col == "strategy" || col == "tracker"; };
  using Group = std::pair<std::string, std::string>;  // strategy, tracker
  std::map<Group, const Case*> first;
  std::map<Group, std::vector<bool>> varying;
  for (const auto& c : cases) {
    Group g{c.strategy, c.tracker};
    auto [it, fresh] = first.emplace(g, &c);
    auto& v = varying[g];
    v.resize(cols.size(), false);
    for (size_t j = 0; j < cols.size() && !fresh; ++j)
      if (!named(cols[j]) && it->second->key[j] != c.key[j]) v[j] = true;
  }
  std::vector<std::string> labels;
  for (const auto& c : cases) {
    std::string label = c.strategy;
    if (!c.tracker.empty()) label.append("/").append(c.tracker);
    const auto& v = varying[{c.strategy, c.tracker}];
    for (size_t j = 0; j < cols.size(); ++j)
      if (v[j]) label.append(" ").append(label_part(cols[j], c.key[j]));
    labels.push_back(label);
  }
  return labels;
}

bool has_calibration(const CsvTable& t, const Layout& l, const std::vector<size_t>& rows) {
  if (l.calib < 0) return false;
  for (size_t r : rows)
    if (!(t.number(r, size_t(l.calib)) > 0)) return false;
  return true;
}

// The median calibration of a table's finished runs that have one (0: none has).
double table_calibration(const CsvTable& t, const Layout& l) {
  if (l.calib < 0) return 0;
  std::vector<double> v;
  for (size_t r = 0; r < t.rows.size(); ++r)
    if (t.rows[r][l.status] == "ok" && t.number(r, size_t(l.calib)) > 0) v.push_back(t.number(r, size_t(l.calib)));
  return v.empty() ? 0 : median(v);
}

// One side's repetitions of a metric: as recorded, and the values judged (per calibration when
// normalised: time x calibration / region_bytes, with the table's calibration, or each row's own
// when `calib` is 0).
struct Sample {
  std::vector<double> raw, judged;
};

Sample sample(const CsvTable& t, const Layout& l, size_t column, const std::vector<size_t>& rows, bool normalised,
              double calib) {
  Sample s;
  for (size_t r : rows) {
    const double v = t.number(r, column);
    s.raw.push_back(v);
    if (!normalised) {
      s.judged.push_back(v);
      continue;
    }
    const double c = calib > 0 ? calib : t.number(r, size_t(l.calib));
    s.judged.push_back(v * c / t.number(r, l.region_bytes));
  }
  return s;
}

double ratio_of(double b, double c) { return b != 0 ? c / b : (c == 0 ? 1.0 : std::numeric_limits<double>::infinity()); }

// The verdict on one metric of one case. The floor is on the recorded medians (an absolute amount of
// noise); the effect (ratio) on the judged medians; the U test on the judged repetitions.
// `diff` is the recorded difference the floor applies to (NaN: the difference of the medians of `raw`).
CompareRow judge(const std::string& label, const MetricTolerance& t, const CompareOptions& options, const Sample& b,
                 const Sample& c, bool normalised, double diff = std::numeric_limits<double>::quiet_NaN()) {
  CompareRow r;
  r.case_label = label;
  r.check = t.metric;
  r.unit = t.unit;
  r.normalised = normalised;
  r.baseline_value = median(b.judged);
  r.current_value = median(c.judged);
  r.baseline_raw = median(b.raw);
  r.current_raw = median(c.raw);
  r.baseline_n = b.raw.size();
  r.current_n = c.raw.size();
  r.ratio = ratio_of(r.baseline_value, r.current_value);
  if (std::isnan(diff)) diff = r.current_raw - r.baseline_raw;
  const bool worse = diff > t.floor && r.current_value > r.baseline_value * t.ratio;
  const bool better = -diff > t.floor && r.current_value * t.ratio < r.baseline_value;
  bool significant = true;
  if (options.decision == Decision::kUTest && mann_whitney_min_p(r.baseline_n, r.current_n) < options.alpha) {
    r.p_value = mann_whitney(c.judged, b.judged).p;
    significant = r.p_value < options.alpha;
  }
  r.verdict = !significant ? Verdict::kOk : worse ? Verdict::kRegressed : better ? Verdict::kImproved : Verdict::kOk;
  return r;
}

// One strategy[/tracker]'s metric pooled over its cases (CompareOptions::Pool::kStrategy): each
// repetition relative to its case's baseline median, and per case the recorded medians.
struct Pooled {
  std::string label;
  size_t metric = 0;
  Sample base, cur;                                // judged: relative to the case's baseline median
  std::vector<double> base_medians, cur_medians;   // recorded medians, one per case
  bool normalised = true;                          // every case per calibration
};

void pool_case(Pooled& p, const Sample& b, const Sample& c, bool normalised) {
  const double scale = median(b.judged);
  for (double v : b.judged) p.base.judged.push_back(v / scale);
  for (double v : c.judged) p.cur.judged.push_back(v / scale);
  p.base.raw.insert(p.base.raw.end(), b.raw.begin(), b.raw.end());
  p.cur.raw.insert(p.cur.raw.end(), c.raw.begin(), c.raw.end());
  p.base_medians.push_back(median(b.raw));
  p.cur_medians.push_back(median(c.raw));
  p.normalised = p.normalised && normalised;
}

// The verdict on a pooled metric: the U test over every repetition of the pooled cases, the effect on
// the pooled (relative) medians, the floor on the median over the cases of the recorded difference.
CompareRow judge_pooled(const Pooled& p, const MetricTolerance& t, const CompareOptions& options) {
  std::vector<double> diffs;
  for (size_t i = 0; i < p.base_medians.size(); ++i) diffs.push_back(p.cur_medians[i] - p.base_medians[i]);
  const size_t n = p.base_medians.size();
  CompareRow r = judge(p.label + " (" + std::to_string(n) + (n == 1 ? " case)" : " cases)"), t, options, p.base, p.cur,
                       p.normalised, median(diffs));
  r.pooled_cases = p.base_medians.size();
  r.baseline_raw = median(p.base_medians);
  r.current_raw = median(p.cur_medians);
  return r;
}

std::set<std::string> column_values(const CsvTable& t, long column) {
  std::set<std::string> out;
  if (column >= 0)
    for (const auto& r : t.rows) out.insert(r[size_t(column)]);
  return out;
}

std::string joined(const std::set<std::string>& s) {
  std::string out;
  for (const auto& v : s) out += (out.empty() ? "" : ",") + v;
  return out.empty() ? "?" : out;
}

}  // namespace

std::vector<MetricTolerance> default_tolerances() {
  return {
      {"completion_s", "s", 1.5, 0.005, ""},
      {"downtime_s", "s", 3.0, 0.005, ""},
      {"freeze_s", "s", 3.0, 0.005, ""},
      {"write_p50_us", "us", 3.0, 50, ""},
      {"write_p99_us", "us", 3.0, 50, ""},
      {"image_ratio", "", 1.5, 0.1, ""},
      // Only the strategies that may re-save a page have duplicates to compare (the others must have none).
      {"duplicate_pages", "pages", 1.5, 256,
       strategy_registry().names_if([](const StrategyEntry& e) { return e.may_save_duplicates; }, ",")},
      {"extra_rss_bytes", "bytes", 1.5, 4 << 20, ""},
      // Off by default (too noisy, or implied by the ones above); --tolerance METRIC=RATIO enables them.
      {"write_p999_us", "us", 0, 100, ""},
      {"write_max_us", "us", 0, 1000, ""},
      {"image_bytes", "bytes", 0, 1 << 20, ""},
      {"pages_saved", "pages", 0, 256, ""},
  };
}

void set_tolerance(std::vector<MetricTolerance>& tolerances, const std::string& assignment, const std::string& flag) {
  auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == assignment.size())
    throw UsageError(flag + ": expected METRIC=VALUE, got '" + assignment + "'");
  std::string metric = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  auto it = std::find_if(tolerances.begin(), tolerances.end(), [&](const auto& t) { return t.metric == metric; });
  if (it == tolerances.end()) {
    std::string known;
    for (const auto& t : tolerances) known += (known.empty() ? "" : ", ") + t.metric;
    throw UsageError(flag + ": unknown metric '" + metric + "' (one of: " + known + ")");
  }
  double v = 0;
  if (flag == "--tolerance" && (text == "off" || text == "0")) {
    it->ratio = 0;
    return;
  }
  char* end = nullptr;
  v = std::strtod(text.c_str(), &end);
  if (*end != '\0' || !std::isfinite(v))
    throw UsageError(flag + ": " + metric + ": '" + text + "' is not a number");
  if (flag == "--tolerance") {
    if (v < 1) throw UsageError(flag + ": " + metric + ": a ratio must be at least 1 (or off), got " + text);
    it->ratio = v;
  } else {
    if (v < 0) throw UsageError(flag + ": " + metric + ": a floor cannot be negative, got " + text);
    it->floor = v;
  }
}

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::kOk: return "ok";
    case Verdict::kImproved: return "improved";
    case Verdict::kRegressed: return "REGRESSED";
    case Verdict::kBroken: return "BROKEN";
    case Verdict::kMissing: return "MISSING";
    case Verdict::kNew: return "new";
  }
  return "?";
}

size_t CompareReport::count(Verdict v) const {
  return size_t(std::count_if(rows.begin(), rows.end(), [v](const CompareRow& r) { return r.verdict == v; }));
}

bool CompareReport::failed() const {
  return count(Verdict::kRegressed) + count(Verdict::kBroken) + count(Verdict::kMissing) > 0;
}

namespace {

// The default of every parameter of every registered strategy and tracker, by "unit.param".
const std::map<std::string, std::string>& parameter_defaults() {
  static const std::map<std::string, std::string> defaults = [] {
    std::map<std::string, std::string> d;
    for (const auto& e : strategy_registry())
      for (const auto& p : e.params) d[e.name + "." + p.name] = p.default_value;
    for (const auto& e : tracker_registry())
      for (const auto& p : e.params) d[e.name + "." + p.name] = p.default_value;
    return d;
  }();
  return defaults;
}

}  // namespace

std::string non_default_params(const std::string& params) {
  const auto& defaults = parameter_defaults();
  std::string out;
  size_t start = 0;
  while (start <= params.size()) {
    size_t end = params.find(';', start);
    if (end == std::string::npos) end = params.size();
    const std::string entry = params.substr(start, end - start);
    const size_t eq = entry.find('=');
    const auto d = eq == std::string::npos ? defaults.end() : defaults.find(entry.substr(0, eq));
    if (!entry.empty() && (d == defaults.end() || d->second != entry.substr(eq + 1)))
      out += (out.empty() ? "" : ";") + entry;
    start = end + 1;
  }
  return out;
}

CompareReport compare_tables(const CsvTable& baseline_table, const CsvTable& current_table,
                             const std::vector<MetricTolerance>& tolerances) {
  CompareOptions options;
  options.tolerances = tolerances;
  return compare_tables(baseline_table, current_table, options);
}

CompareReport compare_tables(const CsvTable& baseline_table, const CsvTable& current_table,
                             const CompareOptions& options) {
  const auto& tolerances = options.tolerances;
  CsvTable baseline = with_case_columns(baseline_table), current = with_case_columns(current_table);
  const std::vector<std::string> left_out = align_case_columns(baseline, current);
  const Layout bl = layout_of(baseline, tolerances), cl = layout_of(current, tolerances);
  CompareReport report;

  auto bv = column_values(baseline, bl.schema_version), cv = column_values(current, cl.schema_version);
  if (!bv.empty() && !cv.empty() && bv != cv)
    report.warnings.push_back("schema_version differs: baseline " + joined(bv) + ", current " + joined(cv) +
                              "; columns may not mean the same");
  for (const auto& c : left_out)
    report.warnings.push_back("only one table has column " + c + ": cases are matched without it");
  if (baseline.rows.empty()) report.warnings.push_back(baseline.source + " has no rows: nothing to compare against");
  // Medians over several machines mean nothing: say so (--host keeps one machine's rows).
  for (const CsvTable* t : {&baseline, &current}) {
    const auto machines = machines_in(*t);
    if (machines.size() > 1)
      report.warnings.push_back(t->source + " holds runs of " + std::to_string(machines.size()) + " machines (" +
                                list_machines(machines) + "): its medians pool them; compare one with --host");
  }
  // A run recorded twice (two matrices on one directory, before the directory lock) would count as two
  // repetitions: name it. A failed row and its re-run are not a repeat.
  for (const auto* tl : {&bl, &cl}) {
    const CsvTable& t = tl == &bl ? baseline : current;
    const long seed = t.find_column("seed"), rep = t.find_column("rep");
    if (seed < 0 || rep < 0) continue;
    std::map<std::vector<std::string>, size_t> first;
    size_t repeats = 0;
    std::string example;
    for (size_t r = 0; r < t.rows.size(); ++r) {
      if (t.rows[r][tl->status] == "failed") continue;
      std::vector<std::string> key;
      for (size_t c : tl->key) key.push_back(t.rows[r][c]);
      key.push_back(t.rows[r][size_t(seed)]);
      key.push_back(t.rows[r][size_t(rep)]);
      auto [it, fresh] = first.emplace(key, r);
      if (fresh) continue;
      if (++repeats == 1)
        example = t.where(r) + " repeats " + t.where(it->second) + " (strategy " + t.rows[r][tl->strategy] +
                  ", seed " + t.rows[r][size_t(seed)] + ", rep " + t.rows[r][size_t(rep)] + ")";
    }
    if (repeats)
      report.warnings.push_back(t.source + ": " + std::to_string(repeats) + " row(s) repeat a run (case, seed, rep) " +
                                "already in it, e.g. " + example + "; each copy counts as a repetition here");
  }
  const double base_calib = table_calibration(baseline, bl), cur_calib = table_calibration(current, cl);

  // Group rows into cases, baseline order first, then cases only the current table has. A case's
  // parameters are the ones it sets away from their default, so a baseline still matches after a
  // strategy gains a parameter (a changed default, or a changed value, still makes another case).
  const size_t params_key = size_t(std::find(case_key_columns().begin(), case_key_columns().end(), "params") -
                                   case_key_columns().begin());
  std::vector<Case> cases;
  std::map<std::vector<std::string>, size_t> index;
  auto add = [&](const CsvTable& t, const Layout& l, bool is_base) {
    for (size_t r = 0; r < t.rows.size(); ++r) {
      std::vector<std::string> key;
      for (size_t c : l.key) key.push_back(t.rows[r][c]);
      if (params_key < key.size()) key[params_key] = non_default_params(key[params_key]);
      auto [it, fresh] = index.emplace(key, cases.size());
      if (fresh) cases.push_back(Case{key, t.rows[r][l.strategy], t.rows[r][l.tracker], {}, {}});
      (is_base ? cases[it->second].base : cases[it->second].cur).push_back(r);
    }
  };
  add(baseline, bl, true);
  add(current, cl, false);
  const auto labels = case_labels(cases);
  std::vector<Pooled> pooled;  // Pool::kStrategy: per strategy[/tracker] and metric, in order of appearance
  std::map<std::pair<std::string, size_t>, size_t> pool_index;

  for (size_t ci = 0; ci < cases.size(); ++ci) {
    const Case& c = cases[ci];
    const std::string& label = labels[ci];
    const std::string& strategy = c.strategy;
    auto row = [&](const std::string& check, std::string b, std::string cur, Verdict v) {
      CompareRow r;
      r.case_label = label;
      r.check = check;
      r.baseline = std::move(b);
      r.current = std::move(cur);
      r.verdict = v;
      report.rows.push_back(std::move(r));
    };

    if (c.cur.empty()) {
      ++report.cases_missing;
      row("-", status_summary(baseline, bl, c.base), "(none)", Verdict::kMissing);
      continue;
    }
    if (c.base.empty()) {
      ++report.cases_new;
      row("-", "(none)", status_summary(current, cl, c.cur), Verdict::kNew);
    } else {
      ++report.cases_matched;
      // A case that worked in the baseline must work in every current repetition.
      const size_t base_ok = count_status(baseline, bl, c.base, "ok");
      const size_t cur_ok = count_status(current, cl, c.cur, "ok");
      Verdict v = Verdict::kOk;
      if (base_ok > 0 && cur_ok < c.cur.size()) v = Verdict::kBroken;
      else if (base_ok == 0 && cur_ok == c.cur.size()) v = Verdict::kImproved;
      row("status", status_summary(baseline, bl, c.base), status_summary(current, cl, c.cur), v);
    }

    // Invariants that hold exactly on every current row, whatever the baseline says.
    size_t not_pass = 0;
    std::string cur_verified = verified_summary(current, cl, c.cur, &not_pass);
    if (cur_verified != "off")
      row("verified", c.base.empty() ? "(none)" : verified_summary(baseline, bl, c.base, nullptr), cur_verified,
          not_pass ? Verdict::kBroken : Verdict::kOk);
    if (must_have_no_duplicates(strategy)) {
      double cur_max = max_of(current, cl.duplicate_pages, c.cur);
      row("duplicate_pages=0", c.base.empty() ? "(none)" : pages_text(max_of(baseline, bl.duplicate_pages, c.base)),
          pages_text(cur_max), cur_max > 0 ? Verdict::kBroken : Verdict::kOk);
    }

    // Metrics: medians over the repetitions that finished (status ok) on each side.
    if (c.base.empty()) continue;
    std::vector<size_t> base_rows, cur_rows;
    for (size_t r : c.base)
      if (baseline.rows[r][bl.status] == "ok") base_rows.push_back(r);
    for (size_t r : c.cur)
      if (current.rows[r][cl.status] == "ok") cur_rows.push_back(r);
    if (base_rows.empty() || cur_rows.empty()) continue;
    // Times are judged per calibration only when every repetition on both sides has one.
    const bool calibrated = options.normalise != CompareOptions::Normalise::kOff && base_calib > 0 &&
                            cur_calib > 0 && has_calibration(baseline, bl, base_rows) &&
                            has_calibration(current, cl, cur_rows);
    for (size_t m = 0; m < tolerances.size(); ++m) {
      const MetricTolerance& t = tolerances[m];
      if (t.ratio <= 0 || !applies_to(t, strategy)) continue;
      const bool normalised = calibrated && t.unit == "s";
      const bool per_row = options.normalise == CompareOptions::Normalise::kRow;
      Sample bs = sample(baseline, bl, size_t(bl.metric[m]), base_rows, normalised, per_row ? 0 : base_calib);
      Sample cs = sample(current, cl, size_t(cl.metric[m]), cur_rows, normalised, per_row ? 0 : cur_calib);
      if (options.pool == CompareOptions::Pool::kStrategy && median(bs.judged) > 0) {
        const std::string group = c.tracker.empty() ? strategy : strategy + "/" + c.tracker;
        auto [it, fresh] = pool_index.emplace(std::make_pair(group, m), pooled.size());
        if (fresh) pooled.push_back(Pooled{group, m, {}, {}, {}, {}, true});
        pool_case(pooled[it->second], bs, cs, normalised);
        continue;
      }
      report.rows.push_back(judge(label, t, options, bs, cs, normalised));
    }
  }
  for (const auto& p : pooled) report.rows.push_back(judge_pooled(p, tolerances[p.metric], options));
  return report;
}

}  // namespace snap
