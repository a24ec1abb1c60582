// The table of run-spec fields and the parsers (with their bounds) behind every flag and matrix key.
#include "harness/spec_fields.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"
#include "core/sink.h"
#include "core/units.h"
#include "harness/csv.h"
#include "harness/restore_run.h"
#include "restore/restore.h"
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

std::string sink_kind_names(const std::string& sep) {
  std::string out;
  for (const auto& s : sink_kinds()) out += (out.empty() ? "" : sep) + s.name;
  return out;
}

std::string sink_help() { return "where the image goes: " + sink_kind_names(" | ") + " (their syntax: `snapbench list`)"; }

bool uses_tracker(const StrategyEntry& e) { return e.uses_tracker; }

constexpr int kMaxWriters = 256;        // the threads workload's limit
constexpr int kMaxNumaNode = 4095;      // above any node id Linux hands out (existence is checked at run time)
constexpr double kMaxWarmupS = 86400;   // a day: longer is a typo, not a warm-up
constexpr double kMaxTimeLimitS = 30 * 86400.0;  // a month: no benchmark run here is meant to last longer
constexpr double kMaxRestoreWindowS = 3600;

}  // namespace

const std::vector<SpecField>& spec_fields() {
  using S = RunSpec;
  using R = const RunResult&;
  using W = const std::string&;
  static const std::vector<SpecField> fields = {
      {.key = "strategy", .flag = "--strategy",
       .help = one_of("snapshot strategy", strategy_registry().names(" | ")),
       .apply = [](S& s, W v, W) { s.strategy = v; }, .show = [](const S& s) { return s.strategy; },
       .column = "strategy", .column_help = "strategy registry key (" + strategy_registry().names() + ")",
       .column_value = [](R r) { return r.spec.strategy; }},
      {.key = "tracker", .flag = "--tracker",
       .help = one_of(strategy_registry().names_if(uses_tracker, "/") + "'s dirty tracker, default " +
                          std::string(kDefaultTracker),
                      tracker_registry().names(" | ")),
       .apply = [](S& s, W v, W) { s.tracker = v; }, .show = [](const S& s) { return s.tracker; },
       .column = "tracker",
       .column_help = strategy_registry().names_if(uses_tracker, "/") + "'s dirty tracker (" +
                      tracker_registry().names() + "); empty for the others",
       .column_value = [](R r) { return r.tracker; }},
      {.key = "workload", .flag = "--workload",
       .help = one_of("what writes the region while the snapshot runs", workload_registry().names(" | ")),
       .apply = [](S& s, W v, W) { s.workload = v; }, .show = [](const S& s) { return s.workload; },
       .column = "workload", .column_help = "what wrote the region, a workload registry key",
       .column_value = [](R r) { return r.spec.workload; }, .old_value = kDefaultWorkload},
      {.key = "pattern", .flag = "--pattern", .help = pattern_help(),
       .apply =
           [](S& s, W v, W where) {
             try {
               check_pattern_spec(v);
             } catch (const UsageError& e) {
               throw UsageError(where == "--pattern" ? e.what() : where + ": " + e.what());
             }
             s.pattern = v;
           },
       .show = [](const S& s) { return s.pattern; },
       .column = "pattern", .column_help = "writers' access pattern as given to --pattern",
       .column_value = [](R r) { return r.spec.pattern; }},
      {.key = "writers", .flag = "--writers", .help = "writer threads (0.." + std::to_string(kMaxWriters) + ")",
       .apply = [](S& s, W v, W where) { s.writers = int(parse_int(v, 0, kMaxWriters, where)); },
       .show = [](const S& s) { return std::to_string(s.writers); },
       .column = "writers", .column_help = "number of writer threads",
       .column_value = [](R r) { return std::to_string(r.spec.writers); }},
      {.key = "mem", .flag = "--mem", .help = "region size: 4096, 64M, 1G, 1GiB...",
       .apply =
           [](S& s, W v, W where) {
             s.mem_bytes = parse_size(v, where);
             if (s.mem_bytes == 0) throw UsageError(where + ": the region must be at least one page");
             // Rounding up would run (and record) another size than the one asked for.
             if (s.mem_bytes % kPageSize != 0)
               throw UsageError(where + ": " + v + " is not a whole number of " + std::to_string(kPageSize) +
                                "-byte pages (e.g. " + std::to_string((s.mem_bytes / kPageSize + 1) * kPageSize) + ")");
           },
       .show =
           [](const S& s) {
             return s.mem_bytes % (1u << 20) == 0 ? std::to_string(s.mem_bytes >> 20) + "M"
                                                  : std::to_string(s.mem_bytes);
           },
       .column = "region_bytes", .column_help = "size of the region (whole pages)",
       .column_value = [](R r) { return std::to_string(r.region_bytes); }},
      {.key = "populate", .flag = "--populate",
       .help = "fraction of pages filled before the run (0..1); the rest is never touched",
       .apply = [](S& s, W v, W where) { s.populate = parse_number(v, 0, 1, where); },
       .show = [](const S& s) { return number_text(s.populate); },
       .column = "populate", .column_help = "fraction of pages filled with non-zero content before the run",
       .column_value = [](R r) { return csv_number(r.spec.populate); }},
      {.key = "thp", .flag = "--thp", .help = "transparent huge pages on the region: on | off",
       .apply = [](S& s, W v, W where) { s.thp = parse_bool(v, where); },
       .show = [](const S& s) { return std::string(s.thp ? "on" : "off"); },
       .column = "thp", .column_help = "transparent huge pages advised on the region (on|off)",
       .column_value = [](R r) { return std::string(r.spec.thp ? "on" : "off"); }},
      {.key = "numa_node", .flag = "--numa-node",
       .help = "bind the region and the writers to this NUMA node (-1: no binding)",
       .apply = [](S& s, W v, W where) { s.numa_node = int(parse_int(v, -1, kMaxNumaNode, where)); },
       .show = [](const S& s) { return std::to_string(s.numa_node); },
       .column = "numa_node", .column_help = "NUMA node the region and writers are bound to (-1: none)",
       .column_value = [](R r) { return std::to_string(r.spec.numa_node); }},
      {.key = "rate", .flag = "--rate", .help = "total write rate: 0 (idle), max, 100MiB/s, 20000pages/s",
       .apply =
           [](S& s, W v, W where) {
             parse_rate_pages(v, where);
             s.rate = v;
           },
       .show = [](const S& s) { return s.rate; },
       .column = "rate", .column_help = "target write rate as given to --rate",
       .column_value = [](R r) { return r.spec.rate; }},
      {.key = "sink", .flag = "--sink", .help = sink_help(),
       .apply = [](S& s, W v, W) { s.sink = v; }, .show = [](const S& s) { return s.sink; },
       .column = "sink", .column_help = "sink kind (" + sink_kind_names(", ") + ")",
       .column_value =
           [](R r) {
             auto c = r.spec.sink.find(':');
             return c == std::string::npos ? r.spec.sink : r.spec.sink.substr(0, c);
           }},
      {.key = "bandwidth", .flag = "--bandwidth", .help = "cap on the save rate into the sink, e.g. 800MiB/s (0: none)",
       .apply =
           [](S& s, W v, W where) {
             parse_bandwidth(v, where);
             s.bandwidth = v;
           },
       .show = [](const S& s) { return s.bandwidth; },
       .column = "bandwidth_bytes_s", .column_help = "save bandwidth cap in bytes/s (0: none)",
       .column_value = [](R r) { return std::to_string(r.bandwidth_bytes_s); }},
      {.key = "warmup", .flag = "--warmup",
       .help = "seconds the writers run before the snapshot starts (0.." + number_text(kMaxWarmupS) + ")",
       .apply = [](S& s, W v, W where) { s.warmup_s = parse_number(v, 0, kMaxWarmupS, where); },
       .show = [](const S& s) { return number_text(s.warmup_s); },
       .column = "warmup_s", .column_help = "seconds the writers ran before the snapshot started",
       .column_value = [](R r) { return csv_number(r.spec.warmup_s); }},
      {.key = "fsync", .flag = "--fsync", .is_switch = true,
       .help = "file sink: fdatasync the image before the snapshot counts as complete",
       .apply = [](S& s, W v, W where) { s.fsync = parse_bool(v, where); },
       .show = [](const S& s) { return std::string(s.fsync ? "on" : "off"); },
       .column = "fsync",
       .column_help = "1 if the file sink fdatasynced the image before the snapshot counted as complete (--fsync)",
       .column_value = [](R r) { return std::string(r.spec.fsync ? "1" : "0"); }, .old_value = ""},
      {.key = "verify", .flag = "--verify", .is_switch = true,
       .help = "copy the region at the consistency point and compare the image byte for byte",
       .apply = [](S& s, W v, W where) { s.verify = parse_bool(v, where); },
       .show = [](const S& s) { return std::string(s.verify ? "on" : "off"); },
       .column = "verify", .column_help = "1 if the image was to be verified (--verify); the verdict is in verified",
       .column_value = [](R r) { return std::string(r.spec.verify ? "1" : "0"); }, .old_value = ""},
      {.key = "time_limit", .flag = "--time-limit", .identity = false,
       .help = "wall-clock limit of each run in seconds, past which it fails 'timed out after N s' (0: ten times "
               "its estimate, at least 60 s, at most a day); a run estimated longer than its limit is refused",
       .apply = [](S& s, W v, W where) { s.time_limit_s = parse_number(v, 0, kMaxTimeLimitS, where); },
       .show = [](const S& s) { return number_text(s.time_limit_s); }},
      {.key = "skip_memory_check", .flag = "--skip-memory-check", .identity = false, .is_switch = true,
       .help = "run even when the run needs more memory than MemAvailable (region, verify copies, in-memory "
               "stream, fork-cow's copy-on-write worst case), which is otherwise refused before it starts",
       .apply = [](S& s, W v, W where) { s.skip_memory_check = parse_bool(v, where); },
       .show = [](const S& s) { return std::string(s.skip_memory_check ? "on" : "off"); }},
      // The restore phase (issue 24): a block of its own, its columns at the end of the CSV.
      {.key = "restore", .flag = "--restore",
       .help = one_of("after the snapshot, restore its image into a fresh region with this restore strategy and "
                      "run the workload on it (\"\": no restore)", restore_registry().names(" | ")),
       .apply =
           [](S& s, W v, W where) {
             if (!v.empty() && !restore_registry().find(v))
               throw UsageError(where + ": unknown restore strategy '" + v + "' (known: " + restore_registry().names() + ")");
             s.restore = v;
           },
       .show = [](const S& s) { return s.restore; },
       .column = "restore", .column_help = "restore strategy of the restore phase (" + restore_registry().names() +
                                           "); empty for a snapshot-only row",
       .column_value = [](R r) { return r.spec.restore; }, .old_value = ""},
      {.key = "restore_access", .flag = "--restore-access",
       .help = "access mix of the workload after a restore: read | write | mix:F (F = share of reads)",
       .apply =
           [](S& s, W v, W where) {
             parse_restore_access(v, where);
             s.restore_access = v;
           },
       .show = [](const S& s) { return s.restore_access; },
       .column = "restore_access", .column_help = "access mix after the restore (read, write, mix:F); empty without --restore",
       .column_value = [](R r) { return r.spec.restore.empty() ? std::string() : r.spec.restore_access; }, .old_value = ""},
      {.key = "restore_cache", .flag = "--restore-cache",
       .help = "the image's page cache before a restore: warm | cold (dropped with posix_fadvise DONTNEED)",
       .apply =
           [](S& s, W v, W where) {
             if (v != "warm" && v != "cold") throw UsageError(where + ": expected warm or cold, got '" + v + "'");
             s.restore_cache = v;
           },
       .show = [](const S& s) { return s.restore_cache; },
       .column = "restore_cache", .column_help = "page cache of the image before the restore (warm|cold); empty without --restore",
       .column_value = [](R r) { return r.spec.restore.empty() ? std::string() : r.spec.restore_cache; }, .old_value = ""},
      {.key = "restore_window", .flag = "--restore-window",
       .help = "seconds the workload runs on the region being restored (0.01.." + number_text(kMaxRestoreWindowS) + ")",
       .apply = [](S& s, W v, W where) { s.restore_window_s = parse_number(v, 0.01, kMaxRestoreWindowS, where); },
       .show = [](const S& s) { return number_text(s.restore_window_s); },
       .column = "restore_window_s", .column_help = "seconds the workload ran on the region being restored; empty without --restore",
       .column_value = [](R r) { return r.spec.restore.empty() ? std::string() : csv_number(r.spec.restore_window_s); },
       .old_value = ""},
      {.key = "seed", .flag = "--seed", .identity = false, .help = "seed of region content and access pattern",
       .apply = [](S& s, W v, W where) { s.seed = parse_u64(v, where); },
       .show = [](const S& s) { return std::to_string(s.seed); },
       .column = "seed", .column_help = "seed of the region content and access pattern",
       .column_value = [](R r) { return std::to_string(r.spec.seed); }},
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
