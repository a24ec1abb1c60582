// The Strategy interface (one file per strategy) and the explicit registry that lists them all.
#pragma once
#include <cstdint>
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

class Strategy;

// A strategy's descriptor: every fixed fact about it, declared once in its own file and listed by
// strategies/registry.cpp. The harness, `list`, `compare` and the CSV read these; only behaviour
// (probe, snapshot) is virtual.
struct StrategyEntry {
  std::string name = {};                    // registry key, --strategy value, CSV value, image header
  std::string help = {};                    // one line for `snapbench list`
  std::vector<ParamSpec> params = {};       // settable with --set NAME.PARAM=VALUE
  ConsistencyPoint consistency = ConsistencyPoint::kStart;  // the moment its image's content is from
  std::vector<std::string> workloads = {};  // the workloads it can snapshot (empty: every workload)
  std::vector<std::string> trackers = {};   // the trackers it takes, if it uses one (empty: every tracker)
  bool uses_tracker = false;           // takes a dirty tracker (--tracker, kDefaultTracker if none named)
  bool produces_image = true;          // false only for `none`, which saves nothing (its verify is off)
  // True when its image may hold a page more than once (precopy re-saves written pages); false
  // makes any duplicate record a bug that `compare` reports as BROKEN.
  bool may_save_duplicates = false;
  // The most page records its image can hold for a region of `pages` with these parameter values,
  // when it may re-save pages (null: one per page). The harness sizes an in-memory sink from it.
  uint64_t (*max_records)(uint64_t pages, const ParamValues& params) = nullptr;
  std::unique_ptr<Strategy> (*factory)(const StrategyEntry&) = nullptr;  // see make_strategy_of

  std::unique_ptr<Strategy> make() const { return factory(*this); }
  // The bound on its stream's page records (max_records, or one per page; none without an image).
  uint64_t record_bound(uint64_t pages, const ParamValues& params) const {
    if (!produces_image) return 0;
    return max_records ? max_records(pages, params) : pages;
  }
};

class Strategy {
 public:
  explicit Strategy(const StrategyEntry& info) : info_(info) {}
  virtual ~Strategy() = default;
  const StrategyEntry& info() const { return info_; }
  virtual Support probe() const = 0;  // may this kernel run it?
  // The header of this strategy's image (its name and consistency point, from its descriptor).
  ImageHeader image_header(uint64_t region_pages) const {
    ImageHeader h;
    h.region_pages = region_pages;
    h.consistency = info_.consistency;
    h.strategy = info_.name;
    return h;
  }
  // Takes one snapshot into ctx.sink through an ImageWriter. Must call ctx.control.consistency_point()
  // exactly once while the writers are paused. On every exit path (including a throwing sink) it
  // leaves no page protected, no handler installed, no writer paused and no child unreaped.
  virtual void snapshot(SnapshotContext& ctx) = 0;

 private:
  const StrategyEntry& info_;
};

// The factory of a descriptor: `.factory = make_strategy_of<MyStrategy>` (MyStrategy is built from
// its descriptor, `using Strategy::Strategy;`).
template <class S>
std::unique_ptr<Strategy> make_strategy_of(const StrategyEntry& info) {
  return std::make_unique<S>(info);
}

// The registry: one line per strategy, in strategies/registry.cpp.
const Registry<StrategyEntry>& strategy_registry();
std::unique_ptr<Strategy> make_strategy(const std::string& name);  // throws UsageError if unknown

}  // namespace snap
