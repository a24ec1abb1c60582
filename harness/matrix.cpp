// Matrix spec parsing (toml++), cross-product expansion, de-duplication, sharding and run order.
#include "harness/matrix.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <toml++/toml.h>

#include "core/error.h"
#include "core/units.h"
#include "harness/csv.h"
#include "strategies/strategy.h"
#include "strategies/tracking/tracker.h"

namespace snap {

namespace {

std::string scalar_text(const toml::node& n, const std::string& where) {
  if (auto s = n.value<std::string>()) return *s;
  if (n.is_boolean()) return *n.value<bool>() ? "true" : "false";
  if (n.is_integer()) return std::to_string(*n.value<int64_t>());
  if (n.is_floating_point()) {
    char b[64];
    std::snprintf(b, sizeof b, "%.10g", *n.value<double>());
    return b;
  }
  throw UsageError(where + ": expected a string, number or bool");
}

double to_double(const std::string& v, const std::string& where) {
  char* end = nullptr;
  double d = std::strtod(v.c_str(), &end);
  if (v.empty() || *end) throw UsageError(where + ": '" + v + "' is not a number");
  return d;
}

long long to_int(const std::string& v, const std::string& where) {
  char* end = nullptr;
  long long d = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end) throw UsageError(where + ": '" + v + "' is not an integer");
  return d;
}

bool to_bool(const std::string& v, const std::string& where) {
  if (v == "true" || v == "on" || v == "1" || v == "yes") return true;
  if (v == "false" || v == "off" || v == "0" || v == "no") return false;
  throw UsageError(where + ": '" + v + "' is not a bool (true/false, on/off)");
}

// Applies one spec key to a RunSpec. `where` names the file and key for errors.
void apply_key(RunSpec& s, const std::string& key, const std::string& v, const std::string& where) {
  if (key == "strategy") s.strategy = v;
  else if (key == "tracker") s.tracker = v;
  else if (key == "workload") s.workload = v;
  else if (key == "pattern") s.pattern = v;
  else if (key == "writers") s.writers = int(to_int(v, where));
  else if (key == "mem") s.mem_bytes = parse_size(v, where);
  else if (key == "populate") s.populate = to_double(v, where);
  else if (key == "rate") s.rate = v;
  else if (key == "bandwidth") s.bandwidth = v;
  else if (key == "thp") s.thp = to_bool(v, where);
  else if (key == "sink") s.sink = v;
  else if (key == "fsync") s.fsync = to_bool(v, where);
  else if (key == "warmup") s.warmup_s = to_double(v, where);
  else if (key == "seed") s.seed = uint64_t(to_int(v, where));
  else if (key == "verify") s.verify = to_bool(v, where);
  else if (key == "numa_node") s.numa_node = int(to_int(v, where));
  else if (key.find('.') != std::string::npos) parse_assignment(key + "=" + v, s.params);
  else
    throw UsageError(where + ": unknown key (known: strategy tracker workload pattern writers mem populate rate bandwidth "
                     "thp sink fsync warmup seed verify numa_node, or UNIT.PARAM)");
}

// Drops what does not apply to the case's strategy: a tracker for a strategy without one, parameters
// of other units. Returns a description of what was dropped (empty if nothing).
std::string fold_inapplicable(RunSpec& s) {
  std::string dropped;
  auto strategy = make_strategy(s.strategy);
  if (!strategy->uses_tracker() && !s.tracker.empty()) {
    s.tracker.clear();
    dropped = "tracker axis for strategies without a tracker";
  }
  std::string tracker = strategy->uses_tracker() ? (s.tracker.empty() ? kDefaultTracker : s.tracker) : "";
  for (auto it = s.params.begin(); it != s.params.end();) {
    if (it->first != s.strategy && it->first != tracker && it->first != s.workload) {
      if (dropped.empty()) dropped = "parameters of units a case does not use";
      it = s.params.erase(it);
    } else {
      ++it;
    }
  }
  return dropped;
}

}  // namespace

Matrix parse_matrix(const std::string& text, const std::string& origin) {
  toml::table root;
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    throw UsageError(origin + ": TOML error: " + std::string(e.description()) + " at line " +
                     std::to_string(e.source().begin.line));
  }
  Matrix m;
  m.name = root["name"].value_or(std::string("matrix"));
  m.reps = int(root["reps"].value_or(int64_t(1)));
  m.shuffle_seed = uint64_t(root["shuffle_seed"].value_or(int64_t(1)));
  if (m.reps < 1) throw UsageError(origin + ": reps must be at least 1");
  for (const auto& [k, v] : root) {
    std::string key(k.str());
    if (key != "name" && key != "reps" && key != "shuffle_seed" && key != "fixed" && key != "axes" &&
        key != "description")
      throw UsageError(origin + ": unknown top-level key '" + key + "' (expected name, description, reps, "
                       "shuffle_seed, [fixed], [axes])");
  }

  RunSpec base;
  base.warmup_s = 0.5;
  if (auto* fixed = root["fixed"].as_table()) {
    for (const auto& [k, v] : *fixed) {
      std::string where = origin + ": fixed." + std::string(k.str());
      if (v.is_array()) throw UsageError(where + ": a list belongs in [axes]");
      apply_key(base, std::string(k.str()), scalar_text(v, where), where);
    }
  }
  std::vector<std::pair<std::string, std::vector<std::string>>> axes;
  if (auto* ax = root["axes"].as_table()) {
    for (const auto& [k, v] : *ax) {
      std::string where = origin + ": axes." + std::string(k.str());
      std::vector<std::string> values;
      if (auto* arr = v.as_array()) {
        for (const auto& e : *arr) values.push_back(scalar_text(e, where));
      } else {
        values.push_back(scalar_text(v, where));
      }
      if (values.empty()) throw UsageError(where + ": an axis needs at least one value");
      axes.emplace_back(std::string(k.str()), values);
    }
  }

  // Cross product, odometer style: the last axis varies fastest.
  std::vector<size_t> idx(axes.size(), 0);
  std::set<std::string> seen;
  std::map<std::string, int> folded;
  bool done = false;
  while (!done) {
    RunSpec s = base;
    std::string label;
    for (size_t a = 0; a < axes.size(); ++a) {
      const auto& [key, values] = axes[a];
      std::string where = origin + ": axes." + key;
      apply_key(s, key, values[idx[a]], where);
      if (key != "strategy" && key != "tracker") label += " " + key + "=" + values[idx[a]];
    }
    validate_params(s.params);  // before folding, so a typo in an unused unit's parameter still fails
    std::string why = fold_inapplicable(s);
    RunResult resolved = resolve_spec(s);  // validates; UsageError names the flag-like key
    std::string key = run_key(resolved, false) + std::to_string(s.seed) + "|" + (s.verify ? "v" : "") +
                      std::to_string(s.warmup_s) + "|" + (s.fsync ? "f" : "");
    if (seen.insert(key).second) {
      std::string head = s.strategy + (resolved.tracker.empty() ? "" : "/" + resolved.tracker);
      m.cases.push_back({s, head + label});
    } else {
      ++folded[why.empty() ? "duplicate combinations" : why];
    }
    // Advance the odometer; done when the first axis wraps (or there are no axes).
    size_t a = axes.size();
    while (true) {
      if (a == 0) {
        done = true;
        break;
      }
      --a;
      if (++idx[a] < axes[a].second.size()) break;
      idx[a] = 0;
    }
  }
  for (const auto& [why, n] : folded)
    m.skipped.push_back("skipped " + std::to_string(n) + " combination(s) that make no sense or repeat another: " + why);
  return m;
}

Matrix load_matrix(const std::string& path) {
  std::vector<uint8_t> bytes;
  try {
    bytes = read_file_bytes(path);
  } catch (const std::exception& e) {
    throw UsageError(std::string("matrix spec: ") + e.what());
  }
  return parse_matrix(std::string(bytes.begin(), bytes.end()), path);
}

std::vector<MatrixCase> shard_cases(const std::vector<MatrixCase>& cases, int index, int count) {
  std::vector<MatrixCase> out;
  for (size_t i = 0; i < cases.size(); ++i)
    if (int(i % size_t(count)) == index - 1) out.push_back(cases[i]);
  return out;
}

std::vector<size_t> shuffled_order(size_t n, uint64_t seed, int rep) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 rng(seed * 1000003ull + uint64_t(rep));
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[size_t(rng() % i)]);
  return order;
}

void parse_shard(const std::string& text, int& index, int& count) {
  auto slash = text.find('/');
  char* e1 = nullptr;
  char* e2 = nullptr;
  if (slash != std::string::npos) {
    std::string a = text.substr(0, slash), b = text.substr(slash + 1);
    index = int(std::strtol(a.c_str(), &e1, 10));
    count = int(std::strtol(b.c_str(), &e2, 10));
    if (!a.empty() && !b.empty() && !*e1 && !*e2 && count >= 1 && index >= 1 && index <= count) return;
  }
  throw UsageError("--shard: expected i/N with 1 <= i <= N, got '" + text + "'");
}

}  // namespace snap
