// uffd-wp's chunk release: the region's write-protect registration, the saver's claim-copy-release
// of one chunk, and the optional thread that un-protects saved chunks.
#pragma once
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/image.h"
#include "core/region.h"
#include "core/uffd.h"
#include "strategies/uffd_wp/choices.h"
#include "strategies/uffd_wp/page_state.h"

namespace snap::uffd_wp {

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
  // `released` (optional) gets the bits of every range once it is un-protected.
  ChunkReleaser(Uffd& uffd, const Region& region, size_t max_queued, ClaimBitmap* released = nullptr)
      : uffd_(uffd), region_(region), max_queued_(max_queued), released_(released) {
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
        if (released_) released_->mark_range(r.first, r.count);
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
  ClaimBitmap* const released_;
  std::mutex mutex_;
  std::condition_variable wake_, idle_;
  std::deque<Range> queue_;
  bool busy_ = false, stopping_ = false;
  std::exception_ptr error_;
  std::atomic<uint64_t> busy_ns_{0};
  std::thread thread_;
};

// Registers the region in write-protect mode; on destruction (every exit path) releases the
// protection of the whole range, waking any blocked writer, and unregisters.
class WpRegistration {
 public:
  WpRegistration(Uffd& uffd, Region& region)
      : uffd_(uffd), region_(region), unregister_releases_(unregister_clears_wp()) {
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
  // arming one, is then skipped. Any other exit un-protects everything before unregistering, unless
  // this kernel's unregister does that itself (unregister_clears_wp: one walk instead of two; it
  // wakes every blocked writer too).
  void release(bool all_released = false) noexcept {
    if (!registered_) return;
    registered_ = false;
    if (!all_released && !unregister_releases_) {
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
  const bool unregister_releases_;
  bool registered_ = false;
};

// Claims the unclaimed pages of [first, last) and saves them; a writer that faults on a claimed
// page waits until its run is un-protected. Staging::kImage first makes room in the image
// writer's buffer, so saving the chunk is a copy into memory and never a sink write: a writer waits
// for one chunk's copy, never for the sink. kSeparate copies the runs into the staging buffer,
// un-protects them, then saves them (the same guarantee with one more copy). kNone saves each run
// and un-protects it after (a flush to a slow sink may happen while a writer waits). Returns the
// number of pages this call saved. `released` (optional) has the bits of the pages already
// un-protected, and gets those of each run once it is: a sigbus handler waits on them for a page the
// saver claimed, and the saver releases a chunk in one ioctl when its other pages are all released.
// With `lazy` (release=lazy) the saved pages stay protected: the saver marks them saved in it and
// un-protects only those a writer is already waiting on (see LazyHandoff).
size_t save_chunk(const Region& region, Uffd& uffd, ChunkReleaser* releaser, ClaimBitmap& claims, Staging mode,
                  uint8_t* staging, std::vector<uint64_t>& won, size_t first, size_t last, ImageWriter& writer,
                  uint64_t& unprotect_ns, ClaimBitmap* released = nullptr, LazyHandoff* lazy = nullptr);

}  // namespace snap::uffd_wp
