// The explicit registry of workloads: one line per workload.
#include "workloads/kvm/kvm_workload.h"
#include "workloads/qemu/qemu_workload.h"
#include "workloads/threads.h"
#include "workloads/workload.h"

namespace snap {

const Registry<WorkloadEntry>& workload_registry() {
  static const Registry<WorkloadEntry> registry("--workload", "workload",
                                                {
                                                    threads_workload(),
                                                    kvm_workload(),
                                                    qemu::qemu_workload(),
                                                });
  return registry;
}

}  // namespace snap
