// The synthetic workload: paced writer threads that dirty pages of the region, and the control
// (pause/resume) that the harness and strategies use to stop them at a consistency point.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/histogram.h"
#include "core/params.h"
#include "core/region.h"

namespace snap {

// Chooses the next page to write. One instance per writer thread (no sharing, no locks).
class AccessPattern {
 public:
  virtual ~AccessPattern() = default;
  virtual uint64_t next() = 0;  // a page index in [0, pages)
};

// A registered pattern kind: `uniform`, `hotset:HOT_FRACTION:WRITE_SHARE`, `zipf:THETA`, `sequential`.
struct PatternInfo {
  std::string name, syntax, help;
};
const std::vector<PatternInfo>& pattern_kinds();
// Validates a --pattern spec (throws UsageError naming --pattern).
void check_pattern_spec(const std::string& spec);
// Builds the pattern for writer `writer` of `writers`, deterministic in `seed`.
std::unique_ptr<AccessPattern> make_pattern(const std::string& spec, uint64_t pages, uint64_t seed,
                                            int writer, int writers);

// Pause and resume the writers. Strategies call these only; the harness implements the
// consistency-point hook (reference copy for --verify) behind `consistency_point()`.
class WorkloadControl {
 public:
  virtual ~WorkloadControl() = default;
  // Returns when every writer is parked (bounded; throws runtime_error on timeout).
  virtual void pause() = 0;
  virtual void resume() = 0;
  // Called by the strategy while the writers are paused, at the moment the image's content is
  // defined (stop-copy: the pause; uffd-wp/fork-cow: before resuming; precopy: the final pause).
  virtual void consistency_point() = 0;
};

struct WorkloadOptions {
  int writers = 2;
  double rate_pages = 0;  // total target pages/s over all writers; kRateMax = unlimited; 0 = idle
  std::string pattern = "uniform";
  uint64_t seed = 1;
  int numa_node = -1;  // bind writer threads to this node's CPUs
};

// Phases, so that latency and throughput before and during the snapshot are told apart.
enum class Phase : int { kWarmup = 0, kSnapshot = 1, kAfter = 2 };

struct PhaseStats {
  Histogram latency;       // per-write latency in ns (includes any fault stall)
  uint64_t writes = 0;
  double seconds = 0;      // wall time spent in this phase
  double rate_pages() const { return seconds > 0 ? double(writes) / seconds : 0.0; }
};

// Runs the writer threads; also the real WorkloadControl (pause parks every writer).
class Workload {
 public:
  Workload(Region& region, const WorkloadOptions& opts);  // starts the threads
  ~Workload();  // stops and joins (resumes first if paused)
  Workload(const Workload&) = delete;
  Workload& operator=(const Workload&) = delete;

  void set_phase(Phase p);
  void pause();   // bounded wait for all writers to park; throws on timeout (writers then resumed)
  void resume();
  bool paused() const;
  void stop();    // ends the threads; idempotent
  PhaseStats stats(Phase p) const;  // merged over writers; call after stop()
  uint64_t total_writes() const;    // live counter (relaxed)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Stamp layout written by each write, so a torn or stale page is detectable: at byte offset
// (seq % 255) * 16 of the page, the 64-bit sequence number then the 64-bit page index.
constexpr size_t stamp_offset(uint64_t seq) { return size_t(seq % 255) * 16; }

}  // namespace snap
