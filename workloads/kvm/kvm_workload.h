// The `kvm` workload: the region's writers are the vCPUs of a real KVM guest (workloads/kvm/vm.h),
// with the host writers' phases, statistics and pause/resume contract.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "core/region.h"
#include "workloads/kvm/vm.h"
#include "workloads/workload.h"

namespace snap {

class KvmWorkload {
 public:
  // Starts the VM (one vCPU per writer) and returns once every vCPU runs its write loop.
  // dirty_ring_entries > 0 creates the VM with KVM's dirty ring (the kvm-dirty-ring tracker needs it
  // before any vCPU exists).
  KvmWorkload(Region& region, const WorkloadOptions& opts, uint32_t dirty_ring_entries = 0);
  ~KvmWorkload();
  KvmWorkload(const KvmWorkload&) = delete;
  KvmWorkload& operator=(const KvmWorkload&) = delete;

  void set_phase(Phase p);
  void pause();  // every vCPU out of KVM_RUN and parked (bounded; throws on timeout or a vCPU failure)
  void resume();
  bool paused() const;
  void stop();
  PhaseStats stats(Phase p) const;  // after stop()
  uint64_t total_writes() const;
  // exits_<reason>=N per vCPU exit reason, the guest's TSC frequency; a vCPU failure if any.
  std::string notes() const;
  std::string failure() const;  // "" unless a vCPU failed
  kvm::Vm& vm() { return *vm_; }

 private:
  std::unique_ptr<kvm::Vm> vm_;
  mutable std::mutex mutex_;
  bool stopped_ = false;
  int phase_ = int(Phase::kWarmup);
  uint64_t phase_started_ns_ = 0;
  double phase_seconds_[3] = {};
};

}  // namespace snap
