// Machine identity of result rows: listing the machines of a table and keeping one host's rows.
#include "harness/machines.h"

#include <algorithm>

namespace snap {

std::vector<std::string> machines_in(const CsvTable& t) {
  const long host = t.find_column("host"), kernel = t.find_column("kernel"), cpu = t.find_column("cpu_model");
  std::vector<std::string> out;
  if (host < 0) return out;
  for (const auto& r : t.rows) {
    std::string m = r[size_t(host)];
    std::string detail;
    if (kernel >= 0) detail = "kernel " + r[size_t(kernel)];
    if (cpu >= 0) detail += (detail.empty() ? "" : ", ") + r[size_t(cpu)];
    if (!detail.empty()) m += " (" + detail + ")";
    if (std::find(out.begin(), out.end(), m) == out.end()) out.push_back(m);
  }
  return out;
}

CsvTable rows_of_host(const CsvTable& t, const std::string& host) {
  const long col = t.find_column("host");
  if (col < 0) return t;
  CsvTable out;
  out.source = t.source;
  out.columns = t.columns;
  for (size_t r = 0; r < t.rows.size(); ++r) {
    if (t.rows[r][size_t(col)] != host) continue;
    out.rows.push_back(t.rows[r]);
    if (r < t.row_lines.size()) out.row_lines.push_back(t.row_lines[r]);
  }
  return out;
}

std::string list_machines(const std::vector<std::string>& machines) {
  std::string out;
  const size_t shown = std::min<size_t>(machines.size(), 3);
  for (size_t i = 0; i < shown; ++i) out += (i ? "; " : "") + machines[i];
  if (machines.size() > shown) out += " and " + std::to_string(machines.size() - shown) + " more";
  return out;
}

}  // namespace snap
