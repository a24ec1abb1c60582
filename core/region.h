// The memory region under test: an anonymous mapping, partly populated, optionally THP or NUMA-bound.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/units.h"

namespace snap {

struct RegionOptions {
  uint64_t bytes = 256ull << 20;  // rounded up to whole pages
  double populate = 1.0;          // fraction of pages filled with non-zero content, 0..1
  bool thp = false;               // madvise(MADV_HUGEPAGE) if true, MADV_NOHUGEPAGE if false
  int numa_node = -1;             // -1: no binding
  uint64_t seed = 1;              // decides which pages are populated and their content
  // A memfd mapped MAP_SHARED instead of anonymous memory, so another process (QEMU) can map the
  // same pages (Region::fd()).
  bool shared = false;
};

// The content page `index` of a region built with `opts` has before any write: fills `out` (4 KiB)
// and returns true for a populated page; returns false (out all zero) for a never-touched one.
bool region_initial_page(const RegionOptions& opts, size_t index, void* out);

class Region {
 public:
  explicit Region(const RegionOptions& opts);  // throws UsageError (bad options) or runtime_error
  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  uint8_t* base() const { return base_; }
  size_t bytes() const { return pages_ * kPageSize; }
  size_t pages() const { return pages_; }
  uint8_t* page(size_t index) const { return base_ + index * kPageSize; }
  const RegionOptions& options() const { return opts_; }
  // Pages filled at set-up (the non-zero part of RSS before the writers start).
  size_t populated_pages() const { return populated_; }
  // Pages whose content is non-zero right now (scans the region; for reports, not hot paths).
  size_t count_nonzero_pages() const;
  // The memfd behind a shared region (-1 otherwise); it stays owned by the Region.
  int fd() const { return fd_; }

 private:
  RegionOptions opts_;
  uint8_t* base_ = nullptr;
  size_t pages_ = 0;
  size_t populated_ = 0;
  int fd_ = -1;
};

// True when the 4 KiB page at p is all zero bytes.
bool page_is_zero(const void* p);

}  // namespace snap
