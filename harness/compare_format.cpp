// Formatting of compare reports: metric values with units, the text and Markdown tables, the summary.
#include "harness/compare_format.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "core/units.h"

namespace snap {

namespace {

std::string printf_string(const char* fmt, double v, const char* unit) {
  char b[64];
  std::snprintf(b, sizeof b, fmt, v, unit);
  return b;
}

std::string ratio_text(double ratio) {
  if (ratio < 0) return "-";
  if (std::isinf(ratio)) return "inf";
  char b[32];
  std::snprintf(b, sizeof b, "%.2fx", ratio);
  return b;
}

// "p=0.0079 (5/5)": the test's p-value and the repetitions on each side; "-" without a test.
std::string p_text(const CompareRow& r) {
  if (r.p_value < 0) return "-";
  char b[64];
  std::snprintf(b, sizeof b, "%.2g (%zu/%zu)", r.p_value, r.baseline_n, r.current_n);
  return b;
}

// A metric row shows the recorded medians, and beside them the per-calibration ones it was judged on (a
// pooled row: the median over its cases of each case's median, and the pooled median relative to the baseline).
std::string side_text(const CompareRow& r, bool baseline) {
  const std::string& text = baseline ? r.baseline : r.current;
  if (!text.empty()) return text;
  std::string out = format_value(baseline ? r.baseline_raw : r.current_raw, r.unit);
  if (r.pooled_cases) out += printf_string(" (x%.3g %s)", baseline ? r.baseline_value : r.current_value, "rel");
  else if (r.normalised) out += printf_string(" (%.3g %s)", baseline ? r.baseline_value : r.current_value, "cal");
  return out;
}

std::string check_text(const CompareRow& r) { return r.normalised ? r.check + "/cal" : r.check; }

bool is_problem(const CompareRow& r) { return r.verdict != Verdict::kOk && r.verdict != Verdict::kImproved; }

}  // namespace

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
  std::vector<std::vector<std::string>> cells = {{"case", "check", "baseline", "current", "ratio", "p (reps)", "verdict"}};
  for (const auto& r : report.rows) {
    if (problems_only && !is_problem(r)) continue;
    cells.push_back({r.case_label, check_text(r), side_text(r, true), side_text(r, false), ratio_text(r.ratio),
                     p_text(r), verdict_name(r.verdict)});
  }
  std::vector<size_t> width(cells[0].size(), 0);
  for (const auto& line : cells)
    for (size_t i = 0; i < line.size(); ++i) width[i] = std::max(width[i], line[i].size());
  std::string out;
  for (const auto& w : report.warnings) out += "warning: " + w + "\n";
  for (const auto& line : cells) {
    std::string text;
    for (size_t i = 0; i < line.size(); ++i) {
      // Numbers read best right-aligned, names left-aligned.
      bool right = i >= 2 && i <= 5;
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
  out += "| case | check | baseline | current | ratio | p (reps) | verdict |\n|---|---|--:|--:|--:|--:|---|\n";
  for (const auto& r : report.rows) {
    if (problems_only && !is_problem(r)) continue;
    std::string verdict = verdict_name(r.verdict);
    if (is_problem(r) && r.verdict != Verdict::kNew) verdict = "**" + verdict + "**";
    out += "| " + cell(r.case_label) + " | " + cell(check_text(r)) + " | " + cell(side_text(r, true)) + " | " +
           cell(side_text(r, false)) + " | " + ratio_text(r.ratio) + " | " + p_text(r) + " | " + verdict + " |\n";
  }
  return out + "\n" + summary_line(report) + "\n";
}

}  // namespace snap
