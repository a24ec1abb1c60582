// The `qemu` workload: the kvm workload's guest program run by Debian's QEMU, snapshotted with
// QEMU's own mechanism for each strategy (workloads/qemu/qemu_snapshot.h), so QEMU's precopy and
// background-snapshot become rows of the same CSV as snapbench's strategies.
#pragma once
#include "workloads/workload.h"

namespace snap::qemu {

const WorkloadEntry& qemu_workload();

}  // namespace snap::qemu
