// The kvm workload's guest writer program (workloads/kvm/guest) booted by QEMU instead of the
// in-tree VMM: the same multiboot ELF via -kernel, its control block written by snapbench into
// QEMU's (shared) low RAM before the vCPU starts, its data area snapbench's own shared Region
// plugged at guest-physical 4 GiB, pause/resume as QMP stop/cont, statistics read from the control
// block. One vCPU: under a multiboot loader only the boot processor runs the guest program.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/histogram.h"
#include "core/region.h"
#include "workloads/kvm/guest_abi.h"
#include "workloads/pattern_math.h"
#include "workloads/qemu/qemu_vm.h"

namespace snap::qemu {

struct QemuGuestOptions {
  std::string binary = kDefaultQemu;
  std::string accel = "auto";         // kvm | tcg | auto (kvm when /dev/kvm opens, else tcg)
  // QEMU's -bios: qboot (shipped with QEMU) boots the multiboot guest in ~2 s here against ~15 s for
  // SeaBIOS, whose real-mode code nested KVM emulates slowly; "" = QEMU's default (SeaBIOS).
  std::string firmware = "qboot.rom";
  uint32_t dirty_ring = 0;            // KVM dirty ring entries per vCPU (0: dirty bitmap)
  std::string pattern = "uniform";
  double rate_pages = 0;              // total pages/s; kRateMax: unpaced; 0: idle
  uint64_t seed = 1;                  // of the access pattern and the latency sampling
  double boot_timeout_s = 120;        // until the guest's write loop runs (the 32-bit path is slow
                                      // under nested KVM)
};

// The guest-physical RAM below 4 GiB: firmware, the guest image, its page tables, the control block.
constexpr uint64_t kLowRamBytes = 64ull << 20;

class QemuGuest {
 public:
  // Boots QEMU on `region` (a shared Region, a multiple of 2 MiB) and returns once the guest's write
  // loop runs. Throws UsageError for options QEMU cannot serve, runtime_error otherwise (with QEMU's
  // last stderr line, or the guest's panic code).
  QemuGuest(Region& region, const QemuGuestOptions& opts);
  ~QemuGuest();
  QemuGuest(const QemuGuest&) = delete;
  QemuGuest& operator=(const QemuGuest&) = delete;

  QemuVm& vm() { return *vm_; }
  Region& region() { return region_; }
  double tsc_hz() const { return tsc_hz_; }
  // Where tsc_hz came from: "qemu" (KVM's, via QEMU's tsc-frequency) or "host" (measured: TCG).
  const char* tsc_source() const { return vm_->accel() == "tcg" ? "host" : "qemu"; }
  const std::string& accel() const { return vm_->accel(); }

  void set_phase(int phase);  // the guest's latency/count phase (0 warm-up, 1 snapshot, 2 after)
  void pause();               // QMP stop (idempotent)
  // A new control generation (the guest's pacing forgives the time parked and does not time a write
  // that spanned the pause), then QMP cont.
  void resume();
  bool paused() const { return paused_; }
  // QEMU stopped the guest by itself (a completed precopy leaves it in postmigrate).
  void stopped_by_qemu() { paused_ = true; }
  // The guest's counters and latency histogram (ns) of a phase, summed over its vCPUs.
  uint64_t writes(int phase) const;
  Histogram latency(int phase) const;
  // "" unless the guest reported a panic.
  std::string guest_failure() const;

 private:
  guest::ControlHeader& header() const;
  guest::VcpuBlock& block(uint32_t i) const;

  Region& region_;
  std::unique_ptr<QemuVm> vm_;
  double tsc_hz_ = 0;
  bool paused_ = false;
};

}  // namespace snap::qemu
