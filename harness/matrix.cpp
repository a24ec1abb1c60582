// Matrix spec parsing (toml++), cross-product expansion, de-duplication and run order.
#include "harness/matrix.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <toml++/toml.h>

#include "core/error.h"
#include "core/units.h"
#include "harness/csv.h"
#include "harness/spec_fields.h"
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

// Applies one spec key to a RunSpec through the field table (the `run` flags' parsers and bounds).
// `where` names the file and key for errors.
void apply_key(RunSpec& s, const std::string& key, const std::string& v, const std::string& where) {
  if (const SpecField* f = find_spec_field(key)) {
    f->apply(s, v, where);
  } else if (key.find('.') != std::string::npos) {
    try {
      parse_assignment(key + "=" + v, s.params);
    } catch (const UsageError& e) {
      throw UsageError(where + ": " + e.what());
    }
  } else {
    std::string known;
    for (const auto& field : spec_fields()) known += (known.empty() ? "" : " ") + field.key;
    throw UsageError(where + ": unknown key (known: " + known + ", or UNIT.PARAM)");
  }
}

// Drops what does not apply to the case's strategy: a tracker for a strategy without one, parameters
// of other units. Returns a description of what was dropped (empty if nothing).
std::string fold_inapplicable(RunSpec& s) {
  std::string dropped;
  const StrategyEntry& strategy = strategy_registry().get(s.strategy);
  if (!strategy.uses_tracker && !s.tracker.empty()) {
    s.tracker.clear();
    dropped = "tracker axis for strategies without a tracker";
  }
  if (s.fsync && s.sink.rfind("file:", 0) != 0) {
    s.fsync = false;
    if (dropped.empty()) dropped = "fsync for sinks other than file";
  }
  std::string tracker = strategy.uses_tracker ? (s.tracker.empty() ? kDefaultTracker : s.tracker) : "";
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

// A check made for the `run` flags names the flag ("--rate: ..."); in a spec the reader wants the file
// and the key where the value was set ("spec.toml: axes.rate: ..."), or the case when no key says it.
std::string in_spec_terms(const std::string& msg, const std::string& origin, const toml::table* fixed,
                          const std::vector<std::pair<std::string, std::vector<std::string>>>& axes,
                          const std::string& label) {
  std::string key, rest;
  for (const auto& f : spec_fields())
    if (msg.rfind(f.flag + ": ", 0) == 0) {
      key = f.key;
      rest = msg.substr(f.flag.size() + 2);
    }
  if (key.empty() && msg.rfind("--set ", 0) == 0 && msg.find(": ") != std::string::npos) {
    key = msg.substr(6, msg.find(": ") - 6);
    rest = msg.substr(msg.find(": ") + 2);
  }
  if (!key.empty()) {
    for (const auto& [axis, values] : axes)
      if (axis == key) return origin + ": axes." + key + ": " + rest;
    if (fixed && fixed->contains(key)) return origin + ": fixed." + key + ": " + rest;
  }
  return origin + ": case '" + label.substr(label.empty() ? 0 : 1) + "': " + msg;
}

}  // namespace

Matrix parse_matrix(const std::string& text, const std::string& origin, uint64_t max_runs) {
  toml::table root;
  try {
    root = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    throw UsageError(origin + ": TOML error: " + std::string(e.description()) + " at line " +
                     std::to_string(e.source().begin.line));
  }
  Matrix m;
  for (const auto& [k, v] : root) {
    std::string key(k.str());
    if (key != "name" && key != "reps" && key != "shuffle_seed" && key != "fixed" && key != "axes" &&
        key != "description")
      throw UsageError(origin + ": unknown top-level key '" + key + "' (expected name, description, reps, "
                       "shuffle_seed, [fixed], [axes])");
  }
  // Every top-level value has one type; a wrong one is an error, not a silent default.
  auto text_key = [&](const char* key, const std::string& fallback) {
    const toml::node* n = root.get(key);
    if (!n) return fallback;
    if (!n->is_string()) throw UsageError(origin + ": " + key + ": expected a string");
    return *n->value<std::string>();
  };
  auto int_key = [&](const char* key, int64_t fallback, int64_t lo, int64_t hi) {
    const toml::node* n = root.get(key);
    if (!n) return fallback;
    if (!n->is_integer() || *n->value<int64_t>() < lo || *n->value<int64_t>() > hi)
      throw UsageError(origin + ": " + key + ": expected an integer from " + std::to_string(lo) + " to " +
                       std::to_string(hi));
    return *n->value<int64_t>();
  };
  m.name = text_key("name", "matrix");
  text_key("description", "");
  m.reps = int(int_key("reps", 1, 1, 1000000));
  m.shuffle_seed = uint64_t(int_key("shuffle_seed", 1, 0, INT64_MAX));
  for (const char* section : {"fixed", "axes"})
    if (const toml::node* n = root.get(section); n && !n->is_table())
      throw UsageError(origin + ": " + section + ": expected a table ([" + section + "] with key = value lines)");
  const toml::table* fixed = root["fixed"].as_table();
  const toml::table* axes_table = root["axes"].as_table();
  if ((!fixed || fixed->empty()) && (!axes_table || axes_table->empty()))
    throw UsageError(origin + ": the spec sets nothing (no key in [fixed] or [axes]); name at least the strategy");

  RunSpec base;
  if (fixed) {
    for (const auto& [k, v] : *fixed) {
      std::string where = origin + ": fixed." + std::string(k.str());
      if (v.is_array()) throw UsageError(where + ": a list belongs in [axes]");
      apply_key(base, std::string(k.str()), scalar_text(v, where), where);
    }
  }
  std::vector<std::pair<std::string, std::vector<std::string>>> axes;
  if (axes_table) {
    for (const auto& [k, v] : *axes_table) {
      std::string where = origin + ": axes." + std::string(k.str());
      // The axis would win and the fixed value be ignored without a word.
      if (fixed && fixed->contains(k.str()))
        throw UsageError(where + ": also set in [fixed]; a key belongs in one of [fixed] and [axes]");
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

  // Count the runs before expanding: a spec whose axes multiply to millions would otherwise grow
  // without bound (even --dry-run) before saying anything.
  uint64_t runs = uint64_t(m.reps);
  std::string product;
  for (const auto& [key, values] : axes) {
    product += key + "=" + std::to_string(values.size()) + " x ";
    if (__builtin_mul_overflow(runs, uint64_t(values.size()), &runs)) runs = UINT64_MAX;
  }
  if (runs > max_runs)
    throw UsageError(origin + ": the matrix has more than " + std::to_string(max_runs) + " runs (" + product +
                     "reps=" + std::to_string(m.reps) + "); shrink the axes or raise --max-runs");

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
    std::string why;
    RunResult resolved;
    try {
      validate_params(s.params);  // before folding, so a typo in an unused unit's parameter still fails
      why = fold_inapplicable(s);
      resolved = resolve_spec(s);  // validates
      if (!s.fsync) {  // folded: the label says what runs
        if (auto at = label.find(" fsync=true"); at != std::string::npos) label.replace(at, 11, " fsync=false");
      }
    } catch (const UsageError& e) {
      throw UsageError(in_spec_terms(e.what(), origin, fixed, axes, label));
    }
    // The case's identity (every identity field, harness/spec_fields.cpp) plus its seed.
    // One rate written two ways (100MiB/s, 100M/s, 25600pages/s) is one case: the key uses its value.
    RunSpec canonical = s;
    char rate_text[48];
    std::snprintf(rate_text, sizeof rate_text, "%.17gpages/s", resolved.rate_target_pages_s);
    if (resolved.rate_target_pages_s >= 0) canonical.rate = rate_text;
    std::string key = run_key(resolve_spec(canonical), false) + std::to_string(s.seed);
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

Matrix load_matrix(const std::string& path, uint64_t max_runs) {
  std::vector<uint8_t> bytes;
  try {
    bytes = read_file_bytes(path);
  } catch (const std::exception& e) {
    throw UsageError(std::string("matrix spec: ") + e.what());
  }
  return parse_matrix(std::string(bytes.begin(), bytes.end()), path, max_runs);
}

std::vector<size_t> shuffled_order(size_t n, uint64_t seed, int rep) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  std::mt19937_64 rng(seed * 1000003ull + uint64_t(rep));
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[size_t(rng() % i)]);
  return order;
}

}  // namespace snap
