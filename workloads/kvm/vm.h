// The minimal VMM: one KVM virtual machine whose data memslot is the Region's memory, running the
// embedded guest writer program on N vCPUs (one host thread each), with pause/resume, the vCPU exit
// counts, and KVM's dirty log and dirty ring for the trackers.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "workloads/pattern_math.h"

namespace snap::kvm {

// What the VM runs. Patterns come as plans (workloads/pattern_kit.h), one per vCPU.
struct VmOptions {
  uint8_t* data = nullptr;           // the Region's memory: the data memslot's host address
  size_t data_bytes = 0;
  std::vector<PatternPlan> plans;    // one per vCPU (their count is the vCPU count, 1..64)
  double rate_pages = 0;             // total pages/s over all vCPUs; kRateMax: unpaced; 0: idle
  uint64_t sample_seed = 1;          // the random gaps of unpaced latency sampling
  uint32_t dirty_ring_entries = 0;   // >0: enable KVM's dirty ring of this many entries per vCPU
  // Start the vCPUs at the ELF's 32-bit multiboot entry (the guest then enters long mode itself, as
  // under QEMU's -kernel) instead of at its 64-bit entry in long mode. Slow where KVM emulates
  // code that runs before paging (seconds here); the tests use it to check that path.
  bool boot32 = false;
};

// Why /dev/kvm cannot run the VM here ("" when it can): the device, the API version and the
// capabilities the VMM needs.
std::string kvm_unavailable_reason();
// The largest dirty ring KVM allows per vCPU in entries (0 without the dirty ring).
uint32_t kvm_dirty_ring_max_entries();
// True when KVM offers KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 with initially-all-set.
bool kvm_manual_dirty_log_available();

// Exit counts and the guest's own counters, per vCPU.
struct VcpuCounters {
  std::map<std::string, uint64_t> exits;  // by reason: io_sleep, hlt, intr, dirty_ring_full...
};

class Vm {
 public:
  explicit Vm(const VmOptions& opts);  // creates the VM, loads the guest, starts the vCPU threads
  ~Vm();                              // stops, joins, unmaps and closes everything
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  int vcpus() const;
  // Every vCPU out of KVM_RUN and parked: kicks each (signal + immediate_exit), bounded wait.
  // Throws runtime_error on timeout (the vCPUs are then resumed) or when a vCPU failed.
  void pause();
  void resume();
  bool paused() const;
  void set_phase(int phase);  // the guest's latency/count phase (0 warm-up, 1 snapshot, 2 after)
  void stop();                // idempotent; the vCPU threads are joined
  // The first vCPU failure (a KVM_RUN error, an unexpected exit, a guest panic); "" when none.
  std::string failure() const;

  // Guest counters, read from the control block (exact when stopped or paused).
  uint64_t writes(int phase) const;
  uint64_t total_writes() const;
  // The guest's latency histogram of a phase, merged over vCPUs: raw bucket counts (ns).
  void latency(int phase, std::vector<uint64_t>& counts, uint64_t& total, uint64_t& max, uint64_t& sum) const;
  std::map<std::string, uint64_t> exit_counts() const;  // summed over vCPUs
  double tsc_hz() const;

  // ---- KVM dirty log on the data memslot ----
  int data_slot() const;
  size_t data_pages() const;
  bool manual_dirty_log() const;                     // manual protect + initially-set enabled
  void set_dirty_logging(bool on);                   // KVM_MEM_LOG_DIRTY_PAGES on the data memslot
  void get_dirty_log(std::vector<uint64_t>& bitmap);  // KVM_GET_DIRTY_LOG (bitmap sized to the slot)
  // KVM_CLEAR_DIRTY_LOG of [first_page, first_page + pages) with bits taken from `bitmap` (whose bit
  // 0 is first_page); first_page and pages multiples of 64, except pages may end at the slot's end.
  void clear_dirty_log(uint64_t first_page, uint64_t pages, const uint64_t* bitmap);

  // ---- KVM dirty ring ----
  uint32_t dirty_ring_entries() const;
  // Harvests every vCPU's ring (then KVM_RESET_DIRTY_RINGS) and moves the pages gathered so far,
  // including those harvested on full-ring exits, into `pages` (sorted, unique).
  void harvest_dirty_rings(std::vector<uint64_t>& pages);
  uint64_t dirty_ring_full_exits() const;
  uint64_t dirty_ring_harvested() const;  // entries read from the rings

  int vm_fd() const;  // for benchmarks and tests

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace snap::kvm
