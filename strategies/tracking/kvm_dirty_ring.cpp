// `kvm-dirty-ring` dirty tracker (kvm workload): KVM's per-vCPU dirty rings; collect harvests every
// ring (and what full-ring exits harvested meanwhile) and re-protects with KVM_RESET_DIRTY_RINGS.
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "strategies/tracking/tracker.h"
#include "workloads/kvm/vm.h"

namespace snap {

namespace {

class KvmDirtyRingTracker final : public DirtyTracker {
 public:
  ~KvmDirtyRingTracker() override {
    try {
      stop();
    } catch (...) {
      // The VM going away drops the logging with it.
    }
  }

  using DirtyTracker::DirtyTracker;
  Support probe() const override {
    if (std::string why = kvm::kvm_unavailable_reason(); !why.empty()) return Support::no(why);
    if (kvm::kvm_dirty_ring_max_entries() == 0) return Support::no("KVM lacks KVM_CAP_DIRTY_LOG_RING");
    return Support::yes();
  }

  void start(Region&, WorkloadControl& control, const ParamValues&) override {
    stop();
    vm_ = control.kvm_vm();
    if (!vm_) throw std::runtime_error("kvm-dirty-ring tracks a KVM guest's memory: use --workload kvm");
    if (vm_->dirty_ring_entries() == 0) throw std::runtime_error("kvm-dirty-ring: the VM was created without a dirty ring");
    full_exits_at_start_ = vm_->dirty_ring_full_exits();
    harvested_at_start_ = vm_->dirty_ring_harvested();
    // Enabling logging write-protects every page of the slot: from here on each first write to a
    // page pushes its entry into the writing vCPU's ring.
    vm_->set_dirty_logging(true);
    logging_ = true;
  }

  void collect(std::vector<uint64_t>& dirty) override { vm_->harvest_dirty_rings(dirty); }

  void stop() override {
    if (!logging_) return;
    logging_ = false;
    vm_->set_dirty_logging(false);
    std::vector<uint64_t> discard;
    vm_->harvest_dirty_rings(discard);  // leave the rings empty for the next user
  }

  // Ring entries harvested: one per page first written after its protection (KVM's write fault).
  uint64_t faults() const override { return vm_ ? vm_->dirty_ring_harvested() - harvested_at_start_ : 0; }

 private:
  kvm::Vm* vm_ = nullptr;
  bool logging_ = false;
  uint64_t full_exits_at_start_ = 0, harvested_at_start_ = 0;
};

}  // namespace

const TrackerEntry& kvm_dirty_ring_tracker() {
  static const TrackerEntry entry{
      .name = "kvm-dirty-ring",
      .help = "KVM's per-vCPU dirty rings (KVM_CAP_DIRTY_LOG_RING_ACQ_REL): harvest, KVM_RESET_DIRTY_RINGS; "
              "a full ring stops its vCPU until harvested; kvm workload only",
      .params = {
          {"ring_entries", ParamSpec::Type::kInt, "4096", 512, 65536,
           "entries of each vCPU's ring, a power of two (16 bytes each; KVM allows up to 1 MiB per vCPU); the "
           "VM is created with it"},
      },
      .workloads = {"kvm"},
      .workload_dirty_ring_entries = [](const ParamValues& params) { return uint32_t(params.get_int("ring_entries")); },
      .factory = make_tracker_of<KvmDirtyRingTracker>,
  };
  return entry;
}

}  // namespace snap
