// A synchronous userfaultfd write-protect fault round trip as the writer sees it, for several ways
// of servicing it: a poll() thread, a blocking read() thread, a busy-polling thread, each with and
// without copying the page aside before un-protecting it (mode 0 un-protect also wakes the writer).
#include <linux/userfaultfd.h>

#include <exception>
#include <string>

#include "bench/bench_support.h"
#include "core/clock.h"
#include "core/histogram.h"
#include "core/units.h"
#include "core/wp_fault_server.h"

namespace snapbench_micro {

namespace {

using snap::FaultService;
using snap::kPageSize;

constexpr uint64_t kRegionBytes = 256 * kMiB;

// Each iteration is one write to the next protected page, timed around the store; the region is
// protected again (untimed) when the walk reaches its last page, which is kept as the spare.
void BM_WpFaultRoundTrip(benchmark::State& state, FaultService service, bool copy_aside) try {
  if (!require_uffd(state, UFFD_FEATURE_PAGEFAULT_FLAG_WP, "PAGEFAULT_FLAG_WP")) return;
  snap::Region& region = cached_region(kRegionBytes);
  const size_t spare = region.pages() - 1;
  WpRange wp(region.base(), region.bytes(), 0, service != FaultService::kRead);
  wp.protect_all();
  snap::Histogram latency;
  {
    snap::WpFaultServer server(wp.uffd(), region.base(), region.bytes(), region.page(spare), service, copy_aside);
    size_t next = 0;
    for (auto _ : state) {
      if (next == spare) {
        if (server.failed()) {  // nobody would serve the re-protected pages
          state.SkipWithError(server.error().c_str());
          break;
        }
        wp.protect_all();
        next = 0;
      }
      const uint64_t t0 = snap::now_ns();
      snap::store_word_fenced(region.page(next), t0);
      const uint64_t t1 = snap::now_ns();
      state.SetIterationTime(snap::ns_to_s(t1 - t0));
      latency.record(t1 - t0);
      ++next;
    }
    server.finish();  // the last fault, on the spare page, ends the server
    if (!server.error().empty()) {
      state.SkipWithError(server.error().c_str());
      return;
    }
    if (server.served() < uint64_t(state.iterations())) {
      const std::string why = "only " + std::to_string(server.served()) + " faults served for " +
                              std::to_string(state.iterations()) + " writes: the pages were not write-protected";
      state.SkipWithError(why.c_str());
      return;
    }
  }
  set_fault_latency_counters(state, latency);
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK_CAPTURE(BM_WpFaultRoundTrip, poll, FaultService::kPoll, false)->UseManualTime();
BENCHMARK_CAPTURE(BM_WpFaultRoundTrip, read, FaultService::kRead, false)->UseManualTime();
BENCHMARK_CAPTURE(BM_WpFaultRoundTrip, busy_poll, FaultService::kBusyPoll, false)->UseManualTime();
BENCHMARK_CAPTURE(BM_WpFaultRoundTrip, poll_copy_aside, FaultService::kPoll, true)->UseManualTime();
BENCHMARK_CAPTURE(BM_WpFaultRoundTrip, read_copy_aside, FaultService::kRead, true)->UseManualTime();
BENCHMARK_CAPTURE(BM_WpFaultRoundTrip, busy_poll_copy_aside, FaultService::kBusyPoll, true)->UseManualTime();

}  // namespace

}  // namespace snapbench_micro
