// The bare writer loop: the writers' stores (stamp of sequence number and page index at a moving
// offset, pages chosen by the `uniform` pattern) with no pacing, no control word and no timing, as
// the ceiling for the harness's `none --rate max` writer throughput.
#include <exception>
#include <memory>

#include "bench/bench_support.h"
#include "core/units.h"
#include "workloads/workload.h"

namespace snapbench_micro {

namespace {

using snap::kPageSize;

// Argument: region MiB. Each thread is one writer (writer index = thread index), as in the harness;
// items_per_second is pages written per second over all threads.
void BM_BareWriterLoop(benchmark::State& state) try {
  const uint64_t bytes = uint64_t(state.range(0)) * kMiB;
  snap::Region& region = cached_region(bytes);
  std::unique_ptr<snap::AccessPattern> pattern =
      snap::make_pattern("uniform", region.pages(), 1, state.thread_index(), state.threads());
  uint8_t* const base = region.base();
  constexpr uint64_t kWritesPerIteration = 4096;
  uint64_t seq = uint64_t(state.thread_index());
  for (auto _ : state) {
    for (uint64_t i = 0; i < kWritesPerIteration; ++i) {
      seq += 256;
      const uint64_t page = pattern->next();
      uint8_t* p = base + page * kPageSize + snap::stamp_offset(seq);
      __atomic_store_n(reinterpret_cast<uint64_t*>(p), seq, __ATOMIC_RELAXED);
      __atomic_store_n(reinterpret_cast<uint64_t*>(p + 8), page, __ATOMIC_RELAXED);
    }
  }
  state.SetItemsProcessed(int64_t(state.iterations() * kWritesPerIteration));
  state.counters["pages_per_s"] =
      benchmark::Counter(double(state.iterations() * kWritesPerIteration), benchmark::Counter::kIsRate);
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
// 256 MiB: the size BM_KvmGuestWriteThroughput's guest writes.
BENCHMARK(BM_BareWriterLoop)->ArgName("MiB")->Arg(2048)->Arg(256)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace

}  // namespace snapbench_micro
