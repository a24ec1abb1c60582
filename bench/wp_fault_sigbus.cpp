// The in-thread write-protect fault round trip (uffd-wp fault_wait=sigbus): UFFD_FEATURE_SIGBUS sends
// the fault to the writer as SIGBUS, and the strategy's own handler copies the page aside into the
// ring, un-protects it and returns; no second thread is woken. Reported next to BM_WpFaultRoundTrip.
#include <linux/userfaultfd.h>

#include <exception>
#include <memory>
#include <string>

#include "bench/bench_support.h"
#include "core/clock.h"
#include "core/histogram.h"
#include "core/units.h"
#include "strategies/uffd_wp/page_state.h"
#include "strategies/uffd_wp/sigbus.h"

namespace snapbench_micro {

namespace {

using snap::kPageSize;

constexpr uint64_t kRegionBytes = 256 * kMiB;
constexpr size_t kCopyRingPages = 64;

inline void store_word(uint8_t* page, uint64_t value) {
  asm volatile("" ::: "memory");
  *reinterpret_cast<volatile uint64_t*>(page) = value;
  asm volatile("" ::: "memory");
}

// One handler's state: fresh claim and release maps each time the region is protected again.
struct Armed {
  snap::uffd_wp::ClaimBitmap claims, released;
  snap::uffd_wp::SigbusFaultPath path;
  Armed(int fd, const snap::Region& region, snap::uffd_wp::CopyAsideRing& ring)
      : claims(region.pages()), released(region.pages()), path(fd, region, claims, released, ring) {}
};

// Each iteration is one write to the next protected page, timed around the store (the SIGBUS, the
// handler's claim, copy and one-page un-protect, the return and the retried store); the ring is
// drained after the timed store, as the saver would. The region is protected again (untimed) when
// the walk reaches its end.
void BM_WpFaultInThread(benchmark::State& state) try {
  if (!require_uffd(state, UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_SIGBUS, "SIGBUS")) return;
  snap::Region& region = cached_region(kRegionBytes);
  WpRange wp(region.base(), region.bytes(), UFFD_FEATURE_SIGBUS, true);
  snap::uffd_wp::CopyAsideRing ring(kCopyRingPages);
  wp.protect_all();
  auto armed = std::make_unique<Armed>(wp.uffd().fd(), region, ring);
  snap::Histogram latency;
  uint64_t copies = 0;
  size_t next = 0;
  for (auto _ : state) {
    if (next == region.pages()) {
      copies += armed->path.counters().copies;
      armed.reset();
      wp.protect_all();
      armed = std::make_unique<Armed>(wp.uffd().fd(), region, ring);
      next = 0;
    }
    const uint64_t t0 = snap::now_ns();
    store_word(region.page(next), t0);
    const uint64_t t1 = snap::now_ns();
    state.SetIterationTime(snap::ns_to_s(t1 - t0));
    latency.record(t1 - t0);
    ring.drain([](uint64_t, const uint8_t*) {});
    ++next;
  }
  copies += armed->path.counters().copies;
  armed.reset();
  if (copies < uint64_t(state.iterations())) {
    const std::string why = "only " + std::to_string(copies) + " pages copied for " +
                            std::to_string(state.iterations()) + " writes: the pages were not write-protected";
    state.SkipWithError(why.c_str());
    return;
  }
  set_fault_latency_counters(state, latency);
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
// Named as a fault_wait variant of the thread round trips, so that filters and the report find it there.
BENCHMARK(BM_WpFaultInThread)->Name("BM_WpFaultRoundTrip/sigbus_copy_aside")->UseManualTime();

}  // namespace

}  // namespace snapbench_micro
