// Provenance of a result set (git sha, kernel, CPU, THP mode, build type, command line) for the JSON
// sidecar written beside every CSV.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace snap {

nlohmann::json provenance(const std::vector<std::string>& command_line);

// The machine this process runs on, read once: every CSV row carries it (host, kernel, cpu_model
// columns), so results merged from several machines stay apart.
struct MachineFacts {
  std::string host;       // gethostname()
  std::string kernel;     // uname -r
  std::string cpu_model;  // /proc/cpuinfo "model name"
};
const MachineFacts& this_machine();
// The system THP mode ("always", "madvise", "never"), the bracketed choice in sysfs; "" without THP.
std::string thp_enabled_mode();
// Now, as "YYYY-MM-DDTHH:MM:SSZ".
std::string utc_timestamp();
// The sidecar path of a CSV: "x.csv" -> "x.meta.json".
std::string meta_path_for(const std::string& csv_path);
void write_json(const std::string& path, const nlohmann::json& j);

}  // namespace snap
