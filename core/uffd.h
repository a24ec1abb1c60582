// Thin RAII wrappers over userfaultfd (write-protect mode) and the PAGEMAP_SCAN ioctl.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace snap {

// Features the kernel offers, probed once on a throwaway fd (UFFDIO_API may be called once per fd).
struct UffdFeatures {
  bool available = false;  // userfaultfd could be opened at all
  std::string reason;      // why not, when !available
  uint64_t features = 0;   // UFFD_FEATURE_* bits offered
  bool has(uint64_t bit) const { return (features & bit) == bit; }
};
const UffdFeatures& uffd_features();  // cached after the first call

// True when UFFDIO_UNREGISTER of a write-protect range also clears its pages' protection (Linux 6.0+,
// "mm/uffd: reset write protection when unregister with wp-mode"), so that one walk of the page
// tables releases a region instead of an un-protect walk and then an unregister walk. Probed once on
// one page (pagemap's uffd-wp bit after unregistering); false when the probe cannot tell.
bool unregister_clears_wp() noexcept;

// True when ioctl(PAGEMAP_SCAN) exists on /proc/self/pagemap (Linux 6.7+), with a reason otherwise.
bool pagemap_scan_available(std::string* reason);

// An open userfaultfd with the requested features, closed (and every range unregistered by the
// kernel) on destruction.
class Uffd {
 public:
  // Opens the fd (O_CLOEXEC; O_NONBLOCK if `nonblocking`) and negotiates `features`; throws
  // runtime_error saying which feature is missing.
  Uffd(uint64_t features, bool nonblocking);
  ~Uffd();
  Uffd(const Uffd&) = delete;
  Uffd& operator=(const Uffd&) = delete;
  int fd() const { return fd_; }

  void register_wp(void* addr, size_t len);    // UFFDIO_REGISTER_MODE_WP
  void unregister(void* addr, size_t len);
  // UFFDIO_WRITEPROTECT: protect (wp=true) or release; `wake` wakes threads blocked on the range.
  void writeprotect(void* addr, size_t len, bool wp, bool wake = true);

 private:
  int fd_ = -1;
};

// Collects written pages of [start, end) with PAGEMAP_SCAN; with `rearm` the kernel write-protects
// them again atomically (PM_SCAN_WP_MATCHING). Uses the fast-path masks (category and return mask =
// PAGE_IS_WRITTEN). Appends page indices relative to `base` to `out`, paginating with walk_end.
class PagemapScanner {
 public:
  PagemapScanner();  // opens /proc/self/pagemap
  ~PagemapScanner();
  PagemapScanner(const PagemapScanner&) = delete;
  PagemapScanner& operator=(const PagemapScanner&) = delete;
  void collect_written(const void* base, const void* start, const void* end, bool rearm,
                       std::vector<uint64_t>& out);
  size_t buffer_bytes() const { return vec_.size(); }  // the reused page_region buffer

 private:
  int fd_ = -1;
  std::vector<uint8_t> vec_;  // page_region buffer, reused
};

}  // namespace snap
