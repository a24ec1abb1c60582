// The DirtyTracker interface (one file per tracker), its descriptor and its explicit registry.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/params.h"
#include "core/region.h"
#include "core/unit.h"
#include "workloads/workload.h"

namespace snap {

class DirtyTracker;

// A tracker's descriptor: its fixed facts, declared once in its own file and listed by
// strategies/registry.cpp. Behaviour (probe, start, collect, stop) is virtual.
struct TrackerEntry {
  std::string name = {};                    // registry key, --tracker value, CSV value
  std::string help = {};                    // one line for `snapbench list`
  std::vector<ParamSpec> params = {};       // settable with --set NAME.PARAM=VALUE
  std::vector<std::string> workloads = {};  // the workloads it can track (empty: every workload)
  // True when collect() cannot re-arm atomically against concurrent writers (soft-dirty: read the
  // pagemap, then clear_refs), so the caller must pause the writers around each collect().
  bool collect_needs_pause = false;
  // The dirty ring (entries per vCPU) the kvm workload must create its VM with for this tracker
  // (null: none). Asked before the workload starts.
  uint32_t (*workload_dirty_ring_entries)(const ParamValues& params) = nullptr;
  std::unique_ptr<DirtyTracker> (*factory)(const TrackerEntry&) = nullptr;  // see make_tracker_of

  std::unique_ptr<DirtyTracker> make() const { return factory(*this); }
  uint32_t dirty_ring_entries(const ParamValues& params) const {
    return workload_dirty_ring_entries ? workload_dirty_ring_entries(params) : 0;
  }
};

// Tracks which pages of a region are written between two collections.
class DirtyTracker {
 public:
  explicit DirtyTracker(const TrackerEntry& info) : info_(info) {}
  virtual ~DirtyTracker() = default;
  const TrackerEntry& info() const { return info_; }
  virtual Support probe() const = 0;
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
  // Memory the tracker allocated for its bookkeeping (bitmaps, read buffers), for extra_rss_bytes.
  virtual uint64_t memory_bytes() const { return 0; }

 private:
  const TrackerEntry& info_;
};

// The factory of a descriptor: `.factory = make_tracker_of<MyTracker>`.
template <class T>
std::unique_ptr<DirtyTracker> make_tracker_of(const TrackerEntry& info) {
  return std::make_unique<T>(info);
}

// The tracker a strategy that uses one gets when none is named (--tracker, matrix specs).
inline constexpr const char* kDefaultTracker = "uffd-async";

const Registry<TrackerEntry>& tracker_registry();
std::unique_ptr<DirtyTracker> make_tracker(const std::string& name);  // throws UsageError if unknown

}  // namespace snap
