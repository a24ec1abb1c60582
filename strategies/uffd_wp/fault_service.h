// uffd-wp's fault servicing: the fault thread (read, poll or spin), the saver's own look at the
// fault queue between chunks, and the sentinel page that stops a thread blocked in read().
#pragma once
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <thread>

#include "core/error.h"
#include "core/image.h"
#include "core/linux_compat.h"
#include "core/region.h"
#include "core/uffd.h"
#include "strategies/uffd_wp/choices.h"
#include "strategies/uffd_wp/page_state.h"

namespace snap::uffd_wp {

// A private page registered with the same userfaultfd, used only to wake a fault thread blocked in
// read(): writing to it makes a fault message the thread recognises as "stop".
class StopSentinel {
 public:
  explicit StopSentinel(Uffd& uffd) : uffd_(uffd), page_(kPageSize) {
    page_.data()[0] = 1;  // populated, so write-protecting it works without WP_UNPOPULATED
    uffd_.register_wp(page_.data(), kPageSize);
    registered_ = true;
    uffd_.writeprotect(page_.data(), kPageSize, true);
  }
  ~StopSentinel() {
    if (!registered_) return;
    try {
      uffd_.writeprotect(page_.data(), kPageSize, false, true);
      uffd_.unregister(page_.data(), kPageSize);
    } catch (...) {
      // Closing the fd releases the registration anyway.
    }
  }
  StopSentinel(const StopSentinel&) = delete;
  StopSentinel& operator=(const StopSentinel&) = delete;
  bool contains(uint64_t addr) const {
    const uint64_t b = reinterpret_cast<uint64_t>(page_.data());
    return addr >= b && addr < b + kPageSize;
  }
  // Called by the fault thread: lets the stopping writer through.
  void release() { uffd_.writeprotect(page_.data(), kPageSize, false, true); }
  // Called by the stopping thread; returns once the fault thread released it (or had already).
  void trip() { reinterpret_cast<volatile uint8_t*>(page_.data())[1] = 1; }

 private:
  Uffd& uffd_;
  PrefaultedBuffer page_;
  bool registered_ = false;
};

// Lazy release, a write fault on a page someone else claimed: un-protects it (waking its writer) when
// the saver has saved it and nobody released it yet; otherwise whoever holds it un-protects it.
inline void release_saved(LazyHandoff* lazy, Uffd& uffd, ClaimBitmap& released, const Region& region, size_t page) {
  if (released.test(page) || !lazy->fault_wants(page)) return;
  uffd.writeprotect(region.page(page), kPageSize, false, true);
  released.mark_range(page, 1);
  lazy->count_fault_unprotect();
}

// The dedicated fault thread: reads write-fault messages, claims the page, copies it aside into
// the ring, un-protects it (which wakes the writer). Pages the saver already claimed are left to
// the saver, whose un-protect wakes the writer.
class FaultHandler {
 public:
  // `released` gets the bit of every page this thread un-protects; `lazy` (release=lazy) says which
  // pages the saver saved and left protected.
  FaultHandler(Uffd& uffd, const Region& region, ClaimBitmap& claims, ClaimBitmap& released, CopyAsideRing& ring,
               FaultWait wait, StopSentinel* sentinel, FaultSched policy, LazyHandoff* lazy = nullptr)
      : uffd_(uffd), region_(region), claims_(claims), released_(released), ring_(ring), lazy_(lazy), wait_(wait),
        sentinel_(sentinel) {
    if (wait_ == FaultWait::kPoll) {
      stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (stop_fd_ < 0) throw_errno("eventfd for the uffd-wp fault thread");
    }
    try {
      thread_ = std::thread([this] { run(); });
    } catch (...) {
      if (stop_fd_ >= 0) close(stop_fd_);
      throw;
    }
    sched_ = apply_policy(policy);
  }
  ~FaultHandler() {
    stop();
    if (stop_fd_ >= 0) close(stop_fd_);
  }
  FaultHandler(const FaultHandler&) = delete;
  FaultHandler& operator=(const FaultHandler&) = delete;

  // Back to the normal policy: a SCHED_IDLE spinner can be starved for seconds on a busy machine,
  // which must not delay the end of the snapshot (a page it claimed, or joining it).
  void end_idle_policy() noexcept {
    if (sched_ != FaultSched::kIdle || !thread_.joinable()) return;
    sched_param sp{};
    if (pthread_setschedparam(thread_.native_handle(), SCHED_OTHER, &sp) == 0) sched_ = FaultSched::kNormal;
    idle_ended_ = true;
  }

  // Stops and joins the thread; idempotent, never throws.
  void stop() noexcept {
    if (!thread_.joinable()) return;
    end_idle_policy();
    stop_.store(true, std::memory_order_release);
    if (wait_ == FaultWait::kPoll) {
      uint64_t one = 1;
      [[maybe_unused]] ssize_t w = write(stop_fd_, &one, sizeof one);
    } else if (wait_ == FaultWait::kRead && !exited_.load(std::memory_order_acquire)) {
      // The thread releases the sentinel before it exits on any path, so this never blocks for good.
      sentinel_->trip();
    }
    thread_.join();
  }
  // Rethrows on the saver's thread whatever ended the fault thread.
  void rethrow_if_failed() const {
    if (failed_.load(std::memory_order_acquire)) std::rethrow_exception(error_);
  }
  uint64_t fault_messages() const { return messages_.load(std::memory_order_relaxed); }
  uint64_t pages_copied() const { return copied_.load(std::memory_order_relaxed); }
  // Faults that found the ring full and had to wait for the saver.
  uint64_t ring_full_waits() const { return ring_full_waits_.load(std::memory_order_relaxed); }
  // The policy applied at start ("normal" when the requested one was refused).
  const char* sched_name() const { return name_of(kFaultSchedNames, idle_ended_ ? FaultSched::kIdle : sched_); }

 private:
  FaultSched apply_policy(FaultSched policy) {
    if (policy == FaultSched::kAuto) policy = wait_ == FaultWait::kSpin ? FaultSched::kNormal : FaultSched::kFifo;
    if (policy == FaultSched::kFifo && wait_ == FaultWait::kSpin) policy = FaultSched::kNormal;
    sched_param sp{};
    int rc = 0;
    if (policy == FaultSched::kFifo) {
      sp.sched_priority = 1;
      rc = pthread_setschedparam(thread_.native_handle(), SCHED_FIFO, &sp);
    } else if (policy == FaultSched::kIdle) {
      rc = pthread_setschedparam(thread_.native_handle(), SCHED_IDLE, &sp);
    }
    return rc == 0 ? policy : FaultSched::kNormal;
  }

  void run() noexcept {
    pthread_setname_np(pthread_self(), "snap-uffd-fault");  // so profiles and top tell it apart
    try {
      loop();
    } catch (...) {
      error_ = std::current_exception();
      failed_.store(true, std::memory_order_release);
    }
    if (sentinel_) {
      try {
        sentinel_->release();
      } catch (...) {
      }
    }
    exited_.store(true, std::memory_order_release);
  }

  void loop() {
    uffd_msg msgs[32];
    const int fd = uffd_.fd();
    for (;;) {
      ssize_t got = -1;
      switch (wait_) {
        case FaultWait::kSpin:
          // Busy-poll the non-blocking fd: no wake-up of this thread on the fault path.
          while ((got = read(fd, msgs, sizeof msgs)) < 0 && errno == EAGAIN) {
            if (stop_.load(std::memory_order_relaxed)) return;
            cpu_relax();
          }
          break;
        case FaultWait::kPoll: {
          pollfd fds[2] = {{fd, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
          if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            throw_errno("poll on the userfaultfd");
          }
          if (fds[1].revents) return;
          got = read(fd, msgs, sizeof msgs);
          if (got < 0 && errno == EAGAIN) continue;
          break;
        }
        case FaultWait::kRead:
          got = read(fd, msgs, sizeof msgs);  // blocking fd
          break;
        case FaultWait::kSaver:
        case FaultWait::kSigbus:
          return;  // no fault thread in these modes
      }
      if (got < 0) {
        if (errno == EINTR) continue;
        throw_errno("read of userfaultfd messages");
      }
      if (got % ssize_t(sizeof(uffd_msg)) != 0) throw std::runtime_error("short read of a userfaultfd message");
      if (service(msgs, size_t(got) / sizeof(uffd_msg))) return;
    }
  }

  // Handles a batch of messages; true when the stop sentinel was among them.
  bool service(const uffd_msg* msgs, size_t n) {
    const uint64_t base = reinterpret_cast<uint64_t>(region_.base());
    const uint64_t end = base + region_.bytes();
    bool stop = false;
    for (size_t i = 0; i < n; ++i) {
      if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;  // no other events were requested
      const uint64_t addr = msgs[i].arg.pagefault.address & ~uint64_t(kPageSize - 1);
      if (sentinel_ && sentinel_->contains(addr)) {
        sentinel_->release();
        stop = true;
        continue;
      }
      if (addr < base || addr >= end) continue;
      messages_.fetch_add(1, std::memory_order_relaxed);
      const uint64_t page = (addr - base) / kPageSize;
      // Already claimed: either the saver has it in the chunk it is saving (its un-protect wakes
      // the writer) or this thread saved it for an earlier message (that un-protect woke it). With
      // lazy release the saver leaves what it saved protected: un-protect it, no copy needed.
      if (!claims_.claim(page)) {
        if (lazy_) release_saved(lazy_, uffd_, released_, region_, page);
        continue;
      }
      uint64_t ticket = 0;
      uint8_t* slot = ring_.reserve(ticket);
      if (slot == nullptr) {
        // Full ring: the saver is behind (slow sink). Back-pressure is the only bounded option.
        ring_full_waits_.fetch_add(1, std::memory_order_relaxed);
        while ((slot = ring_.reserve(ticket)) == nullptr) {
          if (stop_.load(std::memory_order_acquire)) return true;  // the clean-up un-protects everything
          sched_yield();
        }
      }
      std::memcpy(slot, region_.page(page), kPageSize);
      ring_.publish(ticket, page);
      copied_.fetch_add(1, std::memory_order_relaxed);
      uffd_.writeprotect(reinterpret_cast<void*>(addr), kPageSize, false, true);
      released_.mark_range(page, 1);
    }
    return stop;
  }

  Uffd& uffd_;
  const Region& region_;
  ClaimBitmap& claims_;
  ClaimBitmap& released_;
  CopyAsideRing& ring_;
  LazyHandoff* const lazy_;
  const FaultWait wait_;
  StopSentinel* sentinel_;
  int stop_fd_ = -1;
  FaultSched sched_ = FaultSched::kNormal;
  bool idle_ended_ = false;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> exited_{false};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
  std::atomic<uint64_t> messages_{0};
  std::atomic<uint64_t> copied_{0};
  std::atomic<uint64_t> ring_full_waits_{0};
};

// The saver's own look at the fault queue between chunks (what QEMU's migration thread does): when
// the fault thread is slow to get a core (a busy machine, or a SCHED_IDLE spinner starved by other
// work), a waiting writer is still released within one chunk of the saver's progress. Only with a
// non-blocking fd: a blocking read here could wait for a message the fault thread took.
class SaverFaultService {
 public:
  static constexpr size_t kBatch = 32;
  SaverFaultService(Uffd& uffd, const Region& region, ClaimBitmap& claims, ClaimBitmap& released,
                    LazyHandoff* lazy = nullptr)
      : uffd_(uffd), region_(region), claims_(claims), released_(released), lazy_(lazy), pages_(kBatch * kPageSize) {}

  // Serves the messages waiting now: claims, copies aside, un-protects, then saves. Returns the
  // number of pages saved.
  size_t serve(ImageWriter& writer) {
    uffd_msg msgs[kBatch];
    const ssize_t got = read(uffd_.fd(), msgs, sizeof msgs);
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) return 0;
      throw_errno("read of userfaultfd messages (saver)");
    }
    const uint64_t base = reinterpret_cast<uint64_t>(region_.base());
    const uint64_t end = base + region_.bytes();
    uint64_t taken[kBatch];
    size_t n = 0;
    for (size_t i = 0; i < size_t(got) / sizeof(uffd_msg); ++i) {
      if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
      const uint64_t addr = msgs[i].arg.pagefault.address & ~uint64_t(kPageSize - 1);
      if (addr < base || addr >= end) continue;
      ++messages_;
      const uint64_t page = (addr - base) / kPageSize;
      if (!claims_.claim(page)) {
        if (lazy_) release_saved(lazy_, uffd_, released_, region_, page);
        continue;
      }
      std::memcpy(pages_.data() + n * kPageSize, region_.page(page), kPageSize);
      taken[n++] = page;
    }
    for (size_t i = 0; i < n; ++i) {
      uffd_.writeprotect(region_.page(taken[i]), kPageSize, false, true);
      released_.mark_range(taken[i], 1);
    }
    for (size_t i = 0; i < n; ++i) writer.save_page(taken[i], pages_.data() + i * kPageSize);
    return n;
  }
  uint64_t messages() const { return messages_; }
  size_t bytes() const { return pages_.bytes(); }

 private:
  Uffd& uffd_;
  const Region& region_;
  ClaimBitmap& claims_;
  ClaimBitmap& released_;
  LazyHandoff* const lazy_;
  PrefaultedBuffer pages_;
  uint64_t messages_ = 0;
};

}  // namespace snap::uffd_wp
