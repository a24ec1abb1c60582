// How a compare report is shown: an aligned text table or Markdown, and the one summary line.
#pragma once
#include <string>

#include "harness/compare.h"

namespace snap {

// A metric value in its unit: "12.3 ms", "180 us", "1.5 MiB", "2048" (pages), "1.004" (plain).
std::string format_value(double v, const std::string& unit);

// The report as an aligned text table (or a Markdown table), then the summary line. With
// `problems_only`, rows whose verdict is ok or improved are left out.
std::string format_report_text(const CompareReport& report, bool problems_only);
std::string format_report_markdown(const CompareReport& report, bool problems_only);
// "compare: ... PASS|FAIL".
std::string summary_line(const CompareReport& report);

}  // namespace snap
