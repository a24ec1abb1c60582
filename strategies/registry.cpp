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
std::unique_ptr<DirtyTracker> make_kvm_dirty_log_tracker();
std::unique_ptr<DirtyTracker> make_kvm_dirty_ring_tracker();

const Registry<StrategyEntry>& strategy_registry() {
  static const Registry<StrategyEntry> registry("--strategy", "strategy",
                                                {
                                                    {"none", make_none_strategy, {}, false},
                                                    {"stop-copy", make_stop_copy_strategy, {}, false},
                                                    {"precopy", make_precopy_strategy, {}, true},
                                                    {"uffd-wp", make_uffd_wp_strategy, {}, false},
                                                    {"fork-cow", make_fork_cow_strategy, {}, false},
                                                });
  return registry;
}

// mprotect learns of a write from the SIGSEGV of a thread of this process: only the threads workload
// writes that way (a guest's or another process's stores never reach its handler; a vCPU's store to
// a PROT_READ page makes KVM_RUN fail with EFAULT instead). The kvm trackers read KVM's own log.
const Registry<TrackerEntry>& tracker_registry() {
  static const Registry<TrackerEntry> registry("--tracker", "tracker",
                                               {
                                                   {"uffd-async", make_uffd_async_tracker, {}},
                                                   {"mprotect", make_mprotect_tracker, {"threads"}},
                                                   {"soft-dirty", make_soft_dirty_tracker, {}},
                                                   {"kvm-dirty-log", make_kvm_dirty_log_tracker, {"kvm"}},
                                                   {"kvm-dirty-ring", make_kvm_dirty_ring_tracker, {"kvm"}},
                                               });
  return registry;
}

std::unique_ptr<Strategy> make_strategy(const std::string& name) { return strategy_registry().get(name).make(); }

std::unique_ptr<DirtyTracker> make_tracker(const std::string& name) { return tracker_registry().get(name).make(); }

}  // namespace snap
