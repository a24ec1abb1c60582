// mprotect + SIGSEGV first-write cost: the page is read-only, the write traps, a handler makes the
// page writable again and the write is retried (the mprotect dirty tracker's per-page price).
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <string>

#include "bench/bench_support.h"
#include "core/clock.h"
#include "core/units.h"
#include "core/write_enabling_segv.h"

namespace snapbench_micro {

namespace {

using snap::kPageSize;

constexpr uint64_t kRegionBytes = 256 * kMiB;

// Each iteration writes one word to each of the next 64 read-only pages; the region is made
// read-only again, untimed, when the walk reaches its end. Pages are touched in order, so each newly
// writable page merges into its neighbour's VMA: the best case (scattered writes split VMAs).
void BM_MprotectFirstWrite(benchmark::State& state) try {
  constexpr size_t kPagesPerIteration = 64;
  snap::Region& region = cached_region(kRegionBytes);
  snap::WriteEnablingSegvHandler handler(region.base(), region.bytes());
  const uint64_t handled_before = snap::WriteEnablingSegvHandler::handled();
  size_t next = region.pages();  // forces the first protect
  uint64_t timed_ns = 0, writes = 0;
  bool protect_failed = false;
  for (auto _ : state) {
    if (next + kPagesPerIteration > region.pages()) {
      if (mprotect(region.base(), region.bytes(), PROT_READ) != 0) {
        protect_failed = true;
        state.SkipWithError((std::string("mprotect(PROT_READ): ") + std::strerror(errno)).c_str());
        break;
      }
      next = 0;
    }
    const uint64_t t0 = snap::now_ns();
    for (size_t i = 0; i < kPagesPerIteration; ++i)
      *reinterpret_cast<volatile uint64_t*>(region.page(next + i)) = t0 + i;
    const uint64_t t1 = snap::now_ns();
    state.SetIterationTime(snap::ns_to_s(t1 - t0));
    timed_ns += t1 - t0;
    writes += kPagesPerIteration;
    next += kPagesPerIteration;
  }
  mprotect(region.base(), region.bytes(), PROT_READ | PROT_WRITE);  // leave the cached region plain
  if (protect_failed) return;
  if (snap::WriteEnablingSegvHandler::handled() - handled_before != writes) {
    state.SkipWithError("the handler did not see one fault per first write");
    return;
  }
  state.SetItemsProcessed(int64_t(writes));
  if (writes) set_counter(state, "ns_per_write", double(timed_ns) / double(writes));
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK(BM_MprotectFirstWrite)->UseManualTime();

}  // namespace

}  // namespace snapbench_micro
