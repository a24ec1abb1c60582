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

class KvmWorkload final : public Workload {
 public:
  // Starts the VM (one vCPU per writer) and returns once every vCPU runs its write loop.
  // opts.dirty_ring_entries > 0 creates the VM with KVM's dirty ring.
  KvmWorkload(Region& region, const WorkloadOptions& opts);
  ~KvmWorkload() override;
  KvmWorkload(const KvmWorkload&) = delete;
  KvmWorkload& operator=(const KvmWorkload&) = delete;

  void set_phase(Phase p) override;
  void pause() override;  // every vCPU out of KVM_RUN and parked (bounded; throws on timeout or a vCPU failure)
  void resume() override;
  bool paused() const override;
  void stop() override;
  // After stop(). Throws runtime_error when a vCPU failed (the run is then failed with that reason).
  PhaseStats stats(Phase p) const override;
  uint64_t total_writes() const override;
  // exits_<reason>=N per vCPU exit reason, the guest's TSC frequency.
  std::string notes() const override;
  std::string failure() const;  // "" unless a vCPU failed
  kvm::Vm* kvm_vm() override { return vm_.get(); }

 private:
  std::unique_ptr<kvm::Vm> vm_;
  mutable std::mutex mutex_;
  bool stopped_ = false;
  int phase_ = int(Phase::kWarmup);
  uint64_t phase_started_ns_ = 0;
  double phase_seconds_[3] = {};
};

}  // namespace snap
