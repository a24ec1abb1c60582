// The table of run-spec fields and the parsers (with their bounds) behind every flag and matrix key.
#include "harness/spec_fields.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"
#include "core/sink.h"
#include "core/units.h"
#include "strategies/strategy.h"
#include "strategies/tracking/tracker.h"
#include "workloads/workload.h"

namespace snap {

namespace {

long long parse_int(const std::string& v, long long lo, long long hi, const std::string& where) {
  char* end = nullptr;
  errno = 0;
  const long long d = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end || errno == ERANGE || d < lo || d > hi)
    throw UsageError(where + ": expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                     ", got '" + v + "'");
  return d;
}

uint64_t parse_u64(const std::string& v, const std::string& where) {
  char* end = nullptr;
  errno = 0;
  const unsigned long long d = std::strtoull(v.c_str(), &end, 10);
  // strtoull accepts "-1" (and wraps it): only digits are a non-negative integer.
  if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos || *end || errno == ERANGE)
    throw UsageError(where + ": expected an integer from 0 to 18446744073709551615, got '" + v + "'");
  return d;
}

double parse_number(const std::string& v, double lo, double hi, const std::string& where) {
  char* end = nullptr;
  const double d = std::strtod(v.c_str(), &end);
  if (v.empty() || *end || !std::isfinite(d) || d < lo || d > hi) {
    char range[96];
    std::snprintf(range, sizeof range, "a number from %g to %g", lo, hi);
    throw UsageError(where + ": expected " + range + ", got '" + v + "'");
  }
  return d;
}

bool parse_bool(const std::string& v, const std::string& where) {
  if (v == "true" || v == "on" || v == "1" || v == "yes") return true;
  if (v == "false" || v == "off" || v == "0" || v == "no") return false;
  throw UsageError(where + ": expected on or off (true/false), got '" + v + "'");
}

std::string number_text(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.17g", v);
  return b;
}

std::string one_of(const std::string& what, const std::string& names) { return what + " (" + names + ")"; }

std::string pattern_help() {
  std::string out;
  for (const auto& p : pattern_kinds()) out += (out.empty() ? "" : " | ") + p.syntax;
  return "writers' access pattern: " + out;
}

std::string sink_help() {
  std::string out;
  for (const auto& s : sink_kinds()) out += (out.empty() ? "" : " | ") + s.name;
  return "where the image goes: " + out + " (their syntax: `snapbench list`)";
}

bool uses_tracker(const StrategyEntry& e) { return e.uses_tracker; }

constexpr int kMaxWriters = 256;        // the threads workload's limit
constexpr int kMaxNumaNode = 4095;      // above any node id Linux hands out (existence is checked at run time)
constexpr double kMaxWarmupS = 86400;   // a day: longer is a typo, not a warm-up

}  // namespace

const std::vector<SpecField>& spec_fields() {
  using S = RunSpec;
  using W = const std::string&;
  static const std::vector<SpecField> fields = {
      {"strategy", "--strategy", "strategy", true, false, one_of("snapshot strategy", strategy_registry().names(" | ")),
       [](S& s, W v, W) { s.strategy = v; }, [](const S& s) { return s.strategy; }},
      {"tracker", "--tracker", "tracker", true, false,
       one_of(strategy_registry().names_if(uses_tracker, "/") + "'s dirty tracker, default " +
                  std::string(kDefaultTracker),
              tracker_registry().names(" | ")),
       [](S& s, W v, W) { s.tracker = v; }, [](const S& s) { return s.tracker; }},
      {"workload", "--workload", "workload", true, false,
       one_of("what writes the region while the snapshot runs", workload_registry().names(" | ")),
       [](S& s, W v, W) { s.workload = v; }, [](const S& s) { return s.workload; }},
      {"pattern", "--pattern", "pattern", true, false, pattern_help(),
       [](S& s, W v, W where) {
         try {
           check_pattern_spec(v);
         } catch (const UsageError& e) {
           throw UsageError(where == "--pattern" ? e.what() : where + ": " + e.what());
         }
         s.pattern = v;
       },
       [](const S& s) { return s.pattern; }},
      {"writers", "--writers", "writers", true, false, "writer threads (0.." + std::to_string(kMaxWriters) + ")",
       [](S& s, W v, W where) { s.writers = int(parse_int(v, 0, kMaxWriters, where)); },
       [](const S& s) { return std::to_string(s.writers); }},
      {"mem", "--mem", "region_bytes", true, false, "region size: 4096, 64M, 1G, 1GiB...",
       [](S& s, W v, W where) {
         s.mem_bytes = parse_size(v, where);
         if (s.mem_bytes == 0) throw UsageError(where + ": the region must be at least one page");
       },
       [](const S& s) {
         return s.mem_bytes % (1u << 20) == 0 ? std::to_string(s.mem_bytes >> 20) + "M" : std::to_string(s.mem_bytes);
       }},
      {"populate", "--populate", "populate", true, false,
       "fraction of pages filled before the run (0..1); the rest is never touched",
       [](S& s, W v, W where) { s.populate = parse_number(v, 0, 1, where); },
       [](const S& s) { return number_text(s.populate); }},
      {"thp", "--thp", "thp", true, false, "transparent huge pages on the region: on | off",
       [](S& s, W v, W where) { s.thp = parse_bool(v, where); }, [](const S& s) { return std::string(s.thp ? "on" : "off"); }},
      {"numa_node", "--numa-node", "numa_node", true, false,
       "bind the region and the writers to this NUMA node (-1: no binding)",
       [](S& s, W v, W where) { s.numa_node = int(parse_int(v, -1, kMaxNumaNode, where)); },
       [](const S& s) { return std::to_string(s.numa_node); }},
      {"rate", "--rate", "rate", true, false, "total write rate: 0 (idle), max, 100MiB/s, 20000pages/s",
       [](S& s, W v, W where) {
         parse_rate_pages(v, where);
         s.rate = v;
       },
       [](const S& s) { return s.rate; }},
      {"sink", "--sink", "sink", true, false, sink_help(), [](S& s, W v, W) { s.sink = v; },
       [](const S& s) { return s.sink; }},
      {"bandwidth", "--bandwidth", "bandwidth_bytes_s", true, false,
       "cap on the save rate into the sink, e.g. 800MiB/s (0: none)",
       [](S& s, W v, W where) {
         parse_bandwidth(v, where);
         s.bandwidth = v;
       },
       [](const S& s) { return s.bandwidth; }},
      {"warmup", "--warmup", "warmup_s", true, false,
       "seconds the writers run before the snapshot starts (0.." + number_text(kMaxWarmupS) + ")",
       [](S& s, W v, W where) { s.warmup_s = parse_number(v, 0, kMaxWarmupS, where); },
       [](const S& s) { return number_text(s.warmup_s); }},
      {"fsync", "--fsync", "fsync", true, true, "file sink: fdatasync the image before the snapshot counts as complete",
       [](S& s, W v, W where) { s.fsync = parse_bool(v, where); }, [](const S& s) { return std::string(s.fsync ? "on" : "off"); }},
      {"verify", "--verify", "verify", true, true,
       "copy the region at the consistency point and compare the image byte for byte",
       [](S& s, W v, W where) { s.verify = parse_bool(v, where); }, [](const S& s) { return std::string(s.verify ? "on" : "off"); }},
      {"seed", "--seed", "seed", false, false, "seed of region content and access pattern",
       [](S& s, W v, W where) { s.seed = parse_u64(v, where); }, [](const S& s) { return std::to_string(s.seed); }},
  };
  return fields;
}

const SpecField* find_spec_field(const std::string& key) {
  for (const auto& f : spec_fields())
    if (f.key == key) return &f;
  return nullptr;
}

void check_spec_fields(const RunSpec& spec) {
  RunSpec copy = spec;
  for (const auto& f : spec_fields()) f.apply(copy, f.show(spec), f.flag);
}

}  // namespace snap
