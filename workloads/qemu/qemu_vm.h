// One QEMU virtual machine driven over QMP: started with the fewest devices (-nodefaults), a QMP
// socket in a private temporary directory, and stopped (quit, then SIGKILL) and reaped on every exit.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "workloads/qemu/qemu_process.h"
#include "workloads/qemu/qmp.h"

namespace snap::qemu {

struct QemuVmOptions {
  std::string binary = kDefaultQemu;   // a name searched on PATH, or a path
  uint64_t mem_bytes = 64ull << 20;    // -m (rounded up to MiB)
  int smp = 1;                         // -smp
  std::string accel = "auto";          // kvm | tcg | auto (resolve_accel)
  uint32_t dirty_ring_size = 0;        // kvm: KVM dirty ring entries per vCPU (0: dirty bitmap)
  std::string kernel;                  // a multiboot/PVH ELF for -kernel; empty: firmware only (SeaBIOS idles)
  std::string append;                  // -append (the kernel command line)
  bool start_paused = false;           // -S: vCPUs wait for `cont`
  // Guest RAM in a memfd shared with snapbench (memory-backend-file on /proc/self/fd/3, share=on):
  // snapbench reads and writes it directly (control page, statistics, verification) while QEMU's
  // migration reads it the usual way. Its RAM block is then named kSharedRamBlock.
  bool shared_ram = false;
  // RAM below 4 GiB (max-ram-below-4g); the rest is mapped from guest-physical 4 GiB up. 0: QEMU's default.
  uint64_t low_ram_bytes = 0;
  // A data area from snapbench's own memory (a shared Region's memfd), plugged as a pc-dimm whose
  // backend maps that memfd: guest-physical 4 GiB when mem_bytes stays below 3.5 GiB (checked).
  // Its RAM block is kDataRamBlock. -1: none.
  int data_fd = -1;
  uint64_t data_bytes = 0;
  double startup_timeout_s = 30;       // QMP socket must accept within this
  std::vector<std::string> extra_args;
};

// The RAM block (and memory backend id) of guest RAM with QemuVmOptions::shared_ram.
constexpr const char* kSharedRamBlock = "snapbench-ram";

// The RAM block of QemuVmOptions::data_fd, and its guest-physical address.
constexpr const char* kDataRamBlock = "snapbench-data";
constexpr uint64_t kDataGpa = 1ull << 32;

// Can this machine run QEMU with the given accelerator (kvm, tcg, or auto: whichever
// resolve_accel picks)? Empty when yes, else the reason.
std::string qemu_unavailable_reason(const std::string& binary, const std::string& accel);

// "" when /dev/kvm opens read-write, else why not ("/dev/kvm: No such file or directory").
std::string kvm_unavailable_reason();

// The accelerator to run: kvm or tcg as asked; auto = kvm when /dev/kvm opens, else tcg.
std::string resolve_accel(const std::string& asked);

// The accelerator the QEMU tests use on this machine: $SNAPBENCH_QEMU_ACCEL if set, else auto.
std::string test_accel();

class QemuVm {
 public:
  // Starts QEMU and connects QMP. Throws std::runtime_error saying why (with QEMU's stderr line).
  explicit QemuVm(const QemuVmOptions& opts);
  ~QemuVm();
  QemuVm(const QemuVm&) = delete;
  QemuVm& operator=(const QemuVm&) = delete;

  // A QMP command; a QEMU that died or stopped answering is reported with its exit and stderr.
  nlohmann::json execute(const std::string& command, const nlohmann::json& args = nlohmann::json::object(),
                         double timeout_s = 10.0, int pass_fd = -1);
  void stop() { execute("stop"); }
  void cont() { execute("cont"); }
  // "running", "paused", "postmigrate", ...
  std::string status();
  // Ends QEMU: `quit` (bounded), then SIGKILL; reaps it. Idempotent.
  void shutdown();

  QmpClient& qmp() { return *qmp_; }
  // Guest RAM as QEMU's RAM block sees it (offset 0 = guest-physical 0); null without shared_ram.
  uint8_t* guest_ram() const { return ram_; }
  uint64_t guest_ram_bytes() const { return ram_bytes_; }
  QemuProcess& process() { return *process_; }
  const std::vector<std::string>& command_line() const { return argv_; }
  // The accelerator QEMU runs with: kvm or tcg (auto resolved).
  const std::string& accel() const { return accel_; }
  // Throws runtime_error with QEMU's exit and last stderr line if it is no longer running.
  void check_alive();

 private:
  std::string dir_;  // private temporary directory for the QMP socket
  std::vector<std::string> argv_;
  std::string accel_;
  std::unique_ptr<QemuProcess> process_;
  std::unique_ptr<QmpClient> qmp_;
  int ram_fd_ = -1;
  uint8_t* ram_ = nullptr;
  uint64_t ram_bytes_ = 0;
};

}  // namespace snap::qemu
