// Asynchronous write-protect (UFFD_FEATURE_WP_ASYNC): the cost of a first write to a protected page,
// which the kernel resolves itself, and PAGEMAP_SCAN collect-and-rearm over a region with 0 %, 1 %
// and 50 % of its pages written (the per-pass cost of the uffd-async dirty tracker).
#include <linux/userfaultfd.h>

#include <exception>
#include <string>
#include <vector>

#include "bench/bench_support.h"
#include "core/clock.h"
#include "core/linux_compat.h"
#include "core/units.h"

namespace snapbench_micro {

namespace {

using snap::kPageSize;

constexpr uint64_t kRegionBytes = 256 * kMiB;

bool require_pagemap_scan(benchmark::State& state) {
  std::string reason;
  if (snap::pagemap_scan_available(&reason)) return true;
  state.SkipWithError(reason.c_str());
  return false;
}

inline void store_word(uint8_t* page, uint64_t value) {
  *reinterpret_cast<volatile uint64_t*>(page) = value;
}

// Each iteration writes one word to each of the next 64 protected pages (64 first writes); the
// region is protected again, untimed, when the walk reaches its end.
void BM_AsyncWpFirstWrite(benchmark::State& state) try {
  if (!require_uffd(state, UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_ASYNC, "WP_ASYNC")) return;
  constexpr size_t kPagesPerIteration = 64;
  snap::Region& region = cached_region(kRegionBytes);
  WpRange wp(region.base(), region.bytes(), UFFD_FEATURE_WP_ASYNC, true);
  wp.protect_all();
  size_t next = 0;
  uint64_t timed_ns = 0, writes = 0;
  for (auto _ : state) {
    if (next + kPagesPerIteration > region.pages()) {
      wp.protect_all();
      next = 0;
    }
    const uint64_t t0 = snap::now_ns();
    for (size_t i = 0; i < kPagesPerIteration; ++i) store_word(region.page(next + i), t0 + i);
    const uint64_t t1 = snap::now_ns();
    state.SetIterationTime(snap::ns_to_s(t1 - t0));
    timed_ns += t1 - t0;
    writes += kPagesPerIteration;
    next += kPagesPerIteration;
  }
  state.SetItemsProcessed(int64_t(writes));
  if (writes) set_counter(state, "ns_per_write", double(timed_ns) / double(writes));
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK(BM_AsyncWpFirstWrite)->UseManualTime();

uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Each iteration dirties the chosen pages (scattered, state.range(0) per mille of the region;
// untimed), then times one collect_written(rearm=true) over the whole region and checks it found
// exactly the dirtied pages.
void BM_PagemapScanRearm(benchmark::State& state) try {
  if (!require_uffd(state, UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_ASYNC, "WP_ASYNC")) return;
  if (!require_pagemap_scan(state)) return;
  const double dirty_fraction = double(state.range(0)) / 1000.0;
  snap::Region& region = cached_region(kRegionBytes);
  std::vector<size_t> dirty;
  const uint64_t threshold = uint64_t(dirty_fraction * 18446744073709551615.0);
  for (size_t i = 0; i < region.pages(); ++i)
    if (dirty_fraction > 0 && mix(i) < threshold) dirty.push_back(i);

  WpRange wp(region.base(), region.bytes(), UFFD_FEATURE_WP_ASYNC, true);
  wp.protect_all();
  snap::PagemapScanner scanner;
  std::vector<uint64_t> found;
  found.reserve(region.pages());
  uint64_t timed_ns = 0, scanned = 0, value = 1;
  for (auto _ : state) {
    for (size_t page : dirty) store_word(region.page(page), ++value);
    found.clear();
    const uint64_t t0 = snap::now_ns();
    scanner.collect_written(region.base(), region.base(), region.base() + region.bytes(), true, found);
    const uint64_t t1 = snap::now_ns();
    state.SetIterationTime(snap::ns_to_s(t1 - t0));
    timed_ns += t1 - t0;
    scanned += region.bytes();
    if (found.size() != dirty.size()) {
      const std::string why = "PAGEMAP_SCAN found " + std::to_string(found.size()) + " written pages, " +
                              std::to_string(dirty.size()) + " were written";
      state.SkipWithError(why.c_str());
      break;
    }
  }
  set_ms_per_gib(state, timed_ns, scanned);
  set_counter(state, "dirty_pages", double(dirty.size()));
  if (!dirty.empty() && state.iterations())
    set_counter(state, "ns_per_dirty_page", double(timed_ns) / double(state.iterations()) / double(dirty.size()));
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK(BM_PagemapScanRearm)->ArgName("dirty_permille")->Arg(0)->Arg(10)->Arg(500)->Unit(benchmark::kMicrosecond)->UseManualTime();

}  // namespace

}  // namespace snapbench_micro
