// The `uffd-wp` strategy: freeze-and-release snapshots with userfaultfd write-protection (QEMU's
// background-snapshot design): pause, write-protect everything, resume; a saver walks memory saving
// and un-protecting chunks, while a fault thread saves first any page a writer is about to change.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/error.h"
#include "core/linux_compat.h"
#include "core/uffd.h"
#include "strategies/strategy.h"

namespace snap {

namespace {

// How the fault thread waits for the next write fault (a latency/CPU trade-off benchmarked later).
// `saver` has no fault thread at all: the saver serves faults between chunks, as QEMU's migration
// thread does (fewer threads competing for cores, but a writer waits while the sink blocks).
enum class FaultWait { kSpin, kPoll, kRead, kSaver };

// Each string parameter's values, named once: the declared choices (which ParamValues checks before
// any snapshot starts), the parsing, and the names written back into the notes.
template <typename E>
struct Named {
  const char* name;
  E value;
};

template <typename E, size_t N>
std::vector<std::string> names_of(const Named<E> (&table)[N]) {
  std::vector<std::string> names;
  for (const auto& n : table) names.push_back(n.name);
  return names;
}

template <typename E, size_t N>
E by_name(const Named<E> (&table)[N], const std::string& text) {
  for (const auto& n : table)
    if (text == n.name) return n.value;
  throw std::logic_error("uffd-wp: '" + text + "' passed the declared choices but names no value");
}

template <typename E, size_t N>
const char* name_of(const Named<E> (&table)[N], E value) {
  for (const auto& n : table)
    if (n.value == value) return n.name;
  return "?";
}

constexpr Named<FaultWait> kFaultWaitNames[] = {
    {"read", FaultWait::kRead}, {"poll", FaultWait::kPoll}, {"spin", FaultWait::kSpin}, {"saver", FaultWait::kSaver}};

// The fault thread's scheduling policy. `fifo` (real-time) wakes it ahead of everything the moment
// a fault arrives; `idle` lets a spinning thread poll only on an otherwise idle core, so a writer it
// wakes preempts it at once (but a busy machine can starve it: the saver then serves the faults).
// `auto` picks fifo for poll/read and normal for spin (a real-time spinner would monopolise its
// core). A refused policy (no permission) falls back to normal.
enum class FaultSched { kAuto, kNormal, kFifo, kIdle };

constexpr Named<FaultSched> kFaultSchedNames[] = {
    {"auto", FaultSched::kAuto}, {"normal", FaultSched::kNormal}, {"fifo", FaultSched::kFifo}, {"idle", FaultSched::kIdle}};

// Where the saver copies a chunk before un-protecting it (see save_chunk).
enum class Staging { kImage, kSeparate, kNone };

constexpr Named<Staging> kStagingNames[] = {
    {"image", Staging::kImage}, {"separate", Staging::kSeparate}, {"none", Staging::kNone}};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Anonymous memory populated up front, so that neither the fault path nor the saver page-faults on
// it while writers wait.
class PrefaultedBuffer {
 public:
  explicit PrefaultedBuffer(size_t bytes) : bytes_(bytes) {
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) throw_errno("mmap of the uffd-wp copy-aside buffer (" + format_bytes(double(bytes_)) + ")");
    base_ = static_cast<uint8_t*>(p);
  }
  ~PrefaultedBuffer() { munmap(base_, bytes_); }
  PrefaultedBuffer(const PrefaultedBuffer&) = delete;
  PrefaultedBuffer& operator=(const PrefaultedBuffer&) = delete;
  uint8_t* data() const { return base_; }
  size_t bytes() const { return bytes_; }

 private:
  size_t bytes_;
  uint8_t* base_ = nullptr;
};

// One bit per page: set by whoever (saver or fault thread) takes responsibility for saving it, so
// that each page is saved exactly once.
class ClaimBitmap {
 public:
  explicit ClaimBitmap(size_t pages) : words_((pages + 63) / 64), bits_(new std::atomic<uint64_t>[words_]) {
    for (size_t i = 0; i < words_; ++i) bits_[i].store(0, std::memory_order_relaxed);
  }
  // True when this call set the bit (the caller now owns the page).
  bool claim(size_t page) {
    const uint64_t bit = 1ull << (page % 64);
    return (bits_[page / 64].fetch_or(bit, std::memory_order_acq_rel) & bit) == 0;
  }
  // Claims the bits of `mask` in word `word`; returns the ones this call won.
  uint64_t claim_mask(size_t word, uint64_t mask) {
    return mask & ~bits_[word].fetch_or(mask, std::memory_order_acq_rel);
  }
  size_t bytes() const { return words_ * sizeof(uint64_t); }

 private:
  size_t words_;
  std::unique_ptr<std::atomic<uint64_t>[]> bits_;
};

// Un-protects the saver's chunks on a thread of its own (release_thread=true), so that the kernel's
// walk of the chunk's page-table entries (~100 ns per page on the development VM, a third of the
// page's copy) overlaps the saver's copy of the next chunk instead of following it. Kept as the
// measured alternative, not the default: run from another CPU, every un-protect also has to flush
// the saver's CPU's TLB by interrupt, and the saver loses more than it gains idle (2 GiB: 0.43 vs
// 0.35 s, the thread's ioctls 0.20 s instead of the saver's 0.05 s). Under writes an unbounded
// queue halved the snapshot (the saver ran ahead) but writers then waited behind the queue (p50
// 25 us instead of 0.01); the queue is bounded by release_queue. Figures: results/variants/uffd-wp.
class ChunkReleaser {
 public:
  ChunkReleaser(Uffd& uffd, const Region& region, size_t max_queued)
      : uffd_(uffd), region_(region), max_queued_(max_queued) {
    thread_ = std::thread([this] { run(); });
  }
  ~ChunkReleaser() { stop(); }
  ChunkReleaser(const ChunkReleaser&) = delete;
  ChunkReleaser& operator=(const ChunkReleaser&) = delete;

  // Queues [first, first + count) for un-protecting and returns true, or returns false when
  // max_queued ranges already wait (the caller then un-protects it itself): a writer that faults on
  // a saved chunk waits for every range queued before it, so the bound is a bound on its stall.
  // Rethrows an error of the thread.
  bool try_push(size_t first, size_t count) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (error_) std::rethrow_exception(error_);
    if (queue_.size() >= max_queued_) return false;
    queue_.push_back({first, count});
    wake_.notify_one();
    return true;
  }
  // Returns once every queued range is un-protected; rethrows an error of the thread.
  void drain() {
    std::unique_lock<std::mutex> lock(mutex_);
    idle_.wait(lock, [this] { return (queue_.empty() && !busy_) || error_; });
    if (error_) std::rethrow_exception(error_);
  }
  // Stops and joins the thread, dropping what is still queued (the clean-up un-protects the whole
  // region on every exit that is not the normal end). Idempotent, never throws.
  void stop() noexcept {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      wake_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
  }
  // Time the thread spent in un-protect ioctls.
  uint64_t busy_ns() const { return busy_ns_.load(std::memory_order_relaxed); }

 private:
  struct Range {
    size_t first, count;
  };
  void run() noexcept {
    pthread_setname_np(pthread_self(), "snap-uffd-release");
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [this] { return !queue_.empty() || stopping_; });
      if (stopping_) return;
      const Range r = queue_.front();
      queue_.pop_front();
      busy_ = true;
      lock.unlock();
      std::exception_ptr error;
      const uint64_t t0 = now_ns();
      try {
        uffd_.writeprotect(region_.page(r.first), r.count * kPageSize, false, true);
      } catch (...) {
        error = std::current_exception();
      }
      busy_ns_.fetch_add(now_ns() - t0, std::memory_order_relaxed);
      lock.lock();
      busy_ = false;
      if (error) error_ = error;
      if (queue_.empty() || error_) idle_.notify_all();
      if (error_) return;
    }
  }

  Uffd& uffd_;
  const Region& region_;
  const size_t max_queued_;
  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  std::deque<Range> queue_;
  bool busy_ = false, stopping_ = false;
  std::exception_ptr error_;
  std::atomic<uint64_t> busy_ns_{0};
  std::thread thread_;
};

// Single-producer (fault thread) single-consumer (saver) ring of pages copied aside, in a
// preallocated buffer: the fault path never allocates and never touches the sink.
class CopyAsideRing {
 public:
  explicit CopyAsideRing(size_t slots) : slots_(slots), pages_(slots * kPageSize), index_(slots) {}

  // Producer: a free slot's page buffer, or nullptr when the ring is full.
  uint8_t* slot_to_fill() {
    const uint64_t head = head_.load(std::memory_order_relaxed);
    if (head - tail_.load(std::memory_order_acquire) >= slots_) return nullptr;
    return pages_.data() + (head % slots_) * kPageSize;
  }
  // Producer: publishes the slot returned by slot_to_fill() as holding `page`.
  void publish(uint64_t page) {
    const uint64_t head = head_.load(std::memory_order_relaxed);
    index_[head % slots_] = page;
    head_.store(head + 1, std::memory_order_release);
  }
  // Consumer: hands every published page to `save(page, data)` and frees its slot; returns how many.
  template <typename Save>
  size_t drain(Save&& save) {
    const uint64_t head = head_.load(std::memory_order_acquire);
    uint64_t tail = tail_.load(std::memory_order_relaxed);
    const size_t n = size_t(head - tail);
    for (; tail != head; ++tail) {
      save(index_[tail % slots_], pages_.data() + (tail % slots_) * kPageSize);
      tail_.store(tail + 1, std::memory_order_release);  // free each slot as soon as it is saved
    }
    return n;
  }
  size_t bytes() const { return pages_.bytes() + index_.size() * sizeof(uint64_t); }

 private:
  const size_t slots_;
  PrefaultedBuffer pages_;
  std::vector<uint64_t> index_;
  alignas(64) std::atomic<uint64_t> head_{0};
  alignas(64) std::atomic<uint64_t> tail_{0};
};

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

// The dedicated fault thread: reads write-fault messages, claims the page, copies it aside into
// the ring, un-protects it (which wakes the writer). Pages the saver already claimed are left to
// the saver, whose un-protect wakes the writer.
class FaultHandler {
 public:
  FaultHandler(Uffd& uffd, const Region& region, ClaimBitmap& claims, CopyAsideRing& ring, FaultWait wait,
               StopSentinel* sentinel, FaultSched policy)
      : uffd_(uffd), region_(region), claims_(claims), ring_(ring), wait_(wait), sentinel_(sentinel) {
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
          return;  // no fault thread in this mode
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
      // the writer) or this thread saved it for an earlier message (that un-protect woke it).
      if (!claims_.claim(page)) continue;
      uint8_t* slot = ring_.slot_to_fill();
      if (slot == nullptr) {
        // Full ring: the saver is behind (slow sink). Back-pressure is the only bounded option.
        ring_full_waits_.fetch_add(1, std::memory_order_relaxed);
        while ((slot = ring_.slot_to_fill()) == nullptr) {
          if (stop_.load(std::memory_order_acquire)) return true;  // the clean-up un-protects everything
          sched_yield();
        }
      }
      std::memcpy(slot, region_.page(page), kPageSize);
      ring_.publish(page);
      copied_.fetch_add(1, std::memory_order_relaxed);
      uffd_.writeprotect(reinterpret_cast<void*>(addr), kPageSize, false, true);
    }
    return stop;
  }

  Uffd& uffd_;
  const Region& region_;
  ClaimBitmap& claims_;
  CopyAsideRing& ring_;
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
  SaverFaultService(Uffd& uffd, const Region& region, ClaimBitmap& claims)
      : uffd_(uffd), region_(region), claims_(claims), pages_(kBatch * kPageSize) {}

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
      if (!claims_.claim(page)) continue;
      std::memcpy(pages_.data() + n * kPageSize, region_.page(page), kPageSize);
      taken[n++] = page;
    }
    for (size_t i = 0; i < n; ++i) uffd_.writeprotect(region_.page(taken[i]), kPageSize, false, true);
    for (size_t i = 0; i < n; ++i) writer.save_page(taken[i], pages_.data() + i * kPageSize);
    return n;
  }
  uint64_t messages() const { return messages_; }
  size_t bytes() const { return pages_.bytes(); }

 private:
  Uffd& uffd_;
  const Region& region_;
  ClaimBitmap& claims_;
  PrefaultedBuffer pages_;
  uint64_t messages_ = 0;
};

// Registers the region in write-protect mode; on destruction (every exit path) releases the
// protection of the whole range, waking any blocked writer, and unregisters.
class WpRegistration {
 public:
  WpRegistration(Uffd& uffd, Region& region) : uffd_(uffd), region_(region) {
    uffd_.register_wp(region_.base(), region_.bytes());
    registered_ = true;
  }
  ~WpRegistration() { release(); }
  WpRegistration(const WpRegistration&) = delete;
  WpRegistration& operator=(const WpRegistration&) = delete;

  // (The kernel rejects DONTWAKE together with WP, so `wake` stays at its default.)
  void protect_all() { uffd_.writeprotect(region_.base(), region_.bytes(), true); }
  // Idempotent; never throws (a failure here cannot be repaired, and closing the fd clears the
  // registration anyway). `all_released` says the saver and the fault thread un-protected every
  // page already (the normal end): the whole-range un-protect, a walk of every PTE as long as the
  // arming one, is then skipped. Any other exit un-protects everything before unregistering.
  void release(bool all_released = false) noexcept {
    if (!registered_) return;
    registered_ = false;
    if (!all_released) {
      try {
        uffd_.writeprotect(region_.base(), region_.bytes(), false, true);
      } catch (...) {
      }
    }
    try {
      uffd_.unregister(region_.base(), region_.bytes());
    } catch (...) {
    }
  }

 private:
  Uffd& uffd_;
  Region& region_;
  bool registered_ = false;
};

// Resumes the writers on destruction if they were paused and not resumed yet.
class PauseGuard {
 public:
  explicit PauseGuard(WorkloadControl& control) : control_(control) {}
  ~PauseGuard() {
    if (paused_) {
      try {
        control_.resume();
      } catch (...) {
      }
    }
  }
  PauseGuard(const PauseGuard&) = delete;
  PauseGuard& operator=(const PauseGuard&) = delete;
  void pause() {
    control_.pause();
    paused_ = true;
  }
  void resume() {
    paused_ = false;
    control_.resume();
  }

 private:
  WorkloadControl& control_;
  bool paused_ = false;
};

// Without WP_UNPOPULATED, write-protection skips never-touched pages: read each page once so it
// maps the zero page and can be protected (what QEMU does before arming).
void prefault_by_reading(const Region& region) {
  const volatile uint8_t* p = region.base();
  uint8_t sink = 0;
  for (size_t i = 0; i < region.pages(); ++i) sink ^= p[i * kPageSize];
  asm volatile("" : : "r"(sink));
}

class UffdWpStrategy : public Strategy {
 public:
  std::string name() const override { return "uffd-wp"; }
  std::string help() const override {
    return "freeze-and-release: write-protect all RAM with userfaultfd, save in chunks, faulting pages first";
  }
  Support probe() const override {
    const UffdFeatures& f = uffd_features();
    if (!f.available) return Support::no(f.reason);
    if (!f.has(UFFD_FEATURE_PAGEFAULT_FLAG_WP))
      return Support::no("userfaultfd lacks UFFD_FEATURE_PAGEFAULT_FLAG_WP (write-protect mode)");
    return Support::yes();
  }
  std::vector<ParamSpec> params() const override {
    return {
        {"chunk_pages", ParamSpec::Type::kInt, "64", 1, 65536,
         "pages the saver claims, copies and un-protects at a time (writers hitting the chunk wait for it)"},
        {"fault_wait", ParamSpec::Type::kString, "read", 0, 0,
         "how the fault thread waits for faults: read (blocking read), poll, spin (busy-polls a "
         "non-blocking fd, burns a core), or saver (no fault thread: the saver serves faults between "
         "chunks, QEMU-style; writers then wait while the sink blocks)",
         names_of(kFaultWaitNames)},
        {"ring_pages", ParamSpec::Type::kInt, "1024", 1, 1 << 20,
         "copy-aside ring size in pages; when full the fault thread waits for the saver"},
        {"staging", ParamSpec::Type::kString, "image", 0, 0,
         "where a chunk is copied before it is un-protected: image (straight into the image writer's "
         "buffer, made room for before the chunk is claimed: one copy, writers never wait for the sink), "
         "separate (into a staging buffer, then into the image: an extra copy), none (into the image, "
         "which may flush to the sink while writers wait on the chunk)",
         names_of(kStagingNames)},
        {"wp_unpopulated", ParamSpec::Type::kBool, "true", 0, 0,
         "use UFFD_FEATURE_WP_UNPOPULATED when the kernel offers it; false pre-faults never-touched pages "
         "with a read instead (QEMU's way on older kernels)"},
        {"saver_serves_faults", ParamSpec::Type::kBool, "true", 0, 0,
         "the saver also serves waiting faults between chunks (spin/poll; always with saver), so a starved "
         "fault thread cannot stall writers for long"},
        {"release_thread", ParamSpec::Type::kBool, "false", 0, 0,
         "un-protect each saved chunk on a thread of its own, to overlap the kernel's page-table walk "
         "with the copy of the next chunk; measured slower, idle and (with the default release_queue) "
         "under writes: from a second CPU each un-protect must interrupt the saver's CPU to flush its "
         "TLB (results/variants/uffd-wp)"},
        {"release_queue", ParamSpec::Type::kInt, "4", 1, 1 << 30,
         "with release_thread: chunks that may wait for the thread before the saver un-protects one "
         "itself; a writer faulting on a saved chunk waits behind them (a large queue lets the saver run "
         "ahead: a shorter snapshot under writes, paid for in writer stalls)"},
        {"saver_yield", ParamSpec::Type::kBool, "true", 0, 0,
         "the saver yields its core between chunks, so a woken writer never waits for a time slice"},
        {"fault_sched", ParamSpec::Type::kString, "auto", 0, 0,
         "fault thread scheduling: auto (fifo for poll/read, normal for spin), normal, fifo (SCHED_FIFO; "
         "never for spin), idle (SCHED_IDLE); falls back to normal without permission",
         names_of(kFaultSchedNames)},
    };
  }
  ConsistencyPoint consistency() const override { return ConsistencyPoint::kStart; }

  void snapshot(SnapshotContext& ctx) override {
    const uint64_t t_setup = now_ns();
    Region& region = ctx.region;
    const size_t pages = region.pages();
    const size_t chunk_pages = size_t(ctx.params.get_int("chunk_pages"));
    const size_t ring_pages = size_t(ctx.params.get_int("ring_pages"));
    const FaultWait wait = by_name(kFaultWaitNames, ctx.params.get_string("fault_wait"));
    const FaultSched sched = by_name(kFaultSchedNames, ctx.params.get_string("fault_sched"));

    const UffdFeatures& offered = uffd_features();
    const bool wp_unpopulated = ctx.params.get_bool("wp_unpopulated") && offered.has(UFFD_FEATURE_WP_UNPOPULATED);
    uint64_t features = UFFD_FEATURE_PAGEFAULT_FLAG_WP;
    if (wp_unpopulated) features |= UFFD_FEATURE_WP_UNPOPULATED;
    ctx.metrics.note("wp_unpopulated", wp_unpopulated ? "1" : "0");
    ctx.metrics.note("fault_wait", ctx.params.get_string("fault_wait"));

    // Everything that can be prepared while the writers run is, to keep the pause short.
    ClaimBitmap claims(pages);
    CopyAsideRing ring(ring_pages);
    const Staging staging_mode = by_name(kStagingNames, ctx.params.get_string("staging"));
    std::unique_ptr<PrefaultedBuffer> staging;
    if (staging_mode == Staging::kSeparate) staging = std::make_unique<PrefaultedBuffer>(chunk_pages * kPageSize);
    std::vector<uint64_t> chunk_won((chunk_pages + 63) / 64 + 1);
    ctx.metrics.extra_rss_bytes = claims.bytes() + ring.bytes() + (staging ? staging->bytes() : 0);

    // Declaration order is the clean-up order reversed: the fault thread stops first, then the
    // whole range is released (waking any blocked writer) and unregistered, the fd closed, and
    // the writers resumed last if still paused.
    PauseGuard pause(ctx.control);
    Uffd uffd(features, /*nonblocking=*/wait != FaultWait::kRead);
    if (!wp_unpopulated) prefault_by_reading(region);
    WpRegistration registration(uffd, region);
    std::unique_ptr<StopSentinel> sentinel;
    if (wait == FaultWait::kRead) sentinel = std::make_unique<StopSentinel>(uffd);
    std::unique_ptr<FaultHandler> handler;
    if (wait != FaultWait::kSaver) {
      handler = std::make_unique<FaultHandler>(uffd, region, claims, ring, wait, sentinel.get(), sched);
      ctx.metrics.note("fault_sched", handler->sched_name());
    } else {
      ctx.metrics.note("fault_sched", "none");
    }
    std::unique_ptr<SaverFaultService> saver_service;
    if ((ctx.params.get_bool("saver_serves_faults") && wait != FaultWait::kRead) || wait == FaultWait::kSaver) {
      saver_service = std::make_unique<SaverFaultService>(uffd, region, claims);
      ctx.metrics.extra_rss_bytes += saver_service->bytes();
    }

    // Declared after the registration: on any exit it stops before the region is released.
    std::unique_ptr<ChunkReleaser> releaser;
    if (ctx.params.get_bool("release_thread"))
      releaser = std::make_unique<ChunkReleaser>(uffd, region, size_t(ctx.params.get_int("release_queue")));
    ctx.metrics.note("setup_s", std::to_string(ns_to_s(now_ns() - t_setup)));
    pause.pause();
    const uint64_t t0 = now_ns();
    registration.protect_all();
    ctx.metrics.freeze_s = ns_to_s(now_ns() - t0);
    ctx.control.consistency_point();
    pause.resume();

    ImageHeader header;
    header.region_pages = pages;
    header.consistency = ConsistencyPoint::kStart;
    header.strategy = name();
    ImageWriter writer(ctx.sink, header);
    if (staging_mode == Staging::kImage) {
      writer.reserve(chunk_pages);  // sizes the writer's buffer for a whole chunk now, not mid-snapshot
      ctx.metrics.extra_rss_bytes += writer.buffer_bytes();
    }
    auto save_aside = [&writer](uint64_t page, const uint8_t* data) { writer.save_page(page, data); };

    // Chunk boundaries at absolute page numbers that are multiples of chunk_pages, so that a
    // 512-page chunk covers exactly one huge page and un-protecting it does not split the PMD.
    const uint64_t base_page = reinterpret_cast<uint64_t>(region.base()) / kPageSize;
    size_t saver_pages = 0;
    size_t aside_pages = 0;
    uint64_t unprotect_ns = 0;  // the saver's un-protect ioctls: kernel work stop-copy does not have
    const bool saver_yields = ctx.params.get_bool("saver_yield");
    for (size_t first = 0; first < pages;) {
      if (handler) handler->rethrow_if_failed();
      // A writer woken on the saver's core would otherwise wait for the saver's time slice to end
      // (up to milliseconds); yielding between chunks bounds that wait to one chunk. Costs one
      // cheap system call per chunk when nothing else is runnable.
      if (saver_yields) sched_yield();
      if (saver_service) saver_pages += saver_service->serve(writer);
      aside_pages += ring.drain(save_aside);
      const size_t last = std::min(pages, size_t((base_page + first) / chunk_pages + 1) * chunk_pages - size_t(base_page));
      saver_pages += save_chunk(region, uffd, releaser.get(), claims, staging_mode, staging ? staging->data() : nullptr,
                                chunk_won, first, last, writer, unprotect_ns);
      first = last;
    }
    // Every page is claimed now; wait for the pages the fault thread took to come out of the ring.
    if (handler) handler->end_idle_policy();
    while (saver_pages + aside_pages < pages) {
      if (handler) handler->rethrow_if_failed();
      if (saver_service) saver_pages += saver_service->serve(writer);
      const size_t n = ring.drain(save_aside);
      aside_pages += n;
      if (n == 0) sched_yield();
    }

    if (releaser) {
      releaser->drain();  // every chunk un-protected before the registration goes
      unprotect_ns += releaser->busy_ns();
      releaser->stop();
    }
    if (handler) {
      handler->stop();
      handler->rethrow_if_failed();
    }
    const uint64_t t_release = now_ns();
    registration.release(/*all_released=*/true);
    ctx.metrics.note("release_s", std::to_string(ns_to_s(now_ns() - t_release)));
    writer.finish();

    const uint64_t saver_faults = saver_service ? saver_service->messages() : 0;
    ctx.metrics.faults = (handler ? handler->fault_messages() : 0) + saver_faults;
    ctx.metrics.passes = 1;
    ctx.metrics.note("fault_copies", std::to_string(handler ? handler->pages_copied() : 0));
    ctx.metrics.note("ring_full_waits", std::to_string(handler ? handler->ring_full_waits() : 0));
    ctx.metrics.note("saver_faults", std::to_string(saver_faults));
    ctx.metrics.note("unprotect_s", std::to_string(ns_to_s(unprotect_ns)));
    ctx.metrics.image = writer.stats();
  }

 private:
  // Claims the unclaimed pages of [first, last) and saves them; a writer that faults on a claimed
  // page waits until its run is un-protected. Staging::kImage first makes room in the image
  // writer's buffer, so saving the chunk is a copy into memory and never a sink write: a writer waits
  // for one chunk's copy, never for the sink. kSeparate copies the runs into the staging buffer,
  // un-protects them, then saves them (the same guarantee with one more copy). kNone saves each run
  // and un-protects it after (a flush to a slow sink may happen while a writer waits). Returns the
  // number of pages this call saved.
  static size_t save_chunk(const Region& region, Uffd& uffd, ChunkReleaser* releaser, ClaimBitmap& claims,
                           Staging mode, uint8_t* staging,
                           std::vector<uint64_t>& won, size_t first, size_t last, ImageWriter& writer,
                           uint64_t& unprotect_ns) {
    if (mode == Staging::kImage) writer.reserve(last - first);  // before any page is claimed
    // Claim word by word (one atomic per 64 pages); remember the won bits relative to `first`.
    std::fill(won.begin(), won.end(), 0);
    for (size_t p = first; p < last;) {
      const size_t lo = p % 64;
      const size_t width = std::min<size_t>(64 - lo, last - p);
      const uint64_t mask = (width == 64 ? ~0ull : ((1ull << width) - 1) << lo);
      for (uint64_t bits = claims.claim_mask(p / 64, mask); bits; bits &= bits - 1) {
        const size_t rel = (p - lo) + size_t(__builtin_ctzll(bits)) - first;
        won[rel / 64] |= 1ull << (rel % 64);
      }
      p += width;
    }
    // Calls fn(rel, count) for each run of won pages.
    const size_t n = last - first;
    auto for_each_run = [&won, n](auto&& fn) {
      for (size_t rel = 0; rel < n;) {
        if (!((won[rel / 64] >> (rel % 64)) & 1)) {
          ++rel;
          continue;
        }
        size_t end = rel + 1;
        while (end < n && ((won[end / 64] >> (end % 64)) & 1)) ++end;
        fn(rel, end - rel);
        rel = end;
      }
    };
    auto release = [&](size_t rel, size_t count) {
      if (releaser && releaser->try_push(first + rel, count)) return;
      const uint64_t t0 = now_ns();
      uffd.writeprotect(region.page(first + rel), count * kPageSize, false, true);
      unprotect_ns += now_ns() - t0;
    };
    size_t saved = 0;
    switch (mode) {
      case Staging::kImage:
        for_each_run([&](size_t rel, size_t count) {
          writer.save_pages(first + rel, region.page(first + rel), count);
          saved += count;
        });
        for_each_run(release);
        break;
      case Staging::kSeparate:
        for_each_run([&](size_t rel, size_t count) {
          std::memcpy(staging + rel * kPageSize, region.page(first + rel), count * kPageSize);
        });
        for_each_run(release);
        for_each_run([&](size_t rel, size_t count) {
          writer.save_pages(first + rel, staging + rel * kPageSize, count);
          saved += count;
        });
        break;
      case Staging::kNone:
        for_each_run([&](size_t rel, size_t count) {
          writer.save_pages(first + rel, region.page(first + rel), count);
          release(rel, count);
          saved += count;
        });
        break;
    }
    return saved;
  }
};

}  // namespace

std::unique_ptr<Strategy> make_uffd_wp_strategy() { return std::make_unique<UffdWpStrategy>(); }

}  // namespace snap
