// One run: build the region, start the writers, take one snapshot with a strategy, measure, verify.
#pragma once
#include <cstdint>
#include <string>

#include "core/image.h"
#include "core/params.h"
#include "core/region.h"
#include "core/sink.h"
#include "core/unit.h"
#include "workloads/workload.h"

namespace snap {

struct StrategyEntry;
struct TrackerEntry;

// What to run (the flags of `snapbench run`, or one cell of a matrix).
struct RunSpec {
  std::string strategy = "stop-copy";
  std::string workload = kDefaultWorkload;  // what writes the region (workloads/registry.cpp)
  std::string tracker;                 // for a strategy that uses one; "" = kDefaultTracker
  std::string pattern = WorkloadOptions{}.pattern;  // the defaults of the layer that owns the field
  int writers = WorkloadOptions{}.writers;
  uint64_t mem_bytes = RegionOptions{}.bytes;
  double populate = RegionOptions{}.populate;
  std::string rate = "0";              // as typed: "0", "max", "100MiB/s", "20000pages/s"
  std::string bandwidth = "0";         // sink cap as typed; "0" = none
  bool thp = RegionOptions{}.thp;
  int numa_node = RegionOptions{}.numa_node;
  std::string sink = SinkOptions{}.spec;
  bool fsync = SinkOptions{}.fsync;
  double warmup_s = 0.5;
  int rep = 0;
  uint64_t seed = RegionOptions{}.seed;
  bool verify = false;
  double time_limit_s = 0;             // wall-clock limit of the run; 0 = default_time_limit_s (run_limits.h)
  bool skip_memory_check = false;      // run even when the run needs more memory than is available
  std::string image_path;              // keep the image here (file sink, or a copy of the stream)
  ParamAssignments params;             // --set values, by unit
  // The restore phase (harness/restore_run.cpp): after the snapshot, its image restored with this
  // restore strategy ("" = none) while a workload with this access mix runs for the window.
  std::string restore;
  std::string restore_access = "read";  // read | write | mix:F (F = share of reads)
  std::string restore_cache = "warm";   // warm | cold (the image dropped from the page cache first)
  double restore_window_s = 1.0;
};

enum class RunStatus { kOk, kUnsupported, kFailed };
const char* status_name(RunStatus s);

// One CSV row's worth of results. Units are in the names.
struct RunResult {
  RunSpec spec;
  RunStatus status = RunStatus::kOk;
  std::string reason;
  std::string tracker;                 // resolved tracker ("" when none)
  std::string accel;                   // qemu workload: the accelerator QEMU ran with (kvm | tcg); else ""
  double rate_target_pages_s = 0;      // -1 = max
  double rate_before_pages_s = 0;      // achieved during warm-up
  double rate_during_pages_s = 0;      // achieved during the snapshot
  uint64_t bandwidth_bytes_s = 0;
  uint64_t region_bytes = 0;
  uint64_t nonzero_rss_bytes = 0;      // non-zero pages at the consistency point × page size
  ImageStats image;
  double image_ratio = 0;              // image_bytes / nonzero_rss_bytes
  double completion_s = 0;
  double downtime_s = 0;
  double freeze_s = 0;
  double calib_bytes_s = 0;            // same-run calibration: save rate just before the snapshot (0: none)
  uint64_t passes = 0;
  bool converged = true;
  uint64_t faults = 0;
  uint64_t write_count = 0;            // writes during the snapshot
  double write_p50_us = 0, write_p99_us = 0, write_p999_us = 0, write_max_us = 0;
  double write_before_p99_us = 0;      // p99 during warm-up, for comparison
  uint64_t extra_rss_bytes = 0;
  std::string verified = "off";        // pass | fail | off
  std::string verify_detail;
  std::string params;                  // resolved parameter values
  std::string notes;                   // strategy-specific key=value;...
  // The restore phase's columns (empty in a row without --restore; -1 = not reached in the window).
  double restore_index_s = 0;          // building the image's page index (one pass over the file)
  double resume_s = 0;                 // restore start until the workload may run
  double ready_s = -1;                 // until its rate is back to 90 % of the resident rate
  double resident_s = -1;              // until every page is in the region
  uint64_t restore_faults = 0, restore_read_bytes = 0, restore_extra_bytes = 0;
  double access_p50_us = 0, access_p99_us = 0, access_p999_us = 0, access_max_us = 0;
  uint64_t restore_accesses = 0;
  double restore_ops_s = 0, resident_ops_s = 0;
  std::string restore_verified = "off";  // pass | fail | off
  std::string restore_notes;
};

// Checks every --set unit and value against the unit's declared parameters (UsageError if bad).
void validate_params(const ParamAssignments& params);

// Validates a spec and fills the parts of a result known before running (tracker, resolved
// parameters, region size, rate and bandwidth targets); throws UsageError on bad input.
RunResult resolve_spec(const RunSpec& spec);

// Whether a strategy (and its tracker, or null) accepts a workload, from their registry entries:
// a refused combination is a run with status=unsupported and this reason.
Support combination_support(const StrategyEntry& strategy, const TrackerEntry* tracker, const std::string& workload);

// The writer columns (achieved rates, write count, latency percentiles) from the workload's warm-up
// and snapshot phases; shared by the harness and the workloads that run whole (qemu).
void set_writer_columns(RunResult& res, const PhaseStats& before, const PhaseStats& during);

// Runs one snapshot. Never throws for run-time failures (they become status=failed with a reason);
// throws UsageError for bad input (unknown strategy, bad parameter...).
RunResult run_once(const RunSpec& spec);

}  // namespace snap
