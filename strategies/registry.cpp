// The explicit registries of strategies and dirty trackers: one line per unit.
#include "core/error.h"
#include "strategies/strategy.h"
#include "strategies/tracking/tracker.h"

namespace snap {

// Each factory lives in its strategy's own file.
std::unique_ptr<Strategy> make_none_strategy();
std::unique_ptr<Strategy> make_stop_copy_strategy();
std::unique_ptr<Strategy> make_precopy_strategy();
std::unique_ptr<Strategy> make_uffd_wp_strategy();
std::unique_ptr<Strategy> make_fork_cow_strategy();

std::unique_ptr<DirtyTracker> make_uffd_async_tracker();
std::unique_ptr<DirtyTracker> make_mprotect_tracker();
std::unique_ptr<DirtyTracker> make_soft_dirty_tracker();

const std::vector<StrategyEntry>& strategy_registry() {
  static const std::vector<StrategyEntry> entries = {
      {"none", make_none_strategy},
      {"stop-copy", make_stop_copy_strategy},
      {"precopy", make_precopy_strategy},
      {"uffd-wp", make_uffd_wp_strategy},
      {"fork-cow", make_fork_cow_strategy},
  };
  return entries;
}

const std::vector<TrackerEntry>& tracker_registry() {
  static const std::vector<TrackerEntry> entries = {
      {"uffd-async", make_uffd_async_tracker},
      {"mprotect", make_mprotect_tracker},
      {"soft-dirty", make_soft_dirty_tracker},
  };
  return entries;
}

std::unique_ptr<Strategy> make_strategy(const std::string& name) {
  std::string known;
  for (const auto& e : strategy_registry()) {
    if (e.name == name) return e.make();
    known += (known.empty() ? "" : ", ") + e.name;
  }
  throw UsageError("--strategy: unknown strategy '" + name + "' (known: " + known + ")");
}

std::unique_ptr<DirtyTracker> make_tracker(const std::string& name) {
  std::string known;
  for (const auto& e : tracker_registry()) {
    if (e.name == name) return e.make();
    known += (known.empty() ? "" : ", ") + e.name;
  }
  throw UsageError("--tracker: unknown tracker '" + name + "' (known: " + known + ")");
}

}  // namespace snap
