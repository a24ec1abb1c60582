// QemuGuest: boots the guest writer program under QEMU and drives it (see qemu_guest.h).
#include "workloads/qemu/qemu_guest.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "core/clock.h"
#include "core/error.h"
#include "core/histogram_layout.h"
#include "core/run_stop.h"
#include "workloads/kvm/guest_control.h"
#include "workloads/pattern_kit.h"
#include "workloads/qemu/host_tsc.h"

extern "C" const unsigned char snap_guest_elf_start[];
extern "C" const unsigned char snap_guest_elf_end[];

namespace snap::qemu {

namespace {

// The embedded guest ELF as a file for -kernel; removed once QEMU has read it (at machine set-up).
class GuestElfFile {
 public:
  GuestElfFile() {
    char tmpl[] = "/tmp/snapbench-guest-XXXXXX";
    const int fd = mkstemp(tmpl);
    if (fd < 0) throw_errno("mkstemp for the guest image");
    path_ = tmpl;
    const size_t n = size_t(snap_guest_elf_end - snap_guest_elf_start);
    size_t done = 0;
    while (done < n) {
      const ssize_t w = write(fd, snap_guest_elf_start + done, n - done);
      if (w <= 0) {
        close(fd);
        throw_errno("writing the guest image to " + path_);
      }
      done += size_t(w);
    }
    close(fd);
  }
  ~GuestElfFile() { unlink(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace

QemuGuest::QemuGuest(Region& region, const QemuGuestOptions& o) : region_(region) {
  if (region.fd() < 0) throw std::logic_error("the qemu workload needs a shared region");
  if (region.bytes() % (2 << 20)) throw UsageError("--mem: the qemu workload needs a multiple of 2 MiB");
  if (region.bytes() > guest::kMaxDataBytes) throw UsageError("--mem: the guest maps at most 60 GiB of data");
  if (o.accel != "kvm" && o.accel != "tcg" && o.accel != "auto") throw UsageError("--set qemu.accel: kvm, tcg or auto");
  GuestElfFile elf;
  QemuVmOptions v;
  v.binary = o.binary;
  v.mem_bytes = kLowRamBytes;
  v.smp = 1;
  v.accel = o.accel;
  v.dirty_ring_size = o.dirty_ring;
  v.kernel = elf.path();
  v.start_paused = true;
  if (!o.firmware.empty()) v.extra_args = {"-bios", o.firmware};  // a name QEMU finds in its data dir, or a path
  v.shared_ram = true;
  v.data_fd = region.fd();
  v.data_bytes = region.bytes();
  vm_ = std::make_unique<QemuVm>(v);

  // The guest's TSC frequency (its clock for pacing and latencies). Under KVM, QEMU's CPU object
  // has it (KVM's); under TCG that property is 0 and a mere label, and the guest's rdtsc reads the
  // host's TSC (QEMU's cpu_get_host_ticks), so it is the host's, measured.
  if (vm_->accel() == "tcg") {
    tsc_hz_ = measure_host_tsc_hz();
  } else {
    const auto cpus = vm_->execute("query-cpus-fast");
    if (!cpus.is_array() || cpus.empty()) throw std::runtime_error("QEMU lists no CPU");
    const auto hz = vm_->execute("qom-get", {{"path", cpus[0].value("qom-path", "")}, {"property", "tsc-frequency"}});
    tsc_hz_ = hz.is_number() ? hz.get<double>() : 0;
    if (!(tsc_hz_ > 0)) throw std::runtime_error("QEMU reports no TSC frequency for its vCPU");
  }

  guest::ControlSettings s;
  s.plans.push_back(plan_pattern(o.pattern, region.pages(), o.seed, 0, 1));
  s.data_bytes = region.bytes();
  s.rate_pages = o.rate_pages;
  s.tsc_hz = tsc_hz_;
  s.sample_seed = o.seed;
  s.vmm_ports = false;  // QEMU has no handler for the guest's sleep and idle ports
  std::memset(vm_->guest_ram() + guest::kControlGpa, 0, guest::control_bytes(1));
  guest::fill_control(header(), &block(0), s);
  vm_->cont();

  const uint64_t deadline = now_ns() + uint64_t(o.boot_timeout_s * 1e9);
  while (__atomic_load_n(&block(0).ready, __ATOMIC_ACQUIRE) == 0) {
    vm_->check_alive();
    if (std::string f = guest_failure(); !f.empty()) throw std::runtime_error(f);
    throw_if_run_stopped();
    if (now_ns() > deadline)
      throw std::runtime_error("the guest program did not reach its write loop within " +
                               std::to_string(int(o.boot_timeout_s)) + " s of QEMU starting it");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

QemuGuest::~QemuGuest() = default;

guest::ControlHeader& QemuGuest::header() const {
  return *reinterpret_cast<guest::ControlHeader*>(vm_->guest_ram() + guest::kControlGpa);
}
guest::VcpuBlock& QemuGuest::block(uint32_t i) const {
  return *reinterpret_cast<guest::VcpuBlock*>(vm_->guest_ram() + guest::vcpu_block_gpa(i));
}

void QemuGuest::set_phase(int phase) {
  uint32_t& c = header().control;
  const uint32_t old = __atomic_load_n(&c, __ATOMIC_RELAXED);
  __atomic_store_n(&c, ((old & ~guest::kPhaseMask) + guest::kGenerationStep) | (uint32_t(phase) & guest::kPhaseMask),
                   __ATOMIC_RELEASE);
}

void QemuGuest::pause() {
  if (paused_) return;
  vm_->stop();
  paused_ = true;
}

void QemuGuest::resume() {
  if (!paused_) return;
  __atomic_add_fetch(&header().control, guest::kGenerationStep, __ATOMIC_RELEASE);
  vm_->cont();
  paused_ = false;
}

uint64_t QemuGuest::writes(int phase) const { return __atomic_load_n(&block(0).writes[phase], __ATOMIC_RELAXED); }

Histogram QemuGuest::latency(int phase) const {
  const guest::Hist& h = block(0).hist[phase];
  Histogram out;
  out.merge_raw(h.counts, h.total, h.max, h.sum);
  return out;
}

std::string QemuGuest::guest_failure() const {
  const uint32_t code = __atomic_load_n(&block(0).panic, __ATOMIC_RELAXED);
  if (code == 0) return "";
  const char* what = code == guest::kPanicBadControl ? "bad control block"
                     : code == guest::kPanicBadVcpu  ? "bad vCPU number"
                     : code == guest::kPanicBadPattern ? "bad pattern plan"
                                                       : "unknown";
  return "the guest program panicked: " + std::string(what) + " (code " + std::to_string(code) + ")";
}

}  // namespace snap::qemu
