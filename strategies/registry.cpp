// The explicit registries of strategies and dirty trackers: one line per unit, naming the function
// (defined in the unit's own file) that returns its descriptor.
#include "core/error.h"
#include "strategies/strategy.h"
#include "strategies/tracking/tracker.h"

// In the order `snapbench list` shows them.
#define SNAP_STRATEGIES(X) \
  X(none_strategy)         \
  X(stop_copy_strategy)    \
  X(precopy_strategy)      \
  X(uffd_wp_strategy)      \
  X(fork_cow_strategy)

#define SNAP_TRACKERS(X)   \
  X(uffd_async_tracker)    \
  X(mprotect_tracker)      \
  X(soft_dirty_tracker)    \
  X(kvm_dirty_log_tracker) \
  X(kvm_dirty_ring_tracker)

namespace snap {

#define SNAP_DECLARE_STRATEGY(descriptor) const StrategyEntry& descriptor();
#define SNAP_DECLARE_TRACKER(descriptor) const TrackerEntry& descriptor();
#define SNAP_ENTRY(descriptor) descriptor(),
SNAP_STRATEGIES(SNAP_DECLARE_STRATEGY)
SNAP_TRACKERS(SNAP_DECLARE_TRACKER)

const Registry<StrategyEntry>& strategy_registry() {
  static const Registry<StrategyEntry> registry("--strategy", "strategy", {SNAP_STRATEGIES(SNAP_ENTRY)});
  return registry;
}

const Registry<TrackerEntry>& tracker_registry() {
  static const Registry<TrackerEntry> registry("--tracker", "tracker", {SNAP_TRACKERS(SNAP_ENTRY)});
  return registry;
}

std::unique_ptr<Strategy> make_strategy(const std::string& name) { return strategy_registry().get(name).make(); }

std::unique_ptr<DirtyTracker> make_tracker(const std::string& name) { return tracker_registry().get(name).make(); }

}  // namespace snap
