// QemuVm: argument list, start-up and shutdown of one QEMU virtual machine (see qemu_vm.h).
#include "workloads/qemu/qemu_vm.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace snap::qemu {

std::string kvm_unavailable_reason() {
  const int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) return std::string("/dev/kvm: ") + std::strerror(errno);
  close(fd);
  return "";
}

std::string resolve_accel(const std::string& asked) {
  if (asked != "auto") return asked;
  return kvm_unavailable_reason().empty() ? "kvm" : "tcg";
}

std::string test_accel() {
  const char* env = std::getenv("SNAPBENCH_QEMU_ACCEL");
  return resolve_accel(env && *env ? env : "auto");
}

std::string qemu_unavailable_reason(const std::string& binary, const std::string& accel) {
  QemuBinary b;
  std::string why;
  if (!find_qemu(binary, b, why)) return why + " (Debian package qemu-system-x86)";
  if (accel == "kvm")
    if (std::string k = kvm_unavailable_reason(); !k.empty()) return k + " (qemu.accel=kvm needs KVM; auto picks tcg)";
  return "";
}

QemuVm::QemuVm(const QemuVmOptions& o) {
  QemuBinary bin;
  std::string why;
  if (!find_qemu(o.binary, bin, why)) throw std::runtime_error(why);
  accel_ = resolve_accel(o.accel);
  if (accel_ != "kvm" && accel_ != "tcg") throw std::invalid_argument("QEMU accelerator '" + o.accel + "': kvm, tcg or auto");
  char tmpl[] = "/tmp/snapbench-qemu-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error(std::string("mkdtemp for the QMP socket: ") + std::strerror(errno));
  dir_ = tmpl;
  const std::string sock = dir_ + "/qmp.sock";
  std::string accel = accel_;
  if (accel_ == "kvm" && o.dirty_ring_size > 0) accel += ",dirty-ring-size=" + std::to_string(o.dirty_ring_size);
  const std::string mib = std::to_string((o.mem_bytes + (1 << 20) - 1) >> 20) + "M";
  std::string machine = "pc";
  std::vector<int> pass_fds;
  if (o.shared_ram) {
    ram_bytes_ = (o.mem_bytes + (1 << 20) - 1) >> 20 << 20;
    ram_fd_ = memfd_create("snapbench-guest-ram", MFD_CLOEXEC);
    if (ram_fd_ < 0 || ftruncate(ram_fd_, off_t(ram_bytes_)) != 0) {
      shutdown();
      throw std::runtime_error(std::string("memfd for the guest RAM: ") + std::strerror(errno));
    }
    void* p = mmap(nullptr, ram_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, ram_fd_, 0);
    if (p == MAP_FAILED) {
      shutdown();
      throw std::runtime_error(std::string("mmap of the guest RAM: ") + std::strerror(errno));
    }
    ram_ = static_cast<uint8_t*>(p);
    pass_fds.push_back(ram_fd_);
    machine += std::string(",memory-backend=") + kSharedRamBlock;
  }
  if (o.low_ram_bytes) machine += ",max-ram-below-4g=" + std::to_string(o.low_ram_bytes);
  std::string memory = mib;
  if (o.data_fd >= 0) {
    if (o.data_bytes % (2 << 20)) {
      shutdown();
      throw std::runtime_error("the qemu data area must be a multiple of 2 MiB (got " + std::to_string(o.data_bytes) + " bytes)");
    }
    memory += ",slots=1,maxmem=" + std::to_string(((o.mem_bytes + (1 << 20) - 1) >> 20) + (o.data_bytes >> 20)) + "M";
    pass_fds.resize(1, -1);  // fd 3 stays the shared low RAM (or nothing)
    pass_fds.push_back(o.data_fd);
  }
  argv_ = {"-nodefaults", "-no-user-config", "-display", "none", "-machine", machine, "-accel", accel,
           "-m", memory, "-smp", std::to_string(o.smp), "-qmp", "unix:" + sock + ",server=on,wait=off"};
  if (o.data_fd >= 0)
    argv_.insert(argv_.end(), {"-object", std::string("memory-backend-file,id=") + kDataRamBlock + ",size=" +
                                              std::to_string(o.data_bytes >> 20) + "M,mem-path=/proc/self/fd/4,share=on",
                               "-device", std::string("pc-dimm,id=snapbench-dimm,memdev=") + kDataRamBlock});
  if (o.shared_ram)
    argv_.insert(argv_.end(), {"-object", std::string("memory-backend-file,id=") + kSharedRamBlock + ",size=" + mib +
                                              ",mem-path=/proc/self/fd/3,share=on"});
  if (!o.kernel.empty()) {
    argv_.insert(argv_.end(), {"-kernel", o.kernel});
    if (!o.append.empty()) argv_.insert(argv_.end(), {"-append", o.append});
  }
  if (o.start_paused) argv_.push_back("-S");
  argv_.insert(argv_.end(), o.extra_args.begin(), o.extra_args.end());
  try {
    process_ = std::make_unique<QemuProcess>(bin.path, argv_, pass_fds);
    qmp_ = std::make_unique<QmpClient>(sock, o.startup_timeout_s, [this] { check_alive(); });
    if (o.data_fd >= 0) {
      // The guest program expects its data at 4 GiB: refuse a machine that put the DIMM elsewhere.
      const auto addr = qmp_->execute("qom-get", {{"path", "/machine/peripheral/snapbench-dimm"}, {"property", "addr"}});
      if (addr != kDataGpa) throw std::runtime_error("QEMU placed the data DIMM at " + addr.dump() + ", not 4 GiB");
    }
  } catch (const std::exception& e) {
    std::string msg = e.what();
    if (process_ && !process_->running()) msg = process_->failure_summary();
    shutdown();
    throw std::runtime_error("QEMU did not start: " + msg);
  }
  argv_.insert(argv_.begin(), bin.path);
}

QemuVm::~QemuVm() { shutdown(); }

void QemuVm::check_alive() {
  if (process_ && !process_->running()) throw std::runtime_error(process_->failure_summary());
}

nlohmann::json QemuVm::execute(const std::string& command, const nlohmann::json& args, double timeout_s,
                               int pass_fd) {
  check_alive();
  try {
    return qmp_->execute(command, args, timeout_s, pass_fd);
  } catch (const QmpError& e) {
    // A closed connection or a timeout usually means QEMU died or hangs: say which. A QEMU that is
    // exiting closes the socket a moment before it can be reaped.
    if (process_->wait_exit(1.0)) throw std::runtime_error(process_->failure_summary());
    throw std::runtime_error(e.what());
  }
}

std::string QemuVm::status() { return execute("query-status").value("status", ""); }

void QemuVm::shutdown() {
  if (process_ && process_->running() && qmp_) {
    try {
      qmp_->execute("quit", nlohmann::json::object(), 2.0);
    } catch (...) {
      // Not answering: SIGKILL below.
    }
    process_->wait_exit(2.0);
  }
  qmp_.reset();
  if (process_) process_->kill_and_reap();
  if (ram_) munmap(ram_, ram_bytes_);
  ram_ = nullptr;
  if (ram_fd_ >= 0) close(ram_fd_);
  ram_fd_ = -1;
  if (!dir_.empty()) {
    unlink((dir_ + "/qmp.sock").c_str());
    rmdir(dir_.c_str());
    dir_.clear();
  }
}

}  // namespace snap::qemu
