// Fills the guest program's control block (workloads/kvm/guest_abi.h) for a run: shared by the
// in-tree VMM and by QEMU's boot of the same guest (workloads/qemu), so both pace and time alike.
#pragma once
#include <cstdint>
#include <vector>

#include "workloads/kvm/guest_abi.h"
#include "workloads/pattern_math.h"

namespace snap::guest {

struct ControlSettings {
  std::vector<PatternPlan> plans;  // one per vCPU
  uint64_t data_bytes = 0;
  double rate_pages = 0;           // total pages/s; kRateMax: unpaced; 0: idle
  double tsc_hz = 0;               // the guest's TSC frequency
  uint64_t sample_seed = 1;
  bool vmm_ports = true;           // the VMM handles the sleep and idle ports (guest_abi.h)
};

// Writes the header and each vCPU's plan; `blocks` are the VcpuBlocks that follow the header.
void fill_control(ControlHeader& h, VcpuBlock* blocks, const ControlSettings& s);

}  // namespace snap::guest
