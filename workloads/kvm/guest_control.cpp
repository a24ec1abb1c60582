// fill_control: the control block's values from the run's settings (see guest_control.h).
#include "workloads/kvm/guest_control.h"

#include <cmath>

#include "core/units.h"

namespace snap::guest {

namespace {
constexpr double kBurstS = 2e-3, kMinSleepS = 50e-6, kStallMinS = 2e-6;  // as the host writers
}  // namespace

void fill_control(ControlHeader& h, VcpuBlock* blocks, const ControlSettings& s) {
  h.magic = kControlMagic;
  h.version = kControlVersion;
  h.vcpus = uint32_t(s.plans.size());
  h.data_gpa = kDataGpa;
  h.data_pages = s.data_bytes / kPageBytes;
  h.ns_per_tick_q32 = uint64_t(std::ldexp(1e9 / s.tsc_hz, 32));
  const double n = double(s.plans.size());
  h.idle = s.rate_pages == 0;
  h.unpaced = s.rate_pages == kRateMax;
  h.interval_ticks = s.rate_pages > 0 ? uint64_t(s.tsc_hz * n / s.rate_pages) : 0;
  if (s.rate_pages > 0 && h.interval_ticks == 0) h.interval_ticks = 1;
  h.burst_ticks = uint64_t(s.tsc_hz * kBurstS);
  h.min_sleep_ticks = uint64_t(s.tsc_hz * kMinSleepS);
  h.stall_min_ticks = uint64_t(s.tsc_hz * kStallMinS);
  h.sample_seed = s.sample_seed;
  h.vmm_ports = s.vmm_ports ? 1 : 0;
  h.control = 0;
  for (uint32_t i = 0; i < h.vcpus; ++i) blocks[i].plan = s.plans[i];
}

}  // namespace snap::guest
