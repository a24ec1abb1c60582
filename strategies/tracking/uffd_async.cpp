// `uffd-async` dirty tracker: userfaultfd asynchronous write-protect plus PAGEMAP_SCAN get-and-reprotect.
#include <memory>
#include <string>

#include "core/linux_compat.h"
#include "core/uffd.h"
#include "core/units.h"
#include "strategies/tracking/tracker.h"

namespace snap {

namespace {

class UffdAsyncTracker final : public DirtyTracker {
 public:
  ~UffdAsyncTracker() override {
    try {
      stop();
    } catch (...) {
      // Closing the fd (done by stop() even when an ioctl fails) already released every protection.
    }
  }

  using DirtyTracker::DirtyTracker;

  Support probe() const override {
    const UffdFeatures& f = uffd_features();
    if (!f.available) return Support::no(f.reason);
    if (!f.has(UFFD_FEATURE_WP_ASYNC))
      return Support::no("userfaultfd lacks UFFD_FEATURE_WP_ASYNC (needs Linux 6.7+)");
    if (!f.has(UFFD_FEATURE_PAGEFAULT_FLAG_WP))
      return Support::no("userfaultfd lacks UFFD_FEATURE_PAGEFAULT_FLAG_WP (write-protect mode)");
    std::string why;
    if (!pagemap_scan_available(&why)) return Support::no(why);
    return Support::yes();
  }

  void start(Region& region, WorkloadControl&, const ParamValues&) override {
    stop();
    base_ = region.base();
    bytes_ = region.bytes();
    const UffdFeatures& f = uffd_features();
    uint64_t want = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_PAGEFAULT_FLAG_WP;
    // With WP_UNPOPULATED the kernel puts markers on never-touched pages, so their first write is
    // seen. Without it, write-protect silently skips them: map the zero page under each first (a
    // read fault, as QEMU does) so there is a PTE to protect.
    const bool markers = f.has(UFFD_FEATURE_WP_UNPOPULATED);
    if (markers) want |= UFFD_FEATURE_WP_UNPOPULATED;
    else
      for (size_t off = 0; off < bytes_; off += kPageSize) (void)*static_cast<volatile uint8_t*>(base_ + off);
    uffd_ = std::make_unique<Uffd>(want, /*nonblocking=*/true);
    scanner_ = std::make_unique<PagemapScanner>();
    uffd_->register_wp(base_, bytes_);
    registered_ = true;
    uffd_->writeprotect(base_, bytes_, true);
  }

  void collect(std::vector<uint64_t>& dirty) override {
    // The scan walks addresses upwards, so the indices come out sorted and unique.
    scanner_->collect_written(base_, base_, base_ + bytes_, /*rearm=*/true, dirty);
  }

  void stop() override {
    if (!uffd_) return;
    // Release the protection explicitly, then let unregister and close drop the rest even if one
    // step fails: the fd's close is what finally guarantees no protected page remains.
    std::unique_ptr<Uffd> uffd = std::move(uffd_);
    scanner_.reset();
    if (registered_) {
      registered_ = false;
      uffd->writeprotect(base_, bytes_, false);
      uffd->unregister(base_, bytes_);
    }
  }

  uint64_t memory_bytes() const override { return scanner_ ? scanner_->buffer_bytes() : 0; }

 private:
  uint8_t* base_ = nullptr;
  size_t bytes_ = 0;
  std::unique_ptr<Uffd> uffd_;
  std::unique_ptr<PagemapScanner> scanner_;
  bool registered_ = false;
};

}  // namespace

const TrackerEntry& uffd_async_tracker() {
  static const TrackerEntry entry{
      .name = "uffd-async",
      .help = "userfaultfd async write-protect; PAGEMAP_SCAN returns written pages and re-protects them atomically",
      .factory = make_tracker_of<UffdAsyncTracker>,
  };
  return entry;
}

}  // namespace snap
