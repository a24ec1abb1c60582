// `mprotect` dirty tracker: read-only region plus a SIGSEGV handler that marks a bitmap and re-enables writes.
//
// The ordering that makes it lose no write, with two steps on each side:
//   handler (writer's fault):  (H1) mprotect the page read-write, then (H2) set its bit;
//   collect:                   (C1) exchange the bit to 0,        then (C2) mprotect the page read-only.
// A page can be writable with its bit clear only between H1 and H2 (the faulting write has not run
// yet; H2 follows before it does) or between C1 and C2 (collect reports the page, and the caller
// saves it after collect returns, so a write in that window is in the copy). A write after C2 faults
// and sets the bit for the next round. (Marking before un-protecting, or re-protecting before
// clearing, each has an interleaving that leaves a page writable and unmarked.)
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "core/error.h"
#include "core/units.h"
#include "strategies/tracking/tracker.h"

namespace snap {

namespace {

// Signal dispositions are per process, so there is one tracked region at a time: this is its state,
// read by the handler with lock-free atomics only (async-signal-safe, no allocation).
std::atomic<bool> g_claimed{false};
std::atomic<uintptr_t> g_begin{0};
std::atomic<uintptr_t> g_end{0};
std::atomic<std::atomic<uint64_t>*> g_bits{nullptr};
std::atomic<uint64_t> g_faults{0};
std::atomic<bool> g_overflow{false};   // a split hit vm.max_map_count: every page counts as dirty
std::atomic<int> g_in_handler{0};      // handlers running, so stop() frees the bitmap only after them
struct sigaction g_previous;           // the disposition before start(), restored by stop()

static_assert(std::atomic<uint64_t>::is_always_lock_free, "the signal handler needs lock-free atomics");
static_assert(std::atomic<uintptr_t>::is_always_lock_free, "the signal handler needs lock-free atomics");

void write_stderr(const char* msg) {
  ssize_t ignored = write(STDERR_FILENO, msg, strlen(msg));
  (void)ignored;
}

void on_sigsegv(int, siginfo_t* info, void*) {
  const int saved_errno = errno;
  g_in_handler.fetch_add(1);
  const uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);
  const uintptr_t begin = g_begin.load();
  const uintptr_t end = g_end.load();
  std::atomic<uint64_t>* bits = g_bits.load();
  bool handled = false;
  if (info->si_code == SEGV_ACCERR && bits != nullptr && addr >= begin && addr < end) {
    const uintptr_t page = addr & ~uintptr_t(kPageSize - 1);
    if (mprotect(reinterpret_cast<void*>(page), kPageSize, PROT_READ | PROT_WRITE) == 0) {  // H1
      const uint64_t index = (page - begin) / kPageSize;
      bits[index / 64].fetch_or(uint64_t(1) << (index % 64));  // H2
      handled = true;
    } else if (mprotect(reinterpret_cast<void*>(begin), end - begin, PROT_READ | PROT_WRITE) == 0) {
      // Un-protecting one page splits the mapping; at vm.max_map_count that fails. Opening the whole
      // region merges it back into one mapping; precision is lost, correctness is not.
      g_overflow.store(true);
      handled = true;
    } else {
      write_stderr("snapbench: mprotect tracker cannot re-enable writes in the tracked region\n");
    }
    if (handled) g_faults.fetch_add(1, std::memory_order_relaxed);
  }
  if (!handled) {
    // Not a write to the tracked region: put the previous handler back so the fault, which happens
    // again when this returns, crashes (or is handled) exactly as it would without the tracker.
    sigaction(SIGSEGV, &g_previous, nullptr);
    if (info->si_code <= 0) raise(SIGSEGV);  // sent by kill()/raise(): it would not recur by itself
  }
  g_in_handler.fetch_sub(1);
  errno = saved_errno;
}

class MprotectTracker final : public DirtyTracker {
 public:
  ~MprotectTracker() override {
    try {
      stop();
    } catch (...) {
      // stop() finishes releasing the handler and the claim before it reports a failed mprotect.
    }
  }

  using DirtyTracker::DirtyTracker;
  Support probe() const override { return Support::yes(); }

  void start(Region& region, WorkloadControl&, const ParamValues&) override {
    stop();
    bool expected = false;
    if (!g_claimed.compare_exchange_strong(expected, true))
      throw std::runtime_error(
          "mprotect tracker: another region is already tracked in this process (one SIGSEGV handler per process)");
    owner_ = true;
    begin_ = region.base();
    bytes_ = region.bytes();
    pages_ = region.pages();
    words_ = (pages_ + 63) / 64;
    try {
      bits_.reset(new std::atomic<uint64_t>[words_]());  // value-initialised: all clear
      g_faults.store(0);
      g_overflow.store(false);
      g_begin.store(reinterpret_cast<uintptr_t>(begin_));
      g_end.store(reinterpret_cast<uintptr_t>(begin_) + bytes_);
      g_bits.store(bits_.get());
      struct sigaction action {};
      action.sa_sigaction = on_sigsegv;
      action.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
      sigemptyset(&action.sa_mask);
      if (sigaction(SIGSEGV, &action, &g_previous) != 0) throw_errno("sigaction(SIGSEGV)");
      handler_installed_ = true;
      if (mprotect(begin_, bytes_, PROT_READ) != 0) throw_errno("mprotect(PROT_READ) of the region");
    } catch (...) {
      try {
        stop();
      } catch (...) {
      }
      throw;
    }
  }

  void collect(std::vector<uint64_t>& dirty) override {
    if (!owner_) throw std::logic_error("mprotect tracker: collect() before start()");
    if (g_overflow.exchange(false)) {
      for (size_t w = 0; w < words_; ++w) bits_[w].store(0);
      protect(0, pages_);
      for (uint64_t p = 0; p < pages_; ++p) dirty.push_back(p);
      return;
    }
    uint64_t run_start = 0, run_len = 0;  // contiguous marked pages, re-protected with one call
    for (size_t w = 0; w < words_; ++w) {
      if (bits_[w].load(std::memory_order_relaxed) == 0) continue;
      uint64_t marked = bits_[w].exchange(0);  // C1 for up to 64 pages
      while (marked != 0) {
        const uint64_t page = w * 64 + uint64_t(__builtin_ctzll(marked));
        marked &= marked - 1;
        if (run_len != 0 && page == run_start + run_len) {
          ++run_len;
        } else {
          if (run_len != 0) protect(run_start, run_len);  // C2
          run_start = page;
          run_len = 1;
        }
        dirty.push_back(page);
      }
    }
    if (run_len != 0) protect(run_start, run_len);
  }

  void stop() override {
    if (!owner_) return;
    // Writable first, handler second: a fault already taken is then retried on a writable page.
    int mprotect_errno = 0;
    if (mprotect(begin_, bytes_, PROT_READ | PROT_WRITE) != 0) mprotect_errno = errno;
    if (handler_installed_) {
      sigaction(SIGSEGV, &g_previous, nullptr);
      handler_installed_ = false;
    }
    g_bits.store(nullptr);
    g_begin.store(0);
    g_end.store(0);
    while (g_in_handler.load() != 0) sched_yield();  // a handler may still be reading the bitmap
    faults_ = g_faults.load();
    bits_.reset();
    owner_ = false;
    g_claimed.store(false);
    if (mprotect_errno != 0) {
      errno = mprotect_errno;
      throw_errno("mprotect tracker: making the region writable again");
    }
  }

  uint64_t faults() const override { return owner_ ? g_faults.load() : faults_; }
  uint64_t memory_bytes() const override { return bits_ ? words_ * sizeof(uint64_t) : 0; }

 private:
  // Re-protects `count` pages from `first`. If that fails (a split at vm.max_map_count), the pages
  // are marked again so they are reported next round rather than left writable and unmarked.
  void protect(uint64_t first, uint64_t count) {
    if (mprotect(begin_ + first * kPageSize, count * kPageSize, PROT_READ) == 0) return;
    for (uint64_t p = first; p < first + count; ++p) bits_[p / 64].fetch_or(uint64_t(1) << (p % 64));
  }

  bool owner_ = false;
  bool handler_installed_ = false;
  uint8_t* begin_ = nullptr;
  size_t bytes_ = 0;
  size_t pages_ = 0;
  size_t words_ = 0;
  std::unique_ptr<std::atomic<uint64_t>[]> bits_;
  uint64_t faults_ = 0;
};

}  // namespace

const TrackerEntry& mprotect_tracker() {
  static const TrackerEntry entry{
      .name = "mprotect",
      .help = "mprotect(PROT_READ) plus a SIGSEGV handler that marks a bitmap and re-enables writes per page",
      // It learns of a write from the SIGSEGV of a thread of this process: only the threads workload
      // writes that way (a guest's or another process's stores never reach its handler; a vCPU's
      // store to a PROT_READ page makes KVM_RUN fail with EFAULT instead).
      .workloads = {"threads"},
      .factory = make_tracker_of<MprotectTracker>,
  };
  return entry;
}

}  // namespace snap
