// uffd-wp's in-thread fault path: the SIGBUS handler that saves a writer's page in the writer (see sigbus.h).
#include "strategies/uffd_wp/sigbus.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "core/clock.h"
#include "core/error.h"
#include "core/uffd.h"

namespace snap::uffd_wp {

namespace {

// Signal dispositions are per process, so there is one snapshot's handler at a time. The handler
// reads only these: plain fields written before the handler is installed (and not changed until it
// is removed and no handler runs), and lock-free atomics.
struct State {
  uintptr_t begin = 0, end = 0;
  int fd = -1;
  ClaimBitmap* claims = nullptr;
  ClaimBitmap* released = nullptr;
  CopyAsideRing* ring = nullptr;
  LazyHandoff* lazy = nullptr;  // release=lazy only
};
State g_state;
std::atomic<bool> g_claimed{false};    // a SigbusFaultPath exists
std::atomic<bool> g_active{false};     // faults in [begin, end) are the snapshot's
std::atomic<bool> g_ending{false};     // clean-up: handlers return at once (the region is being released)
std::atomic<int> g_in_handler{0};      // handlers running, so clean-up waits for them
std::atomic<int> g_error{0};           // errno of a failed un-protect, for the saver to report
struct sigaction g_previous;           // the disposition before, restored by the destructor

std::atomic<uint64_t> g_faults{0}, g_copies{0}, g_claimed_waits{0}, g_ring_full_waits{0};
std::atomic<uint64_t> g_handler_ns{0}, g_copy_ns{0}, g_unprotect_ns{0}, g_wait_ns{0};

static_assert(std::atomic<uint64_t>::is_always_lock_free, "the signal handler needs lock-free atomics");
static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler needs lock-free atomics");

void add(std::atomic<uint64_t>& counter, uint64_t v) { counter.fetch_add(v, std::memory_order_relaxed); }

// Un-protects one page (mode 0: there is nobody blocked to wake) and marks it released; false (the
// errno kept for the saver to report) when the ioctl fails: the store then faults again and waits
// on `released` until the clean-up un-protects the region.
bool unprotect_page(const State& s, uintptr_t page_addr, size_t page) {
  uffdio_writeprotect wp{};
  wp.range.start = page_addr;
  wp.range.len = kPageSize;
  wp.mode = 0;
  while (ioctl(s.fd, UFFDIO_WRITEPROTECT, &wp) != 0) {
    if (errno == EAGAIN || errno == EINTR) continue;
    if (!g_ending.load(std::memory_order_acquire)) {
      int none = 0;
      g_error.compare_exchange_strong(none, errno);
    }
    return false;
  }
  s.released->mark_range(page, 1);
  return true;
}

// The page is protected and the writer is stopped on it: save it (or wait for whoever is saving it),
// then return so the store retries. Only atomics, memcpy, clock_gettime, sched_yield and ioctl.
void serve(uintptr_t addr) {
  const State& s = g_state;
  const uintptr_t page_addr = addr & ~uintptr_t(kPageSize - 1);
  const size_t page = (page_addr - s.begin) / kPageSize;
  add(g_faults, 1);
  if (!s.claims->claim(page)) {
    // Lazy release: a page the saver saved and left protected needs only its un-protect, no copy.
    if (s.lazy && !s.released->test(page) && s.lazy->fault_wants(page)) {
      const uint64_t t0 = now_ns();
      if (unprotect_page(s, page_addr, page)) s.lazy->count_fault_unprotect();
      add(g_unprotect_ns, now_ns() - t0);
      return;
    }
    // The saver has it in the chunk it is copying (or another writer is saving it): the store may
    // only go ahead once the page is un-protected, which `released` says.
    add(g_claimed_waits, 1);
    const uint64_t t0 = now_ns();
    while (!s.released->test(page) && !g_ending.load(std::memory_order_acquire)) sched_yield();
    add(g_wait_ns, now_ns() - t0);
    return;
  }
  uint64_t ticket = 0;
  uint8_t* slot = s.ring->reserve(ticket);
  if (slot == nullptr) {
    // Full ring: the saver is behind (slow sink). It drains the ring without needing any writer.
    add(g_ring_full_waits, 1);
    const uint64_t t0 = now_ns();
    while ((slot = s.ring->reserve(ticket)) == nullptr) {
      if (g_ending.load(std::memory_order_acquire)) return;  // the clean-up un-protects everything
      sched_yield();
    }
    add(g_wait_ns, now_ns() - t0);
  }
  const uint64_t t_copy = now_ns();
  std::memcpy(slot, reinterpret_cast<const void*>(page_addr), kPageSize);
  s.ring->publish(ticket, page);
  const uint64_t t_unprotect = now_ns();
  if (!unprotect_page(s, page_addr, page)) return;
  add(g_copies, 1);
  add(g_copy_ns, t_unprotect - t_copy);
  add(g_unprotect_ns, now_ns() - t_unprotect);
}

void on_sigbus(int, siginfo_t* info, void*) {
  const int saved_errno = errno;
  g_in_handler.fetch_add(1);
  const uint64_t t0 = now_ns();
  const uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);
  // handle_userfault() with UFFD_FEATURE_SIGBUS makes the fault VM_FAULT_SIGBUS, which the
  // architecture's fault path sends as SIGBUS/BUS_ADRERR with the faulting address.
  if (g_active.load() && info->si_code == BUS_ADRERR && addr >= g_state.begin && addr < g_state.end) {
    if (!g_ending.load(std::memory_order_acquire)) serve(addr);
    add(g_handler_ns, now_ns() - t0);
  } else {
    // Not a write to the snapshot's region: put the previous disposition back so that the fault,
    // which happens again when this returns, crashes (or is handled) as it would without us.
    sigaction(SIGBUS, &g_previous, nullptr);
    if (info->si_code <= 0) raise(SIGBUS);  // sent by kill()/raise(): it would not recur by itself
  }
  g_in_handler.fetch_sub(1);
  errno = saved_errno;
}

// True while some thread of this process has a SIGBUS pending (generated, not yet delivered): a
// writer that faulted just before the region was released may sit preempted on its way back to
// user space, and restoring the default disposition under it would kill the process.
bool sigbus_pending_in_process() {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return false;
  const uint64_t bit = uint64_t(1) << (SIGBUS - 1);
  bool pending = false;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    const std::string path = std::string("/proc/self/task/") + e->d_name + "/status";
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;  // the thread exited
    char buf[4096];
    const ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) continue;
    buf[n] = '\0';
    for (const char* key : {"SigPnd:", "ShdPnd:"}) {
      const char* at = strstr(buf, key);
      if (at != nullptr && (strtoull(at + strlen(key), nullptr, 16) & bit)) pending = true;
    }
    if (pending) break;
  }
  closedir(dir);
  return pending;
}

}  // namespace

std::string sigbus_unsupported_reason() {
  const UffdFeatures& f = uffd_features();
  if (!f.available) return f.reason;
  if (!f.has(UFFD_FEATURE_SIGBUS)) return "userfaultfd lacks UFFD_FEATURE_SIGBUS (needed by uffd-wp.fault_wait=sigbus)";
  return "";
}

SigbusFaultPath::SigbusFaultPath(int uffd_fd, const Region& region, ClaimBitmap& claims, ClaimBitmap& released,
                                 CopyAsideRing& ring, LazyHandoff* lazy) {
  bool expected = false;
  if (!g_claimed.compare_exchange_strong(expected, true))
    throw std::runtime_error("uffd-wp fault_wait=sigbus: another snapshot's SIGBUS handler is installed in this process");
  g_state.begin = reinterpret_cast<uintptr_t>(region.base());
  g_state.end = g_state.begin + region.bytes();
  g_state.fd = uffd_fd;
  g_state.claims = &claims;
  g_state.released = &released;
  g_state.ring = &ring;
  g_state.lazy = lazy;
  g_error.store(0);
  g_ending.store(false);
  for (auto* c : {&g_faults, &g_copies, &g_claimed_waits, &g_ring_full_waits, &g_handler_ns, &g_copy_ns,
                  &g_unprotect_ns, &g_wait_ns})
    c->store(0);
  g_active.store(true);
  struct sigaction action {};
  action.sa_sigaction = on_sigbus;
  action.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
  sigemptyset(&action.sa_mask);
  if (sigaction(SIGBUS, &action, &g_previous) != 0) {
    const int e = errno;
    g_active.store(false);
    g_claimed.store(false);
    errno = e;
    throw_errno("sigaction(SIGBUS)");
  }
}

SigbusFaultPath::~SigbusFaultPath() {
  g_ending.store(true, std::memory_order_release);
  // Bounded: a thread that never runs again cannot hold the snapshot's end forever.
  const uint64_t deadline = now_ns() + 1000000000ull;
  while (sigbus_pending_in_process() && now_ns() < deadline) sched_yield();
  sigaction(SIGBUS, &g_previous, nullptr);
  while (g_in_handler.load() != 0) sched_yield();  // a handler may still read the state
  g_active.store(false);
  g_state = State{};
  g_claimed.store(false);
}

void SigbusFaultPath::rethrow_if_failed() const {
  if (const int e = g_error.load()) {
    errno = e;
    throw_errno("uffd-wp SIGBUS handler: UFFDIO_WRITEPROTECT of a faulting page");
  }
}

SigbusCounters SigbusFaultPath::counters() const {
  SigbusCounters c;
  c.faults = g_faults.load();
  c.copies = g_copies.load();
  c.claimed_waits = g_claimed_waits.load();
  c.ring_full_waits = g_ring_full_waits.load();
  c.handler_ns = g_handler_ns.load();
  c.copy_ns = g_copy_ns.load();
  c.unprotect_ns = g_unprotect_ns.load();
  c.wait_ns = g_wait_ns.load();
  return c;
}

}  // namespace snap::uffd_wp
