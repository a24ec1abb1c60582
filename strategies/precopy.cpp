// `precopy`: dirty-logging iterative copy (QEMU's migration to a file): save every page, re-save the
// pages written meanwhile until the rest fits the downtime budget, then a short stop-and-copy.
#include <algorithm>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/scoped.h"
#include "core/units.h"
#include "strategies/strategy.h"
#include "strategies/tracking/tracker.h"

namespace snap {

namespace {

constexpr size_t kFirstPassChunkPages = 256;  // pages per ImageWriter call in the full first pass

// Saves the pages listed in `pages` (sorted, unique), one ImageWriter call per run of consecutive pages.
void save_listed(ImageWriter& writer, Region& region, const std::vector<uint64_t>& pages) {
  for (size_t i = 0; i < pages.size();) {
    size_t j = i + 1;
    while (j < pages.size() && pages[j] == pages[j - 1] + 1) ++j;
    writer.save_pages(pages[i], region.page(pages[i]), j - i);
    i = j;
  }
}

// The tracker and the writers' pause state of one snapshot. Its destructor is the cleanup of every
// failing exit path: stop the tracker (with the writers parked, so no write fault is in flight while
// the mprotect tracker restores the old SIGSEGV handler), then resume the writers.
class Session {
 public:
  Session(DirtyTracker& tracker, WorkloadControl& control) : tracker_(tracker), paused_(control, std::defer_lock) {}
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  // Then paused_ resumes the writers (after the tracker stopped).
  ~Session() {
    if (!tracking_) return;
    tracking_ = false;
    if (!paused_.paused()) {
      try {
        paused_.pause();
      } catch (...) {
        // Cannot park the writers (timeout): stop the tracker with them running.
      }
    }
    try {
      tracker_.stop();
    } catch (...) {
      // Already unwinding from the first failure, which is the one to report.
    }
  }

  void start(Region& region, WorkloadControl& control, const ParamValues& params) {
    tracking_ = true;  // before start(): a tracker that half-started is stopped too
    tracker_.start(region, control, params);
  }
  void pause() { paused_.pause(); }
  void resume() { paused_.resume(); }
  // Collects, parking the writers around it when the tracker cannot re-arm atomically.
  void collect(std::vector<uint64_t>& dirty) {
    const bool brief_pause = !paused_.paused() && tracker_.info().collect_needs_pause;
    if (brief_pause) pause();
    tracker_.collect(dirty);
    if (brief_pause) resume();
  }
  void stop_tracking() {
    tracking_ = false;
    tracker_.stop();
  }

 private:
  DirtyTracker& tracker_;
  bool tracking_ = false;
  PauseScope<WorkloadControl> paused_;
};

class PrecopyStrategy final : public Strategy {
 public:
  using Strategy::Strategy;
  Support probe() const override {
    std::string reasons;
    for (const auto& entry : tracker_registry()) {
      if (!accepts(info().trackers, entry.name)) continue;
      Support s = entry.make()->probe();
      if (s.supported) return Support::yes();
      reasons += (reasons.empty() ? "" : "; ") + entry.name + ": " + s.reason;
    }
    return Support::no("no dirty tracker is supported (" + reasons + ")");
  }

  void snapshot(SnapshotContext& ctx) override {
    // The harness resolved, configured and probed the tracker (an unsupported one never gets here).
    if (!ctx.tracker) throw std::logic_error("precopy: no dirty tracker in the snapshot context");
    DirtyTracker* tracker = ctx.tracker;
    const double downtime_budget_s = double(ctx.params.get_int("downtime_ms")) / 1000.0;
    const uint64_t max_passes = uint64_t(ctx.params.get_int("max_passes"));

    Region& region = ctx.region;
    ImageWriter writer(ctx.sink, image_header(region.pages()));
    Session session(*tracker, ctx.control);

    const uint64_t arm_start = now_ns();
    session.start(region, ctx.control, ctx.tracker_params);
    ctx.metrics.freeze_s = ns_to_s(now_ns() - arm_start);

    // Pass 1: every page, while the tracker records what the writers change behind us.
    uint64_t pass_start = now_ns();
    for (size_t i = 0; i < region.pages(); i += kFirstPassChunkPages)
      writer.save_pages(i, region.page(i), std::min(kFirstPassChunkPages, region.pages() - i));
    double bandwidth = save_bandwidth(region.pages(), pass_start);
    uint64_t passes = 1;

    // Iterate while the dirty set would take longer than the budget to save with the writers paused.
    std::vector<uint64_t> dirty;
    bool converged = false;
    for (;;) {
      dirty.clear();
      session.collect(dirty);
      const double estimate_s = double(dirty.size() * kPageSize) / bandwidth;
      if (estimate_s <= downtime_budget_s) {
        converged = true;
        break;
      }
      if (passes + 1 >= max_passes) break;  // the stop-and-copy below is the last allowed pass
      pass_start = now_ns();
      save_listed(writer, region, dirty);
      bandwidth = save_bandwidth(dirty.size(), pass_start);
      ++passes;
    }

    // Stop and copy: the last collected set (not saved yet) plus whatever was written since.
    session.pause();
    std::vector<uint64_t> late;
    session.collect(late);
    std::vector<uint64_t> final_set;
    final_set.reserve(dirty.size() + late.size());
    std::set_union(dirty.begin(), dirty.end(), late.begin(), late.end(), std::back_inserter(final_set));
    ctx.control.consistency_point();
    save_listed(writer, region, final_set);
    ++passes;

    ctx.metrics.extra_rss_bytes = tracker->memory_bytes() +
                                  (dirty.capacity() + late.capacity() + final_set.capacity()) * sizeof(uint64_t);
    session.stop_tracking();  // while the writers are still parked
    session.resume();
    writer.finish();

    ctx.metrics.image = writer.stats();
    ctx.metrics.passes = passes;
    ctx.metrics.converged = converged;
    ctx.metrics.faults = tracker->faults();
  }

 private:
  // Bytes per second of the pass that saved `pages` since `start_ns` (never zero, never infinite).
  static double save_bandwidth(size_t pages, uint64_t start_ns) {
    const double seconds = std::max(ns_to_s(now_ns() - start_ns), 1e-9);
    return std::max(double(pages * kPageSize), double(kPageSize)) / seconds;
  }
};

}  // namespace

const StrategyEntry& precopy_strategy() {
  static const StrategyEntry entry{
      .name = "precopy",
      .help = "dirty-logging iterative copy: save all, re-save written pages until the rest fits downtime_ms, "
              "then stop-and-copy",
      .params = {
          {"downtime_ms", ParamSpec::Type::kInt, "300", 1, 600000,
           "stop iterating once the dirty pages' estimated save time fits this budget (QEMU's downtime-limit)"},
          {"max_passes", ParamSpec::Type::kInt, "30", 2, 1000,
           "give up converging after this many passes, the final stop-and-copy included"},
      },
      .consistency = ConsistencyPoint::kEnd,
      .uses_tracker = true,
      .may_save_duplicates = true,
      // Pass 1 saves every page, each later pass at most every page again.
      .max_records = [](uint64_t pages, const ParamValues& params) {
        return pages * uint64_t(params.get_int("max_passes"));
      },
      .factory = make_strategy_of<PrecopyStrategy>,
  };
  return entry;
}

}  // namespace snap
