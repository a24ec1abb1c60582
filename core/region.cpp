// Region set-up: mmap, THP advice, NUMA binding and deterministic population.
#include "core/region.h"

#include <numa.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include "core/error.h"
#include "core/run_stop.h"

namespace snap {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Whether page `index` is populated at set-up, and its content then (deterministic in the seed).
bool page_populated(const RegionOptions& opts, size_t index) {
  const uint64_t threshold = uint64_t(opts.populate * double(UINT64_MAX));
  return opts.populate >= 1.0 || (opts.populate > 0.0 && splitmix64(opts.seed * 0x100000001b3ull + index) < threshold);
}
void fill_page(const RegionOptions& opts, size_t index, void* out) {
  uint64_t* w = static_cast<uint64_t*>(out);
  const uint64_t x = splitmix64(opts.seed ^ (index * 0x9e3779b97f4a7c15ull));
  for (size_t k = 0; k < kPageSize / 8; ++k) w[k] = (x + k * 0x2545f4914f6cdd1dull) | 1;  // never zero
}

}  // namespace

bool region_initial_page(const RegionOptions& opts, size_t index, void* out) {
  if (!page_populated(opts, index)) {
    std::memset(out, 0, kPageSize);
    return false;
  }
  fill_page(opts, index, out);
  return true;
}

bool page_is_zero(const void* p) {
  const uint64_t* w = static_cast<const uint64_t*>(p);
  // OR-reduce in 8 lanes so the compiler vectorises it; early exit per 512 bytes.
  for (size_t blk = 0; blk < kPageSize / 8; blk += 64) {
    uint64_t acc = 0;
    for (size_t i = 0; i < 64; ++i) acc |= w[blk + i];
    if (acc) return false;
  }
  return true;
}

Region::Region(const RegionOptions& opts) : opts_(opts) {
  if (opts.bytes == 0) throw UsageError("--mem: the region must be at least one page");
  if (!(opts.populate >= 0.0 && opts.populate <= 1.0))
    throw UsageError("--populate: must be between 0 and 1");
  pages_ = (opts.bytes + kPageSize - 1) / kPageSize;
  if (opts.numa_node >= 0) {
    if (numa_available() < 0) throw UsageError("--numa-node: NUMA is not available on this machine");
    if (opts.numa_node > numa_max_node())
      throw UsageError("--numa-node: node " + std::to_string(opts.numa_node) +
                       " does not exist (max node " + std::to_string(numa_max_node()) + ")");
  }
  void* p;
  if (opts.shared) {
    fd_ = memfd_create("snapbench-region", MFD_CLOEXEC);
    if (fd_ < 0 || ftruncate(fd_, off_t(bytes())) != 0) {
      if (fd_ >= 0) close(fd_);
      throw_errno("memfd for the shared region (" + format_bytes(double(bytes())) + ")");
    }
    p = mmap(nullptr, bytes(), PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  } else {
    p = mmap(nullptr, bytes(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  }
  if (p == MAP_FAILED) {
    if (fd_ >= 0) close(fd_);
    throw_errno("mmap of the region (" + format_bytes(double(bytes())) + ")");
  }
  base_ = static_cast<uint8_t*>(p);
  // Explicit advice either way, so the system THP default ("always") does not decide for us.
  madvise(base_, bytes(), opts.thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  if (opts.numa_node >= 0) numa_tonode_memory(base_, bytes(), opts.numa_node);

  // Choose populated pages deterministically from the seed; fill each with non-zero words. A page
  // left out is never touched: it stays unpopulated.
  // Filling a large region takes long (11 us a page on the AMD machine): a stop request (SIGTERM, the
  // run's time limit) ends it within a few milliseconds, giving the memory back first.
  for (size_t i = 0; i < pages_; ++i) {
    if (i % 256 == 0 && run_stop_requested()) {
      munmap(base_, bytes());
      base_ = nullptr;
      if (fd_ >= 0) close(fd_);
      fd_ = -1;
      throw_if_run_stopped();
    }
    if (!page_populated(opts, i)) continue;
    fill_page(opts, i, page(i));
    ++populated_;
  }
}

Region::~Region() {
  if (base_) munmap(base_, bytes());
  if (fd_ >= 0) close(fd_);
}

size_t Region::count_nonzero_pages() const {
  size_t n = 0;
  for (size_t i = 0; i < pages_; ++i) n += !page_is_zero(page(i));
  return n;
}

}  // namespace snap
