// The minimal VMM over /dev/kvm: memslots, guest loading, vCPU threads and their exits, pause/resume
// by kick (signal + immediate_exit), and the dirty log / dirty ring primitives.
#include "workloads/kvm/vm.h"

#include <elf.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "core/clock.h"
#include "core/error.h"
#include "core/futex.h"
#include "core/linux_compat.h"
#include "core/units.h"
#include "workloads/kvm/guest_abi.h"
#include "workloads/kvm/guest_control.h"

// The guest ELF, embedded by guest_image.cpp.
extern "C" const unsigned char snap_guest_elf_start[];
extern "C" const unsigned char snap_guest_elf_end[];

namespace snap::kvm {

namespace {

constexpr int kSystemSlot = 0, kDataSlot = 1;
// The GDT follows the page tables (PML4, PDPT, one PD per mapped GiB) in the VMM's table area.
constexpr uint64_t kGdtOffset = 8192 + (guest::kMappedBytes >> 30) * 4096;
static_assert(guest::kVmmTablesGpa + kGdtOffset + 4096 <= guest::kControlGpa);
constexpr uint64_t kParkTimeoutNs = 5000000000ull;
constexpr uint64_t kKickIntervalNs = 2000000;  // re-kick vCPUs not yet parked this often
constexpr uint64_t kBootTimeoutNs = 10000000000ull;
// The control word of the vCPU threads (host side), like the host writers' one.
constexpr uint32_t kPausedBit = 1, kStopBit = 2, kGenerationStep = 4;

int kick_signal() { return SIGRTMIN + 3; }

// An empty handler: the signal's only job is to make KVM_RUN (or a futex wait) return EINTR.
void on_kick(int) {}

void install_kick_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = on_kick;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return
    if (sigaction(kick_signal(), &sa, nullptr) != 0) throw_errno("sigaction for the vCPU kick signal");
  });
}

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd = o.fd;
      o.fd = -1;
    }
    return *this;
  }
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) close(fd);
    fd = -1;
  }
};

struct Mapping {
  void* addr = MAP_FAILED;
  size_t bytes = 0;
  Mapping() = default;
  Mapping(void* a, size_t b) : addr(a), bytes(b) {}
  Mapping(Mapping&& o) noexcept : addr(o.addr), bytes(o.bytes) { o.addr = MAP_FAILED; }
  Mapping& operator=(Mapping&& o) noexcept {
    if (this != &o) {
      reset();
      addr = o.addr;
      bytes = o.bytes;
      o.addr = MAP_FAILED;
    }
    return *this;
  }
  ~Mapping() { reset(); }
  void reset() {
    if (addr != MAP_FAILED) munmap(addr, bytes);
    addr = MAP_FAILED;
  }
};

int open_kvm() {
  const int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  return fd;
}

int check_extension(int fd, long cap) { return ioctl(fd, KVM_CHECK_EXTENSION, cap); }

std::string describe_exit(uint32_t reason) {
  switch (reason) {
    case KVM_EXIT_IO: return "io";
    case KVM_EXIT_HLT: return "hlt";
    case KVM_EXIT_MMIO: return "mmio";
    case KVM_EXIT_SHUTDOWN: return "shutdown";
    case KVM_EXIT_FAIL_ENTRY: return "fail_entry";
    case KVM_EXIT_INTERNAL_ERROR: return "internal_error";
    case KVM_EXIT_INTR: return "intr";
    case KVM_EXIT_DIRTY_RING_FULL: return "dirty_ring_full";
    case KVM_EXIT_MEMORY_FAULT: return "memory_fault";
    default: return "reason_" + std::to_string(reason);
  }
}

// The counters of one vCPU thread; names match the `exits_*` notes.
enum ExitKind : int {
  kExitSleep,      // the guest asked to sleep (paced writes)
  kExitIdle,       // the idle guest parked (rate 0)
  kExitHlt,        // hlt (the guest does not use it)
  kExitReady,      // the guest reached its write loop
  kExitIntr,       // KVM_RUN returned EINTR: a kick (pause, stop) or a stray signal
  kExitRingFull,   // KVM_EXIT_DIRTY_RING_FULL
  kExitOther,      // anything else (a failure)
  kExitKinds
};
const char* const kExitNames[kExitKinds] = {"io_sleep", "io_idle", "hlt", "io_ready", "intr", "dirty_ring_full", "other"};

}  // namespace

std::string kvm_unavailable_reason() {
  Fd kvm(open_kvm());
  if (kvm.fd < 0) return std::string("cannot open /dev/kvm: ") + std::strerror(errno);
  const int version = ioctl(kvm.fd, KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION) return "/dev/kvm has API version " + std::to_string(version) + ", expected 12";
  if (check_extension(kvm.fd, KVM_CAP_USER_MEMORY) <= 0) return "KVM lacks KVM_CAP_USER_MEMORY";
  if (check_extension(kvm.fd, KVM_CAP_IMMEDIATE_EXIT) <= 0) return "KVM lacks KVM_CAP_IMMEDIATE_EXIT (needed to kick vCPUs)";
  if (check_extension(kvm.fd, KVM_CAP_EXT_CPUID) <= 0) return "KVM lacks KVM_CAP_EXT_CPUID";
  if (check_extension(kvm.fd, KVM_CAP_GET_TSC_KHZ) <= 0) return "KVM lacks KVM_CAP_GET_TSC_KHZ";
  return "";
}

uint32_t kvm_dirty_ring_max_entries() {
  Fd kvm(open_kvm());
  if (kvm.fd < 0) return 0;
  int bytes = check_extension(kvm.fd, KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
  if (bytes <= 0) bytes = check_extension(kvm.fd, KVM_CAP_DIRTY_LOG_RING);
  return bytes > 0 ? uint32_t(bytes / sizeof(kvm_dirty_gfn)) : 0;
}

bool kvm_manual_dirty_log_available() {
  Fd kvm(open_kvm());
  if (kvm.fd < 0) return false;
  const int caps = check_extension(kvm.fd, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
  return caps > 0 && (caps & KVM_DIRTY_LOG_INITIALLY_SET);
}

struct Vm::Impl {
  struct alignas(64) Vcpu {
    int index = 0;
    Fd fd;
    Mapping run_map;
    kvm_run* run = nullptr;
    Mapping ring_map;
    kvm_dirty_gfn* ring = nullptr;
    uint32_t ring_fetch = 0;  // next ring entry to harvest (under ring_mutex)
    std::thread thread;
    uint64_t exits[kExitKinds] = {};  // owned by the thread until joined; read when parked
  };

  VmOptions opts;
  Fd kvm, vm;
  Mapping system;  // guest code, stacks, page tables, control block (slot 0 at GPA 0)
  size_t system_bytes = 0;
  uint64_t entry32 = 0;  // the ELF's (multiboot) entry
  guest::ControlHeader* header = nullptr;
  std::vector<std::unique_ptr<Vcpu>> vcpus;
  double tsc_hz = 0;
  bool manual_dirty_log = false;
  uint32_t ring_entries = 0;
  bool dirty_logging = false;

  alignas(64) std::atomic<uint32_t> control{0};
  alignas(64) std::atomic<uint32_t> parked{0};
  std::atomic<uint32_t> ready{0};
  std::atomic<uint32_t> dead{0};  // vCPU threads that ended on a failure (they count as parked)
  std::mutex control_mutex;
  bool stopped = false;
  bool started = false;

  mutable std::mutex failure_mutex;
  std::string failure;

  std::mutex ring_mutex;
  std::vector<uint64_t> ring_pending;  // bitmap of data pages harvested, not yet handed out
  std::atomic<uint64_t> ring_full_exits{0}, ring_harvested{0};

  guest::VcpuBlock& block(uint32_t i) const {
    return *reinterpret_cast<guest::VcpuBlock*>(static_cast<uint8_t*>(system.addr) + guest::vcpu_block_gpa(i));
  }

  void fail(int vcpu, const std::string& why) {
    std::lock_guard lock(failure_mutex);
    if (failure.empty()) failure = "vCPU " + std::to_string(vcpu) + ": " + why;
  }

  void publish_control(uint32_t flags) {
    const uint32_t generation = (control.load() & ~(kPausedBit | kStopBit)) + kGenerationStep;
    control.store(generation | flags);
    futex_wake_every(control);
  }

  // Makes every vCPU leave KVM_RUN soon: immediate_exit covers a thread about to enter KVM_RUN (it
  // clears the flag before re-checking the control word), the signal one already inside.
  void kick_all() {
    for (auto& v : vcpus) {
      __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
      if (v->thread.joinable()) pthread_kill(v->thread.native_handle(), kick_signal());
    }
  }

  void load_guest();
  void create_vcpu(int index, const std::vector<uint8_t>& cpuid_buf);
  void write_control();
  void build_tables();
  void run_vcpu(Vcpu& v);
  bool handle_exit(Vcpu& v);
  static std::string where(Vcpu& v);
  void park(Vcpu& v);
  void harvest_locked();
  void stop_locked();
  void pause_locked();
};

// ---- Set-up ---------------------------------------------------------------------------------------

void Vm::Impl::load_guest() {
  const unsigned char* elf = snap_guest_elf_start;
  const size_t elf_bytes = size_t(snap_guest_elf_end - snap_guest_elf_start);
  Elf32_Ehdr eh;
  if (elf_bytes < sizeof(eh)) throw std::runtime_error("kvm: the embedded guest image is empty");
  std::memcpy(&eh, elf, sizeof(eh));
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS32 || eh.e_machine != EM_386)
    throw std::runtime_error("kvm: the embedded guest is not an ELF32 i386 image");
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Elf32_Phdr ph;
    const size_t off = eh.e_phoff + size_t(i) * eh.e_phentsize;
    if (off + sizeof(ph) > elf_bytes) throw std::runtime_error("kvm: truncated guest program headers");
    std::memcpy(&ph, elf + off, sizeof(ph));
    if (ph.p_type != PT_LOAD) continue;
    if (ph.p_paddr < guest::kImageGpa || uint64_t(ph.p_paddr) + ph.p_memsz > guest::kImageLimitGpa ||
        ph.p_offset + ph.p_filesz > elf_bytes)
      throw std::runtime_error("kvm: a guest segment lies outside its space");
    std::memcpy(static_cast<uint8_t*>(system.addr) + ph.p_paddr, elf + ph.p_offset, ph.p_filesz);
    // The rest (bss) is already zero: the system memory is a fresh anonymous mapping.
  }
  entry32 = eh.e_entry;
  // The 64-bit entry must be where the ABI says (guest.ld): its first instruction is a nop.
  if (static_cast<uint8_t*>(system.addr)[guest::kEntry64Gpa] != 0x90)
    throw std::runtime_error("kvm: the guest's 64-bit entry is not at its ABI address");
}

void Vm::Impl::build_tables() {
  // PML4 -> PDPT -> one PD per GiB of 2 MiB pages over [0, kMappedBytes), then a flat GDT.
  uint8_t* base = static_cast<uint8_t*>(system.addr) + guest::kVmmTablesGpa;
  auto* pml4 = reinterpret_cast<uint64_t*>(base);
  auto* pdpt = reinterpret_cast<uint64_t*>(base + 4096);
  const uint64_t gib = guest::kMappedBytes >> 30;
  pml4[0] = (guest::kVmmTablesGpa + 4096) | 7;  // present, writable, user (the loop runs at CPL 3)
  for (uint64_t g = 0; g < gib; ++g) {
    const uint64_t pd_gpa = guest::kVmmTablesGpa + 8192 + g * 4096;
    pdpt[g] = pd_gpa | 7;
    auto* pd = reinterpret_cast<uint64_t*>(base + 8192 + g * 4096);
    for (uint64_t e = 0; e < 512; ++e) pd[e] = ((g << 30) | (e << 21)) | 0x87;  // present, writable, user, 2 MiB
  }
  auto* gdt = reinterpret_cast<uint64_t*>(base + kGdtOffset);
  gdt[0] = 0;
  gdt[1] = 0x00af9a000000ffffull;  // 64-bit code
  gdt[2] = 0x00cf92000000ffffull;  // data
  gdt[3] = 0x00cff2000000ffffull;  // user data
  gdt[4] = 0x00affa000000ffffull;  // user 64-bit code
}

void Vm::Impl::write_control() {
  guest::ControlSettings settings{opts.plans, opts.data_bytes, opts.rate_pages, tsc_hz, opts.sample_seed};
  guest::fill_control(*header, &block(0), settings);
}

void Vm::Impl::create_vcpu(int index, const std::vector<uint8_t>& cpuid_buf) {
  auto v = std::make_unique<Vcpu>();
  v->index = index;
  v->fd = Fd(ioctl(vm.fd, KVM_CREATE_VCPU, index));
  if (v->fd.fd < 0) throw_errno("kvm: KVM_CREATE_VCPU " + std::to_string(index));
  const int run_bytes = ioctl(kvm.fd, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (run_bytes <= 0) throw_errno("kvm: KVM_GET_VCPU_MMAP_SIZE");
  void* run = mmap(nullptr, size_t(run_bytes), PROT_READ | PROT_WRITE, MAP_SHARED, v->fd.fd, 0);
  if (run == MAP_FAILED) throw_errno("kvm: mmap of kvm_run");
  v->run_map = Mapping(run, size_t(run_bytes));
  v->run = static_cast<kvm_run*>(run);
  if (ring_entries) {
    const size_t bytes = size_t(ring_entries) * sizeof(kvm_dirty_gfn);
    void* ring = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd.fd,
                      off_t(KVM_DIRTY_LOG_PAGE_OFFSET) * getpagesize());
    if (ring == MAP_FAILED) throw_errno("kvm: mmap of the dirty ring");
    v->ring_map = Mapping(ring, bytes);
    v->ring = static_cast<kvm_dirty_gfn*>(ring);
  }
  if (ioctl(v->fd.fd, SNAP_KVM_SET_CPUID2, cpuid_buf.data()) != 0) throw_errno("kvm: KVM_SET_CPUID2");
  if (index == 0) {
    const int khz = ioctl(v->fd.fd, KVM_GET_TSC_KHZ, 0);
    if (khz <= 0) throw_errno("kvm: KVM_GET_TSC_KHZ");
    tsc_hz = double(khz) * 1e3;
  }

  kvm_sregs sregs;
  if (ioctl(v->fd.fd, KVM_GET_SREGS, &sregs) != 0) throw_errno("kvm: KVM_GET_SREGS");
  kvm_segment code{};
  code.limit = 0xffffffff;
  code.selector = 0x08;
  code.type = 0xb;  // execute/read, accessed
  code.present = 1;
  code.s = 1;
  code.g = 1;
  kvm_segment data = code;
  data.selector = 0x10;
  data.type = 0x3;  // read/write, accessed
  data.db = 1;
  kvm_regs regs{};
  regs.rax = guest::kVmmMagic;
  regs.rsi = uint64_t(index);
  if (opts.boot32) {
    // The state a multiboot loader leaves: flat 32-bit protected mode, paging off; the guest builds
    // its page tables and enters long mode itself (QEMU's -kernel path).
    code.db = 1;
    sregs.cr0 = 0x11;  // PE | ET
    sregs.cr4 = 0;
    sregs.efer = 0;
    regs.rip = entry32;
    regs.rflags = 0x2;
  } else {
    // Long mode at the guest's 64-bit entry, on the identity page tables build_tables() wrote.
    code.l = 1;
    sregs.gdt.base = guest::kVmmTablesGpa + kGdtOffset;
    sregs.gdt.limit = 5 * 8 - 1;
    sregs.cr0 = 0x80000033;  // PG | NE | ET | MP | PE
    sregs.cr3 = guest::kVmmTablesGpa;
    sregs.cr4 = 0x620;       // OSXMMEXCPT | OSFXSR | PAE
    sregs.efer = 0x500;      // LMA | LME
    regs.rip = guest::kEntry64Gpa;
    regs.rflags = 0x202;  // IF set: no interrupt source exists
  }
  sregs.cs = code;
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
  if (ioctl(v->fd.fd, KVM_SET_SREGS, &sregs) != 0) throw_errno("kvm: KVM_SET_SREGS");
  if (ioctl(v->fd.fd, KVM_SET_REGS, &regs) != 0) throw_errno("kvm: KVM_SET_REGS");
  // XCR0 with the SSE state enabled (x87 | SSE), as a kernel would set it with XSETBV.
  if (check_extension(kvm.fd, KVM_CAP_XCRS) > 0) {
    kvm_xcrs xcrs{};
    xcrs.nr_xcrs = 1;
    xcrs.xcrs[0].xcr = 0;
    xcrs.xcrs[0].value = 3;
    if (ioctl(v->fd.fd, KVM_SET_XCRS, &xcrs) != 0) throw_errno("kvm: KVM_SET_XCRS");
  }
  vcpus.push_back(std::move(v));
}

// ---- The vCPU threads -----------------------------------------------------------------------------

void Vm::Impl::park(Vcpu& v) {
  (void)v;
  parked.fetch_add(1);
  futex_wake_every(parked);
  uint32_t c;
  while (((c = control.load()) & kPausedBit) && !(c & kStopBit)) futex_wait_until(control, c, 0);
  parked.fetch_sub(1);
}

// The vCPU's instruction pointer and mode, for failure messages.
std::string Vm::Impl::where(Vcpu& v) {
  kvm_regs regs{};
  kvm_sregs sregs{};
  if (ioctl(v.fd.fd, KVM_GET_REGS, &regs) != 0 || ioctl(v.fd.fd, KVM_GET_SREGS, &sregs) != 0) return "?";
  char text[128];
  std::snprintf(text, sizeof text, "rip 0x%llx cr0 0x%llx efer 0x%llx", (unsigned long long)regs.rip,
                (unsigned long long)sregs.cr0, (unsigned long long)sregs.efer);
  return text;
}

// Returns false when the vCPU cannot go on (a failure, recorded).
bool Vm::Impl::handle_exit(Vcpu& v) {
  kvm_run& run = *v.run;
  switch (run.exit_reason) {
    case KVM_EXIT_IO:
      if (run.io.direction == KVM_EXIT_IO_OUT && run.io.size == 4) {
        if (run.io.port == guest::kPortSleep) {
          ++v.exits[kExitSleep];
          const uint64_t ticks = __atomic_load_n(&block(uint32_t(v.index)).sleep_ticks, __ATOMIC_RELAXED);
          const uint64_t ns = uint64_t(double(ticks) * 1e9 / tsc_hz);
          const uint64_t deadline = now_ns() + std::min<uint64_t>(ns, 100000000);
          // A pause, stop or phase change ends the sleep at once (the guest then re-checks).
          const uint32_t c = control.load();
          while (!(c & (kPausedBit | kStopBit)) && control.load() == c && now_ns() < deadline)
            futex_wait_until(control, c, deadline);
          return true;
        }
        if (run.io.port == guest::kPortIdle) {
          ++v.exits[kExitIdle];
          // The idle guest: sleep until the control word changes (pause, stop, phase), then idle
          // again. Not when it already says pause or stop: that change may be the one to wait for.
          const uint32_t c = control.load();
          if (!(c & (kPausedBit | kStopBit))) futex_wait_until(control, c, 0);
          return true;
        }
        if (run.io.port == guest::kPortReady) {
          ++v.exits[kExitReady];
          ready.fetch_add(1);
          futex_wake_every(ready);
          return true;
        }
        if (run.io.port == guest::kPortPanic) {
          uint32_t code;
          std::memcpy(&code, reinterpret_cast<uint8_t*>(&run) + run.io.data_offset, 4);
          fail(v.index, "the guest panicked (code " + std::to_string(code) + ")");
          return false;
        }
      }
      ++v.exits[kExitOther];
      fail(v.index, "unexpected port I/O at 0x" + std::to_string(run.io.port));
      return false;
    case KVM_EXIT_HLT: {
      ++v.exits[kExitHlt];
      // As for the idle port: wait for a change of the control word unless it already stops us.
      const uint32_t c = control.load();
      if (!(c & (kPausedBit | kStopBit))) futex_wait_until(control, c, 0);
      return true;
    }
    case KVM_EXIT_DIRTY_RING_FULL: {
      ++v.exits[kExitRingFull];
      ring_full_exits.fetch_add(1, std::memory_order_relaxed);
      std::lock_guard lock(ring_mutex);
      harvest_locked();
      return true;
    }
    case KVM_EXIT_INTR:
      ++v.exits[kExitIntr];
      return true;
    case KVM_EXIT_MEMORY_FAULT: {
      ++v.exits[kExitOther];
      kvm_memory_fault_compat mf;
      std::memcpy(&mf, reinterpret_cast<uint8_t*>(&run) + offsetof(kvm_run, mmio), sizeof(mf));
      fail(v.index, "KVM_EXIT_MEMORY_FAULT at guest address " + std::to_string(mf.gpa) +
                        " (the host page is not writable for KVM: is it mprotect()ed?)");
      return false;
    }
    case KVM_EXIT_FAIL_ENTRY:
      ++v.exits[kExitOther];
      fail(v.index, "KVM_EXIT_FAIL_ENTRY, hardware reason " +
                        std::to_string(run.fail_entry.hardware_entry_failure_reason));
      return false;
    case KVM_EXIT_INTERNAL_ERROR:
      ++v.exits[kExitOther];
    {
      std::string data;
      for (uint32_t i = 0; i < run.internal.ndata && i < 16; ++i) {
        char word[24];
        std::snprintf(word, sizeof word, " %llx", (unsigned long long)run.internal.data[i]);
        data += word;
      }
      fail(v.index, "KVM_EXIT_INTERNAL_ERROR, suberror " + std::to_string(run.internal.suberror) + " at " + where(v) +
                        (data.empty() ? "" : ", data" + data));
    }
      return false;
    default:
      ++v.exits[kExitOther];
      fail(v.index, "unexpected exit: " + describe_exit(run.exit_reason) + " at " + where(v));
      return false;
  }
}

void Vm::Impl::run_vcpu(Vcpu& v) {
  const std::string name = "snap-vcpu-" + std::to_string(v.index);
  pthread_setname_np(pthread_self(), name.c_str());
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);  // paced sleeps end on time
  for (;;) {
    // No lost wake-up: clear immediate_exit, then look at the control word. A pause published after
    // this look also sets immediate_exit (after publishing), so the KVM_RUN below returns at once.
    __atomic_store_n(&v.run->immediate_exit, 0, __ATOMIC_SEQ_CST);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const uint32_t c = control.load();
    if (c & kStopBit) return;
    if (c & kPausedBit) {
      park(v);
      continue;
    }
    if (ioctl(v.fd.fd, KVM_RUN, 0) != 0) {
      if (errno == EINTR || errno == EAGAIN) {
        ++v.exits[kExitIntr];
        continue;
      }
      ++v.exits[kExitOther];
      const int err = errno;
      std::string why = std::string("KVM_RUN failed: ") + std::strerror(err);
      if (err == EFAULT)
        why += " (KVM could not map a guest page for writing: a protection its fault path cannot resolve)";
      fail(v.index, why);
      break;
    }
    if (!handle_exit(v)) break;
  }
  // A failed vCPU counts as parked for good, so pause() and stop() still complete.
  dead.fetch_add(1);
  parked.fetch_add(1);
  futex_wake_every(parked);
  futex_wake_every(ready);
}

void Vm::Impl::pause_locked() {
  if (stopped || (control.load() & kPausedBit)) return;
  publish_control(kPausedBit);
  const uint32_t want = uint32_t(vcpus.size());
  const uint64_t start = now_ns();
  for (;;) {
    kick_all();
    const uint64_t now = now_ns();
    const uint32_t p = parked.load();
    if (p >= want) break;
    if (now - start >= kParkTimeoutNs) {
      publish_control(0);
      throw std::runtime_error("kvm: vCPUs did not park within 5 s");
    }
    futex_wait_until(parked, p, std::min(now + kKickIntervalNs, start + kParkTimeoutNs));
  }
  if (dead.load() > 0) {
    std::string why;
    {
      std::lock_guard lock(failure_mutex);
      why = failure;
    }
    publish_control(0);
    throw std::runtime_error("kvm: " + why);
  }
}

void Vm::Impl::stop_locked() {
  if (stopped) return;
  publish_control(kStopBit);
  kick_all();
  for (auto& v : vcpus)
    if (v->thread.joinable()) v->thread.join();
  stopped = true;
}

// ---- Dirty ring ------------------------------------------------------------------------------------

void Vm::Impl::harvest_locked() {
  uint64_t harvested = 0;
  const size_t pages = opts.data_bytes / guest::kPageBytes;
  for (auto& v : vcpus) {
    if (!v->ring) continue;
    for (;;) {
      kvm_dirty_gfn& e = v->ring[v->ring_fetch % ring_entries];
      const uint32_t flags = __atomic_load_n(&e.flags, __ATOMIC_ACQUIRE);
      if (!(flags & KVM_DIRTY_GFN_F_DIRTY)) break;
      if ((e.slot & 0xffff) == uint32_t(kDataSlot) && e.offset < pages) ring_pending[e.offset / 64] |= uint64_t(1) << (e.offset % 64);
      __atomic_store_n(&e.flags, uint32_t(KVM_DIRTY_GFN_F_RESET), __ATOMIC_RELEASE);
      ++v->ring_fetch;
      ++harvested;
    }
  }
  if (harvested) {
    ring_harvested.fetch_add(harvested, std::memory_order_relaxed);
    if (ioctl(vm.fd, KVM_RESET_DIRTY_RINGS, 0) < 0) throw_errno("kvm: KVM_RESET_DIRTY_RINGS");
  }
}

// ---- Vm ----------------------------------------------------------------------------------------------

Vm::Vm(const VmOptions& opts) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.opts = opts;
  if (opts.plans.empty() || opts.plans.size() > guest::kMaxVcpus)
    throw UsageError("--writers: the kvm workload runs 1 to " + std::to_string(guest::kMaxVcpus) + " vCPUs");
  if (opts.data_bytes == 0 || opts.data_bytes % guest::kPageBytes != 0 || opts.data_bytes > guest::kMaxDataBytes)
    throw UsageError("--mem: the kvm workload maps at most " + std::to_string(guest::kMaxDataBytes >> 30) +
                     " GiB of guest memory");
  if (std::string why = kvm_unavailable_reason(); !why.empty()) throw std::runtime_error(why);
  install_kick_handler();

  m.kvm = Fd(open_kvm());
  if (m.kvm.fd < 0) throw_errno("open /dev/kvm");
  m.vm = Fd(ioctl(m.kvm.fd, KVM_CREATE_VM, 0));
  if (m.vm.fd < 0) throw_errno("kvm: KVM_CREATE_VM");
  // Intel VMX needs a TSS address below 4 GiB outside guest memory (kvmtool and QEMU use this one).
  if (ioctl(m.vm.fd, KVM_SET_TSS_ADDR, 0xfffbd000ul) != 0) throw_errno("kvm: KVM_SET_TSS_ADDR");

  // Manual dirty-log protection with initially-all-set (QEMU's way), when offered: enabling
  // logging then costs nothing up front, and the tracker clears (re-protects) in chunks.
  // Not with a dirty ring: there the ring is the log, and initially-set would leave every page
  // unprotected, so no write would ever be logged (QEMU enables one or the other too).
  const int manual = opts.dirty_ring_entries ? 0 : check_extension(m.vm.fd, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
  if (manual > 0) {
    kvm_enable_cap cap{};
    cap.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
    cap.args[0] = uint64_t(manual) & (KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET);
    if (ioctl(m.vm.fd, KVM_ENABLE_CAP, &cap) != 0) throw_errno("kvm: enabling KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");
    m.manual_dirty_log = true;
  }
  if (opts.dirty_ring_entries) {
    // Before any vCPU exists. The acquire/release flavour is what non-x86 needs; x86 accepts both.
    const uint32_t entries = opts.dirty_ring_entries;
    if (entries & (entries - 1)) throw UsageError("kvm-dirty-ring.ring_entries: must be a power of two");
    const uint64_t bytes = uint64_t(entries) * sizeof(kvm_dirty_gfn);
    kvm_enable_cap cap{};
    cap.cap = check_extension(m.vm.fd, KVM_CAP_DIRTY_LOG_RING_ACQ_REL) > 0 ? KVM_CAP_DIRTY_LOG_RING_ACQ_REL
                                                                          : KVM_CAP_DIRTY_LOG_RING;
    const int max_bytes = check_extension(m.vm.fd, cap.cap);
    if (max_bytes <= 0) throw std::runtime_error("kvm: KVM offers no dirty ring");
    if (bytes > uint64_t(max_bytes))
      throw UsageError("kvm-dirty-ring.ring_entries: at most " + std::to_string(max_bytes / sizeof(kvm_dirty_gfn)) +
                       " entries here");
    cap.args[0] = bytes;
    if (ioctl(m.vm.fd, KVM_ENABLE_CAP, &cap) != 0) throw_errno("kvm: enabling the dirty ring");
    m.ring_entries = entries;
    m.ring_pending.assign((opts.data_bytes / guest::kPageBytes + 63) / 64, 0);
  }

  // System memory: the guest image, its stacks and page tables, the control block.
  const uint32_t n = uint32_t(opts.plans.size());
  m.system_bytes = (guest::kControlGpa + guest::control_bytes(n) + (2u << 20) - 1) & ~uint64_t((2u << 20) - 1);
  void* sys = mmap(nullptr, m.system_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (sys == MAP_FAILED) throw_errno("kvm: mmap of the guest's system memory");
  m.system = Mapping(sys, m.system_bytes);
  m.header = reinterpret_cast<guest::ControlHeader*>(static_cast<uint8_t*>(sys) + guest::kControlGpa);
  m.load_guest();
  m.build_tables();

  kvm_userspace_memory_region slot{};
  slot.slot = kSystemSlot;
  slot.guest_phys_addr = 0;
  slot.memory_size = m.system_bytes;
  slot.userspace_addr = reinterpret_cast<uint64_t>(sys);
  if (ioctl(m.vm.fd, KVM_SET_USER_MEMORY_REGION, &slot) != 0) throw_errno("kvm: system memslot");
  slot.slot = kDataSlot;
  slot.guest_phys_addr = guest::kDataGpa;
  slot.memory_size = opts.data_bytes;
  slot.userspace_addr = reinterpret_cast<uint64_t>(opts.data);
  if (ioctl(m.vm.fd, KVM_SET_USER_MEMORY_REGION, &slot) != 0) throw_errno("kvm: data memslot (the region)");

  // The guest's CPUID: what KVM supports (long mode, SSE, TSC).
  std::vector<uint8_t> cpuid_buf;
  for (uint32_t nent = 64;; nent *= 2) {
    cpuid_buf.assign(sizeof(kvm_cpuid2_head) + nent * sizeof(kvm_cpuid_entry2), 0);
    auto* c = reinterpret_cast<kvm_cpuid2_head*>(cpuid_buf.data());
    c->nent = nent;
    if (ioctl(m.kvm.fd, SNAP_KVM_GET_SUPPORTED_CPUID, c) == 0) break;
    if (errno != E2BIG || nent >= 4096) throw_errno("kvm: KVM_GET_SUPPORTED_CPUID");
  }
  for (uint32_t i = 0; i < n; ++i) m.create_vcpu(int(i), cpuid_buf);
  m.write_control();

  try {
    for (auto& v : m.vcpus) v->thread = std::thread([&m, vp = v.get()] { m.run_vcpu(*vp); });
    m.started = true;
    // Wait until every vCPU runs its write loop, so boot time is not warm-up time.
    const uint64_t deadline = now_ns() + kBootTimeoutNs;
    for (uint32_t r; (r = m.ready.load()) < n && m.dead.load() == 0;) {
      if (now_ns() >= deadline) throw std::runtime_error("kvm: the guest did not start within 10 s");
      futex_wait_until(m.ready, r, deadline);
    }
    if (m.dead.load() > 0) throw std::runtime_error("kvm: the guest failed to start: " + failure());
  } catch (...) {
    std::lock_guard lock(m.control_mutex);
    m.stop_locked();
    throw;
  }
}

Vm::~Vm() { stop(); }

int Vm::vcpus() const { return int(impl_->vcpus.size()); }

void Vm::pause() {
  std::lock_guard lock(impl_->control_mutex);
  impl_->pause_locked();
}

void Vm::resume() {
  std::lock_guard lock(impl_->control_mutex);
  if (impl_->stopped) return;
  // The guest sees a new generation: its pacing forgives the time parked.
  __atomic_add_fetch(&impl_->header->control, guest::kGenerationStep, __ATOMIC_RELAXED);
  impl_->publish_control(0);
}

bool Vm::paused() const { return impl_->control.load() & kPausedBit; }

void Vm::set_phase(int phase) {
  std::lock_guard lock(impl_->control_mutex);
  uint32_t& c = impl_->header->control;
  const uint32_t old = __atomic_load_n(&c, __ATOMIC_RELAXED);
  __atomic_store_n(&c, ((old & ~guest::kPhaseMask) + guest::kGenerationStep) | (uint32_t(phase) & guest::kPhaseMask),
                   __ATOMIC_RELAXED);
  // Sleeping vCPUs wake and re-enter, so the guest takes the phase up now.
  if (!impl_->stopped) impl_->publish_control(impl_->control.load() & (kPausedBit | kStopBit));
}

void Vm::stop() {
  std::lock_guard lock(impl_->control_mutex);
  impl_->stop_locked();
}

std::string Vm::failure() const {
  std::lock_guard lock(impl_->failure_mutex);
  return impl_->failure;
}

uint64_t Vm::writes(int phase) const {
  uint64_t sum = 0;
  for (uint32_t i = 0; i < impl_->vcpus.size(); ++i)
    sum += __atomic_load_n(&impl_->block(i).writes[phase], __ATOMIC_RELAXED);
  return sum;
}

uint64_t Vm::total_writes() const {
  uint64_t sum = 0;
  for (uint32_t i = 0; i < impl_->vcpus.size(); ++i) sum += __atomic_load_n(&impl_->block(i).count, __ATOMIC_RELAXED);
  return sum;
}

void Vm::latency(int phase, std::vector<uint64_t>& counts, uint64_t& total, uint64_t& max, uint64_t& sum) const {
  counts.assign(HistogramLayout::kBuckets, 0);
  total = max = sum = 0;
  for (uint32_t i = 0; i < impl_->vcpus.size(); ++i) {
    const guest::Hist& h = impl_->block(i).hist[phase];
    for (int b = 0; b < HistogramLayout::kBuckets; ++b) counts[size_t(b)] += h.counts[b];
    total += h.total;
    sum += h.sum;
    max = std::max(max, h.max);
  }
}

std::map<std::string, uint64_t> Vm::exit_counts() const {
  std::map<std::string, uint64_t> out;
  for (const auto& v : impl_->vcpus)
    for (int k = 0; k < kExitKinds; ++k) out[kExitNames[k]] += v->exits[k];
  return out;
}

double Vm::tsc_hz() const { return impl_->tsc_hz; }
int Vm::data_slot() const { return kDataSlot; }
size_t Vm::data_pages() const { return impl_->opts.data_bytes / guest::kPageBytes; }
int Vm::vm_fd() const { return impl_->vm.fd; }

void Vm::set_dirty_logging(bool on) {
  kvm_userspace_memory_region slot{};
  slot.slot = kDataSlot;
  slot.flags = on ? KVM_MEM_LOG_DIRTY_PAGES : 0;
  slot.guest_phys_addr = guest::kDataGpa;
  slot.memory_size = impl_->opts.data_bytes;
  slot.userspace_addr = reinterpret_cast<uint64_t>(impl_->opts.data);
  if (ioctl(impl_->vm.fd, KVM_SET_USER_MEMORY_REGION, &slot) != 0)
    throw_errno(on ? "kvm: enabling dirty logging on the data memslot" : "kvm: disabling dirty logging");
  impl_->dirty_logging = on;
}

void Vm::get_dirty_log(std::vector<uint64_t>& bitmap) {
  bitmap.assign((data_pages() + 63) / 64, 0);
  kvm_dirty_log log{};
  log.slot = kDataSlot;
  log.dirty_bitmap = bitmap.data();
  if (ioctl(impl_->vm.fd, KVM_GET_DIRTY_LOG, &log) != 0) throw_errno("kvm: KVM_GET_DIRTY_LOG");
}

void Vm::clear_dirty_log(uint64_t first_page, uint64_t pages, const uint64_t* bitmap) {
  kvm_clear_dirty_log clear{};
  clear.slot = kDataSlot;
  clear.first_page = first_page;
  clear.num_pages = uint32_t(pages);
  clear.dirty_bitmap = const_cast<uint64_t*>(bitmap);
  if (ioctl(impl_->vm.fd, KVM_CLEAR_DIRTY_LOG, &clear) != 0) throw_errno("kvm: KVM_CLEAR_DIRTY_LOG");
}

bool Vm::manual_dirty_log() const { return impl_->manual_dirty_log; }
uint32_t Vm::dirty_ring_entries() const { return impl_->ring_entries; }

void Vm::harvest_dirty_rings(std::vector<uint64_t>& pages) {
  Impl& m = *impl_;
  if (!m.ring_entries) throw std::logic_error("kvm: the VM was created without a dirty ring");
  std::lock_guard lock(m.ring_mutex);
  m.harvest_locked();
  for (size_t w = 0; w < m.ring_pending.size(); ++w) {
    uint64_t bits = m.ring_pending[w];
    m.ring_pending[w] = 0;
    while (bits) {
      pages.push_back(w * 64 + uint64_t(__builtin_ctzll(bits)));
      bits &= bits - 1;
    }
  }
}

uint64_t Vm::dirty_ring_full_exits() const { return impl_->ring_full_exits.load(); }
uint64_t Vm::dirty_ring_harvested() const { return impl_->ring_harvested.load(); }

}  // namespace snap::kvm
