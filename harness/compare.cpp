// Matches runs of two result tables by their parameters and judges every metric and invariant.
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
#include "strategies/strategy.h"
#include "strategies/tracking/tracker.h"

namespace snap {

namespace {

// Strategies whose image must hold every page at most once (their registry entry says they never
// re-save a page), so any duplicate record is a bug. A strategy this build does not know is not checked.
bool must_have_no_duplicates(const std::string& strategy) {
  const StrategyEntry* e = strategy_registry().find(strategy);
  return e && !e->may_save_duplicates && e->make()->produces_image();
}

// Where the columns the comparison reads are in one table.
struct Layout {
  std::vector<size_t> key;
  size_t strategy = 0, tracker = 0, status = 0, reason = 0, verified = 0, duplicate_pages = 0;
  std::vector<long> metric;  // per tolerance; -1 for an unchecked metric the table lacks
  long schema_version = -1;
};

Layout layout_of(const CsvTable& t, const std::vector<MetricTolerance>& tolerances) {
  Layout l;
  for (const auto& c : case_key_columns()) l.key.push_back(t.require_column(c));
  l.strategy = t.require_column("strategy");
  l.tracker = t.require_column("tracker");
  l.status = t.require_column("status");
  l.reason = t.require_column("reason");
  l.verified = t.require_column("verified");
  l.duplicate_pages = t.require_column("duplicate_pages");
  for (const auto& m : tolerances) l.metric.push_back(m.ratio > 0 ? long(t.require_column(m.metric)) : t.find_column(m.metric));
  l.schema_version = t.find_column("schema_version");
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

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string printf_string(const char* fmt, double v, const char* unit) {
  char b[64];
  std::snprintf(b, sizeof b, fmt, v, unit);
  return b;
}

std::string format_value(double v, const std::string& unit) {
  if (unit == "s") {
    double a = std::fabs(v);
    if (a == 0) return "0 s";
    if (a < 1e-3) return printf_string("%.3g %s", v * 1e6, "us");
    if (a < 1) return printf_string("%.3g %s", v * 1e3, "ms");
    return printf_string("%.3g %s", v, "s");
  }
  if (unit == "us") {
    if (std::fabs(v) >= 1000) return printf_string("%.3g %s", v / 1e3, "ms");
    return printf_string("%.3g %s", v, "us");
  }
  if (unit == "bytes") return format_bytes(v);
  if (unit == "pages") return printf_string("%.0f%s", v, "");
  return printf_string("%.4g%s", v, unit.c_str());
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

std::string ratio_text(double ratio) {
  if (ratio < 0) return "-";
  if (std::isinf(ratio)) return "inf";
  char b[32];
  std::snprintf(b, sizeof b, "%.2fx", ratio);
  return b;
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
      {"duplicate_pages", "pages", 1.5, 256, "precopy"},
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
      for (const auto& p : e.make()->params()) d[e.name + "." + p.name] = p.default_value;
    for (const auto& e : tracker_registry())
      for (const auto& p : e.make()->params()) d[e.name + "." + p.name] = p.default_value;
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
      row("duplicate_pages=0",
          c.base.empty() ? "(none)" : format_value(max_of(baseline, bl.duplicate_pages, c.base), "pages"),
          format_value(cur_max, "pages"), cur_max > 0 ? Verdict::kBroken : Verdict::kOk);
    }

    // Metrics: medians over the repetitions that finished (status ok) on each side.
    if (c.base.empty()) continue;
    std::vector<size_t> base_rows, cur_rows;
    for (size_t r : c.base)
      if (baseline.rows[r][bl.status] == "ok") base_rows.push_back(r);
    for (size_t r : c.cur)
      if (current.rows[r][cl.status] == "ok") cur_rows.push_back(r);
    if (base_rows.empty() || cur_rows.empty()) continue;
    for (size_t m = 0; m < tolerances.size(); ++m) {
      const MetricTolerance& t = tolerances[m];
      if (t.ratio <= 0 || (!t.strategy.empty() && t.strategy != strategy)) continue;
      std::vector<double> bvals, cvals;
      for (size_t r : base_rows) bvals.push_back(baseline.number(r, size_t(bl.metric[m])));
      for (size_t r : cur_rows) cvals.push_back(current.number(r, size_t(cl.metric[m])));
      const double b = median(bvals), cur = median(cvals);
      const double diff = cur - b;
      Verdict v = Verdict::kOk;
      if (diff > t.floor && cur > b * t.ratio) v = Verdict::kRegressed;
      else if (-diff > t.floor && cur * t.ratio < b) v = Verdict::kImproved;
      CompareRow r;
      r.case_label = label;
      r.check = t.metric;
      r.baseline = format_value(b, t.unit);
      r.current = format_value(cur, t.unit);
      r.baseline_value = b;
      r.current_value = cur;
      r.ratio = b != 0 ? cur / b : (cur == 0 ? 1.0 : std::numeric_limits<double>::infinity());
      r.verdict = v;
      report.rows.push_back(std::move(r));
    }
  }
  return report;
}

std::string summary_line(const CompareReport& report) {
  std::string out = "compare: " + std::to_string(report.cases_matched) + " cases matched, " +
                    std::to_string(report.cases_missing) + " missing, " + std::to_string(report.cases_new) + " new; ";
  size_t checks = 0;
  for (const auto& r : report.rows)
    if (r.verdict != Verdict::kNew && r.verdict != Verdict::kMissing) ++checks;
  out += std::to_string(checks) + " checks: " + std::to_string(report.count(Verdict::kOk)) + " ok, " +
         std::to_string(report.count(Verdict::kImproved)) + " improved, " +
         std::to_string(report.count(Verdict::kRegressed)) + " REGRESSED, " +
         std::to_string(report.count(Verdict::kBroken)) + " BROKEN";
  if (!report.failed()) return out + " -> PASS";
  // Name what failed, so the one line in a CI log says where to look.
  std::vector<std::string> what;
  for (const auto& r : report.rows) {
    if (r.verdict != Verdict::kRegressed && r.verdict != Verdict::kBroken && r.verdict != Verdict::kMissing) continue;
    std::string name = r.verdict == Verdict::kMissing ? "missing cases" : r.check;
    if (std::find(what.begin(), what.end(), name) == what.end()) what.push_back(name);
  }
  std::string names;
  for (const auto& w : what) names += (names.empty() ? "" : ", ") + w;
  return out + " -> FAIL (" + names + ")";
}

std::string format_report_text(const CompareReport& report, bool problems_only) {
  std::vector<std::vector<std::string>> cells = {{"case", "check", "baseline", "current", "ratio", "verdict"}};
  for (const auto& r : report.rows) {
    if (problems_only && (r.verdict == Verdict::kOk || r.verdict == Verdict::kImproved)) continue;
    cells.push_back({r.case_label, r.check, r.baseline, r.current, ratio_text(r.ratio), verdict_name(r.verdict)});
  }
  std::vector<size_t> width(6, 0);
  for (const auto& line : cells)
    for (size_t i = 0; i < line.size(); ++i) width[i] = std::max(width[i], line[i].size());
  std::string out;
  for (const auto& w : report.warnings) out += "warning: " + w + "\n";
  for (const auto& line : cells) {
    std::string text;
    for (size_t i = 0; i < line.size(); ++i) {
      // Numbers read best right-aligned, names left-aligned.
      bool right = i >= 2 && i <= 4;
      std::string pad(width[i] - line[i].size(), ' ');
      text += (i ? "  " : "") + (right ? pad + line[i] : line[i] + (i + 1 < line.size() ? pad : ""));
    }
    out += text + "\n";
  }
  return out + summary_line(report) + "\n";
}

std::string format_report_markdown(const CompareReport& report, bool problems_only) {
  auto cell = [](std::string s) {
    std::string out;
    for (char ch : s) out += ch == '|' ? std::string("\\|") : std::string(1, ch);
    return out;
  };
  std::string out;
  for (const auto& w : report.warnings) out += "> warning: " + cell(w) + "\n\n";
  out += "| case | check | baseline | current | ratio | verdict |\n|---|---|--:|--:|--:|---|\n";
  for (const auto& r : report.rows) {
    if (problems_only && (r.verdict == Verdict::kOk || r.verdict == Verdict::kImproved)) continue;
    std::string verdict = verdict_name(r.verdict);
    if (r.verdict == Verdict::kRegressed || r.verdict == Verdict::kBroken || r.verdict == Verdict::kMissing)
      verdict = "**" + verdict + "**";
    out += "| " + cell(r.case_label) + " | " + cell(r.check) + " | " + cell(r.baseline) + " | " + cell(r.current) +
           " | " + ratio_text(r.ratio) + " | " + verdict + " |\n";
  }
  return out + "\n" + summary_line(report) + "\n";
}

}  // namespace snap
