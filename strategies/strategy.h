// The Strategy interface (one file per strategy) and the explicit registry that lists them all.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/image.h"
#include "core/params.h"
#include "core/region.h"
#include "core/sink.h"
#include "core/unit.h"
#include "workloads/workload.h"

namespace snap {

// Numbers a strategy reports beyond what the harness measures itself. Strategies never print and
// never time the whole run; they fill these and the harness copies them into the CSV row.
struct StrategyMetrics {
  ImageStats image;            // copy of the ImageWriter's stats (the harness fills it if left zero)
  uint64_t passes = 1;         // save passes over memory (precopy: >1)
  bool converged = true;       // precopy: false when it stopped on max_passes
  double freeze_s = 0;         // time of the freeze primitive while paused (fork(), WP arming, tracker arm)
  uint64_t faults = 0;         // write faults serviced (uffd-wp), tracker faults (mprotect)
  uint64_t extra_rss_bytes = 0;  // memory the strategy added (COW copies, copy-aside buffers, bitmaps)
  std::string notes;           // "key=value;..." strategy-specific facts (e.g. wp_unpopulated=1)
  void note(const std::string& key, const std::string& value) {
    notes += (notes.empty() ? "" : ";") + key + "=" + value;
  }
};

class DirtyTracker;

// Everything a strategy gets for one snapshot.
struct SnapshotContext {
  Region& region;
  WorkloadControl& control;
  Sink& sink;
  StrategyMetrics& metrics;
  const ParamValues& params;   // this strategy's --set values
  // The dirty tracker the harness resolved and probed for this run (null unless the strategy uses
  // one), and its --set values. The strategy starts and stops it.
  DirtyTracker* tracker;
  const ParamValues& tracker_params;
};

class Strategy {
 public:
  virtual ~Strategy() = default;
  virtual std::string name() const = 0;           // registry key and CSV value
  virtual std::string help() const = 0;           // one line for `snapbench list`
  virtual Support probe() const = 0;              // may this kernel run it?
  virtual std::vector<ParamSpec> params() const { return {}; }
  virtual bool uses_tracker() const { return false; }
  virtual ConsistencyPoint consistency() const = 0;
  // False only for `none`, which saves nothing (its verify is always off).
  virtual bool produces_image() const { return true; }
  // The most page records its image can hold for a region of `pages` with these parameter values:
  // the harness sizes an in-memory sink (or the verify tee) from it. One per page unless it re-saves.
  virtual uint64_t max_records(uint64_t pages, const ParamValues& params) const {
    (void)params;
    return produces_image() ? pages : 0;
  }
  // The header of this strategy's image (its name and consistency point, said once, here).
  ImageHeader image_header(uint64_t region_pages) const {
    ImageHeader h;
    h.region_pages = region_pages;
    h.consistency = consistency();
    h.strategy = name();
    return h;
  }
  // Takes one snapshot into ctx.sink through an ImageWriter. Must call ctx.control.consistency_point()
  // exactly once while the writers are paused. On every exit path (including a throwing sink) it
  // leaves no page protected, no handler installed, no writer paused and no child unreaped.
  virtual void snapshot(SnapshotContext& ctx) = 0;
};

struct StrategyEntry {
  std::string name;
  std::function<std::unique_ptr<Strategy>()> make;
  std::vector<std::string> workloads;  // the workloads it can snapshot (empty: every workload)
  // True when its image may hold a page more than once (precopy re-saves written pages); false
  // makes any duplicate record a bug that `compare` reports as BROKEN.
  bool may_save_duplicates;
};
// The registry: one line per strategy, in strategies/registry.cpp.
const Registry<StrategyEntry>& strategy_registry();
std::unique_ptr<Strategy> make_strategy(const std::string& name);  // throws UsageError if unknown

}  // namespace snap
