// The DirtyTracker interface used by precopy (one file per tracker) and its explicit registry.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/params.h"
#include "core/region.h"
#include "core/unit.h"
#include "workloads/workload.h"

namespace snap {

// Tracks which pages of a region are written between two collections.
class DirtyTracker {
 public:
  virtual ~DirtyTracker() = default;
  virtual std::string name() const = 0;
  virtual std::string help() const = 0;
  virtual Support probe() const = 0;
  virtual std::vector<ParamSpec> params() const { return {}; }
  // Starts tracking the whole region (every page clean from now on). `control` is the running
  // workload's control: a tracker that needs more of the workload than the region reaches it there.
  virtual void start(Region& region, WorkloadControl& control, const ParamValues& params) = 0;
  // Appends to `dirty` (sorted ascending, no duplicates) the pages written since start() or the
  // previous collect(), and re-arms them atomically with respect to concurrent writers: a write
  // racing the collection is reported now or at the next collect, never lost.
  virtual void collect(std::vector<uint64_t>& dirty) = 0;
  // Stops tracking and restores the region (no protection, no handler). Idempotent; also called
  // from the destructor, so an exception on any path leaves nothing behind.
  virtual void stop() = 0;
  // Write faults the tracker took (0 where it cannot tell).
  virtual uint64_t faults() const { return 0; }
  // True when collect() cannot re-arm atomically against concurrent writers (soft-dirty: read the
  // pagemap, then clear_refs), so the caller must pause the writers around each collect().
  virtual bool collect_needs_pause() const { return false; }
  // The dirty ring (entries per vCPU) the kvm workload must create its VM with for this tracker;
  // 0 for trackers that need none. Asked before the workload starts.
  virtual uint32_t workload_dirty_ring_entries(const ParamValues&) const { return 0; }
  // Memory the tracker allocated for its bookkeeping (bitmaps, read buffers), for extra_rss_bytes.
  virtual uint64_t memory_bytes() const { return 0; }
};

// The tracker precopy uses when none is named (--tracker, matrix specs).
inline constexpr const char* kDefaultTracker = "uffd-async";

struct TrackerEntry {
  std::string name;
  std::function<std::unique_ptr<DirtyTracker>()> make;
  std::vector<std::string> workloads;  // the workloads it can track (empty: every workload)
};
const Registry<TrackerEntry>& tracker_registry();
std::unique_ptr<DirtyTracker> make_tracker(const std::string& name);  // throws UsageError if unknown

}  // namespace snap
