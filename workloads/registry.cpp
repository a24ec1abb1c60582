// The explicit registry of workloads: one line per workload, naming the function (defined in the
// workload's own file) that returns its descriptor.
#include "workloads/workload.h"

// In the order `snapbench list` shows them.
#define SNAP_WORKLOADS(X) \
  X(threads_workload)     \
  X(kvm_workload)         \
  X(qemu_workload)

namespace snap {

#define SNAP_DECLARE_WORKLOAD(descriptor) const WorkloadEntry& descriptor();
#define SNAP_ENTRY(descriptor) descriptor(),
SNAP_WORKLOADS(SNAP_DECLARE_WORKLOAD)

const Registry<WorkloadEntry>& workload_registry() {
  static const Registry<WorkloadEntry> registry("--workload", "workload", {SNAP_WORKLOADS(SNAP_ENTRY)});
  return registry;
}

}  // namespace snap
