// Which machines a result table's rows ran on (the host, kernel and cpu_model columns), so results
// merged from several machines are split or filtered rather than silently averaged.
#pragma once
#include <string>
#include <vector>

#include "harness/csv_table.h"

namespace snap {

// The distinct machines of a table, each "HOST (kernel KERNEL, CPU)", in order of first appearance.
// Empty for a table without a host column (results of schema_version 1-3).
std::vector<std::string> machines_in(const CsvTable& t);

// The rows whose host column is `host`; a table without a host column is returned whole.
CsvTable rows_of_host(const CsvTable& t, const std::string& host);

// "a, b and 2 more" for messages.
std::string list_machines(const std::vector<std::string>& machines);

}  // namespace snap
