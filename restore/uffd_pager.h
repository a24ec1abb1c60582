// The userfaultfd side shared by the lazy restore strategies: the region registered for MISSING
// faults, a handler thread that answers each fault from the image (UFFDIO_COPY, UFFDIO_ZEROPAGE for
// zero pages), and range copies for a prefetcher or a background thread.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/scoped.h"
#include "core/unit.h"
#include "restore/page_source.h"
#include "restore/restore.h"

namespace snap {

// userfaultfd with MISSING mode on anonymous memory, or the reason it cannot be used here.
Support uffd_missing_support();

class UffdPager {
 public:
  // Registers ctx's region and starts the handler. `fail_after` > 0 makes the handler die after that
  // many faults (the test of a dead handler); `record` keeps the faulted pages in order.
  UffdPager(RestoreContext& ctx, uint64_t fail_after, bool record);
  ~UffdPager();  // stop()
  UffdPager(const UffdPager&) = delete;
  UffdPager& operator=(const UffdPager&) = delete;

  // Copies every page of [first, first + count) not yet resident, in ranges of up to `batch` pages
  // (one file read and one UFFDIO_COPY or UFFDIO_ZEROPAGE each). Safe beside the handler: a page it
  // reaches first is skipped. Returns early (false) once stop() began or the handler died.
  bool copy_range(uint64_t first, uint64_t count, uint64_t batch);
  std::string failure() const;
  // Ends the handler, unregisters the region (waking any thread still waiting in a fault: it then
  // gets a fresh zero page, the run is already failing) and closes the fd. Idempotent.
  void stop();
  bool resident(uint64_t page) const {
    return (done_[page / 64].load(std::memory_order_acquire) >> (page % 64)) & 1;
  }
  std::vector<uint64_t> recorded() const;
  uint64_t bitmap_bytes() const { return done_.size() * sizeof(uint64_t); }

 private:
  void handle();  // the handler thread
  void serve_fault(uint64_t page, PageSource& source, uint8_t* buf);
  // One ioctl over pages [first, first + count) of one kind; returns pages placed by this call
  // (a page already present stops the kernel early: it is skipped).
  void place(uint64_t first, uint64_t count, const uint8_t* data);
  void mark(uint64_t first, uint64_t count);
  void set_failure(const std::string& why);

  RestoreContext& ctx_;
  UniqueFd uffd_, stop_event_;
  bool registered_ = false;
  std::vector<std::atomic<uint64_t>> done_;
  std::atomic<uint64_t> placed_{0};
  std::atomic<bool> stopping_{false}, dead_{false};
  mutable std::mutex failure_mu_;
  std::string failure_;
  uint64_t fail_after_;
  bool record_;
  std::vector<uint64_t> recorded_;  // handler thread only, read after stop()
  std::thread handler_;
  PageSource copier_source_;        // copy_range's (one caller at a time)
  std::vector<uint8_t> copier_buf_;
};

}  // namespace snap
