// `snapbench list`: strategies, trackers, patterns, sinks (each with supported or the reason and its
// parameters), and `snapbench columns`: every CSV column with its meaning.
#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "core/sink.h"
#include "harness/commands.h"
#include "harness/csv.h"
#include "restore/restore.h"
#include "strategies/strategy.h"
#include "strategies/tracking/tracker.h"
#include "workloads/workload.h"

namespace snap {

namespace {

void print_params(const std::string& unit, const std::vector<ParamSpec>& params) {
  for (const auto& p : params) {
    std::string bounds;
    if (p.min < p.max) bounds = " [" + std::to_string((long long)p.min) + ".." + std::to_string((long long)p.max) + "]";
    if (p.type == ParamSpec::Type::kDouble && p.min < p.max) {
      char b[96];
      std::snprintf(b, sizeof b, " [%g..%g]", p.min, p.max);
      bounds = b;
    }
    std::string value = param_type_name(p.type);
    if (!p.choices.empty()) {
      value.clear();
      for (const auto& c : p.choices) value += (value.empty() ? "" : "|") + c;
    }
    std::printf("      --set %s.%s=%s  (%s%s, default %s)\n        %s\n", unit.c_str(), p.name.c_str(),
                value.c_str(), param_type_name(p.type), bounds.c_str(), p.default_value.c_str(), p.help.c_str());
  }
}

void print_support(const std::string& name, const Support& s, const std::string& help) {
  std::printf("  %-12s %-12s %s\n", name.c_str(), s.supported ? "supported" : "UNSUPPORTED", help.c_str());
  if (!s.supported) std::printf("      reason: %s\n", s.reason.c_str());
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

nlohmann::json params_json(const std::vector<ParamSpec>& params) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& p : params)
    out.push_back({{"name", p.name}, {"type", param_type_name(p.type)}, {"default", p.default_value},
                   {"min", p.min}, {"max", p.max}, {"choices", p.choices}, {"help", p.help}});
  return out;
}

nlohmann::json unit_json(const std::string& name, const std::string& help, const Support& s,
                         const std::vector<ParamSpec>& params) {
  return {{"name", name}, {"help", help}, {"supported", s.supported}, {"reason", s.reason}, {"params", params_json(params)}};
}

// The registries as data, for scripts (scripts/perf-report takes its strategies from here).
void print_list_json() {
  nlohmann::json out;
  out["strategies"] = nlohmann::json::array();
  for (const auto& e : strategy_registry()) {
    nlohmann::json j = unit_json(e.name, e.help, e.make()->probe(), e.params);
    j["consistency"] = e.consistency == ConsistencyPoint::kStart ? "start" : "end";
    j["workloads"] = e.workloads;
    j["trackers"] = e.trackers;
    j["uses_tracker"] = e.uses_tracker;
    j["produces_image"] = e.produces_image;
    j["may_save_duplicates"] = e.may_save_duplicates;
    out["strategies"].push_back(j);
  }
  out["trackers"] = nlohmann::json::array();
  for (const auto& e : tracker_registry()) {
    nlohmann::json j = unit_json(e.name, e.help, e.make()->probe(), e.params);
    j["workloads"] = e.workloads;
    out["trackers"].push_back(j);
  }
  out["workloads"] = nlohmann::json::array();
  for (const auto& w : workload_registry()) out["workloads"].push_back(unit_json(w.name, w.help, w.probe(), w.params));
  out["restores"] = nlohmann::json::array();
  for (const auto& e : restore_registry()) out["restores"].push_back(unit_json(e.name, e.help, e.make()->probe(), e.params));
  std::printf("%s\n", out.dump(2).c_str());
}

}  // namespace

void add_list_command(CLI::App& app, int& rc) {
  auto* list = app.add_subcommand("list", "list strategies, trackers, workloads, patterns and sinks, with support and parameters");
  auto json = std::make_shared<bool>(false);
  list->add_flag("--json", *json, "print the strategies, trackers and workloads (descriptors, support, parameters) as JSON");
  list->callback([&rc, json]() {
    if (*json) {
      print_list_json();
      rc = 0;
      return;
    }
    std::printf("strategies (--strategy):\n");
    std::vector<std::string> with_tracker;
    for (const auto& e : strategy_registry()) {
      print_support(e.name, e.make()->probe(), e.help);
      print_params(e.name, e.params);
      if (e.uses_tracker) with_tracker.push_back(e.name);
    }
    std::printf("\ndirty trackers (--tracker, %s only):\n", joined(with_tracker).c_str());
    for (const auto& e : tracker_registry()) {
      print_support(e.name, e.make()->probe(), e.help);
      print_params(e.name, e.params);
    }
    std::printf("\nworkloads (--workload):\n");
    for (const auto& w : workload_registry()) {
      print_support(w.name, w.probe(), w.help);
      print_params(w.name, w.params);
    }
    for (const auto& e : strategy_registry())
      if (!e.workloads.empty()) std::printf("  strategy %s runs only with: %s\n", e.name.c_str(), joined(e.workloads).c_str());
    for (const auto& e : tracker_registry())
      if (!e.workloads.empty()) std::printf("  tracker %s tracks only: %s\n", e.name.c_str(), joined(e.workloads).c_str());
    std::printf("\nrestore strategies (--restore):\n");
    for (const auto& e : restore_registry()) {
      print_support(e.name, e.make()->probe(), e.help);
      print_params(e.name, e.params);
    }
    std::printf("\naccess patterns (--pattern):\n");
    for (const auto& p : pattern_kinds()) std::printf("  %-32s %s\n", p.syntax.c_str(), p.help.c_str());
    std::printf("\nsinks (--sink):\n");
    for (const auto& s : sink_kinds()) std::printf("  %-16s %s\n", s.name.c_str(), s.help.c_str());
    rc = 0;
  });
  auto* cols = app.add_subcommand("columns", "list every column of the results CSV with its unit and meaning");
  cols->callback([&rc]() {
    std::printf("schema_version %d\n", kSchemaVersion);
    for (const auto& c : csv_columns()) std::printf("  %-22s %s\n", c.name.c_str(), c.meaning.c_str());
    rc = 0;
  });
}

}  // namespace snap
