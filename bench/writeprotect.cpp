// UFFDIO_WRITEPROTECT costs: arming a whole populated region, and un-protecting it in chunks of
// 1, 16 and 512 pages (what a saver pays per chunk it releases).
#include <linux/userfaultfd.h>

#include <exception>

#include "bench/bench_support.h"
#include "core/clock.h"
#include "core/units.h"

namespace snapbench_micro {

namespace {

using snap::kPageSize;

constexpr uint64_t kRegionBytes = 256 * kMiB;

// Write-protecting every (populated) page of 256 MiB in one ioctl; releasing it again is untimed.
void BM_WriteProtectArm(benchmark::State& state) try {
  if (!require_uffd(state, UFFD_FEATURE_PAGEFAULT_FLAG_WP, "PAGEFAULT_FLAG_WP")) return;
  snap::Region& region = cached_region(kRegionBytes);
  WpRange wp(region.base(), region.bytes(), 0, true);
  uint64_t timed_ns = 0;
  for (auto _ : state) {
    const uint64_t t0 = snap::now_ns();
    wp.protect_all();
    const uint64_t t1 = snap::now_ns();
    state.SetIterationTime(snap::ns_to_s(t1 - t0));
    timed_ns += t1 - t0;
    wp.release_all();
  }
  set_ms_per_gib(state, timed_ns, state.iterations() * region.bytes());
  set_counter(state, "region_MiB", double(region.bytes()) / double(kMiB));
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK(BM_WriteProtectArm)->Unit(benchmark::kMillisecond)->UseManualTime();

// Releases 512 pages per iteration in chunks of state.range(0) pages (one ioctl per chunk), walking
// the protected region; when the walk reaches the end the region is protected again, untimed.
void BM_Unprotect(benchmark::State& state) try {
  if (!require_uffd(state, UFFD_FEATURE_PAGEFAULT_FLAG_WP, "PAGEFAULT_FLAG_WP")) return;
  const size_t chunk = size_t(state.range(0));
  constexpr size_t kPagesPerIteration = 512;
  snap::Region& region = cached_region(kRegionBytes);
  WpRange wp(region.base(), region.bytes(), 0, true);
  wp.protect_all();
  size_t next = 0;
  uint64_t timed_ns = 0, pages = 0;
  for (auto _ : state) {
    if (next + kPagesPerIteration > region.pages()) {
      wp.protect_all();
      next = 0;
    }
    const uint64_t t0 = snap::now_ns();
    for (size_t done = 0; done < kPagesPerIteration; done += chunk)
      wp.uffd().writeprotect(region.page(next + done), chunk * kPageSize, false);
    const uint64_t t1 = snap::now_ns();
    state.SetIterationTime(snap::ns_to_s(t1 - t0));
    timed_ns += t1 - t0;
    pages += kPagesPerIteration;
    next += kPagesPerIteration;
  }
  state.SetItemsProcessed(int64_t(pages));
  if (pages) set_counter(state, "ns_per_page", double(timed_ns) / double(pages));
  if (pages) set_counter(state, "ns_per_ioctl", double(timed_ns) / double(pages / chunk));
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK(BM_Unprotect)->ArgName("chunk_pages")->Arg(1)->Arg(16)->Arg(512)->UseManualTime();

}  // namespace

}  // namespace snapbench_micro
