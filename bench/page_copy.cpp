// Page copy bandwidth: the ceiling of one saver thread (memcpy into a ring), the same copy of memory
// left untouched for a while first, the first read of a just-populated region, and
// ImageWriter::save_pages into each sink kind (null, memory, file without fsync, exec pipe).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_support.h"
#include "core/clock.h"
#include "core/image.h"
#include "core/sink.h"
#include "core/units.h"

namespace snapbench_micro {

namespace {

using snap::kPageSize;

// The source is larger than this machine's reported last-level cache, so the figures are the
// DRAM-to-buffer bandwidth a saver sees on a real multi-GiB region.
constexpr uint64_t kSourceBytes = 1 * kGiB;
constexpr size_t kRingPages = 64;  // a saver's staging buffer: 256 KiB, stays in L2

// memcpy of every 4 KiB page of the region into a ring of kRingPages pages, one page at a time.
void BM_MemcpyPagesToRing(benchmark::State& state) try {
  snap::Region& region = cached_region(kSourceBytes);
  std::vector<uint8_t> ring(kRingPages * kPageSize);
  std::memset(ring.data(), 1, ring.size());
  for (auto _ : state) {
    copy_pages_into_ring(region, ring);
    benchmark::ClobberMemory();
  }
  benchmark::DoNotOptimize(ring.data());
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(region.bytes()));
  set_counter(state, "region_MiB", double(region.bytes()) / double(kMiB));
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK(BM_MemcpyPagesToRing)->Unit(benchmark::kMillisecond)->UseRealTime();

// The same copy of a 256 MiB region that nobody touched for idle_ms before the (timed) copy. A
// snapshot reads memory the writers may not have touched since the warm-up, and on some virtual
// machines (shadow paging, host-side page aging) the first access to a page after an idle spell
// costs a trip to the hypervisor: compare the idle_ms:0 line with the others.
void BM_MemcpyAfterIdle(benchmark::State& state) try {
  snap::Region& region = cached_region(256 * kMiB);
  const auto idle = std::chrono::milliseconds(state.range(0));
  std::vector<uint8_t> ring(kRingPages * kPageSize);
  std::memset(ring.data(), 1, ring.size());
  uint64_t timed_ns = 0;
  for (auto _ : state) {
    std::this_thread::sleep_for(idle);
    const uint64_t t0 = snap::now_ns();
    copy_pages_into_ring(region, ring);
    benchmark::ClobberMemory();
    const uint64_t t1 = snap::now_ns();
    state.SetIterationTime(snap::ns_to_s(t1 - t0));
    timed_ns += t1 - t0;
  }
  benchmark::DoNotOptimize(ring.data());
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(region.bytes()));
  if (state.iterations() > 0)
    set_counter(state, "ns_per_page", double(timed_ns) / double(state.iterations() * region.pages()));
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK(BM_MemcpyAfterIdle)->ArgName("idle_ms")->Arg(0)->Arg(100)->Arg(500)->Iterations(5)->Unit(benchmark::kMillisecond)->UseManualTime();

// A region read right after it is populated, then read again: one word per page, as a saver's
// first look at each page. On a machine where memory left alone for a while costs more to reach
// (see BM_MemcpyAfterIdle), a big region's first pages wait for seconds while the rest is filled, so
// the first read costs more per GiB the bigger the region: the harness's snapshots start from such
// a region, and this is the part of their cost per GiB that grows with the size. A fresh region
// per iteration (not the cached one), as the harness has.
void BM_ReadAfterPopulate(benchmark::State& state) try {
  const uint64_t bytes = uint64_t(state.range(0)) * kMiB;
  drop_cached_region();  // room for a fresh region of up to 8 GiB
  uint64_t first_ns = 0, second_ns = 0, populate_ns = 0, pages = 0;
  for (auto _ : state) {
    const uint64_t p0 = snap::now_ns();
    snap::Region region(snap::RegionOptions{bytes, 1.0, false, -1, 1});
    const uint64_t p1 = snap::now_ns();
    uint64_t pass_ns[2] = {0, 0};
    uint64_t sum = 0;
    for (uint64_t& ns : pass_ns) {
      const uint64_t t0 = snap::now_ns();
      sum += read_word_per_page(region);
      ns = snap::now_ns() - t0;
    }
    benchmark::DoNotOptimize(sum);
    state.SetIterationTime(snap::ns_to_s(pass_ns[0]));
    first_ns += pass_ns[0];
    second_ns += pass_ns[1];
    populate_ns += p1 - p0;
    pages += region.pages();
  }
  if (pages) {
    set_counter(state, "first_ns_per_page", double(first_ns) / double(pages));
    set_counter(state, "second_ns_per_page", double(second_ns) / double(pages));
    set_counter(state, "populate_s", snap::ns_to_s(populate_ns) / double(state.iterations()));
  }
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK(BM_ReadAfterPopulate)->ArgName("MiB")->Arg(1024)->Arg(8192)->Iterations(2)->Unit(benchmark::kMillisecond)->UseManualTime();

std::string sink_spec(const std::string& kind, std::string* file_path) {
  if (kind == "file") {
    *file_path = "/tmp/snapbench-micro-" + std::to_string(getpid()) + ".img";
    return "file:" + *file_path;
  }
  if (kind == "exec") return "exec:cat > /dev/null";
  return kind;
}

// One iteration writes a whole image of the region (header, one record per page, trailer) through
// ImageWriter into a fresh sink; the sink's creation and teardown are outside the timing.
void BM_SavePages(benchmark::State& state, const std::string& kind) try {
  snap::Region& region = cached_region(kSourceBytes);
  constexpr size_t kBatchPages = 64;  // pages per save_pages call, like a saver's chunk
  uint64_t timed_ns = 0, image_bytes = 0;
  for (auto _ : state) {
    std::string file_path;
    snap::SinkOptions opts;
    opts.spec = sink_spec(kind, &file_path);
    opts.capacity_hint = region.pages() * (kPageSize + 16) + kMiB;
    auto sink = snap::make_sink(opts);
    snap::ImageHeader header;
    header.region_pages = region.pages();
    header.strategy = "micro";

    const uint64_t t0 = snap::now_ns();
    snap::ImageWriter writer(*sink, header);
    for (size_t first = 0; first < region.pages(); first += kBatchPages)
      writer.save_pages(first, region.page(first), std::min(kBatchPages, region.pages() - first));
    writer.finish();
    const uint64_t t1 = snap::now_ns();

    state.SetIterationTime(snap::ns_to_s(t1 - t0));
    timed_ns += t1 - t0;
    image_bytes = sink->bytes_written();
    if (writer.stats().unique_pages != region.pages()) {
      state.SkipWithError("ImageWriter did not save every page");
      break;
    }
    sink.reset();
    if (!file_path.empty()) unlink(file_path.c_str());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(region.bytes()));
  set_counter(state, "image_MiB", double(image_bytes) / double(kMiB));
  set_ms_per_gib(state, timed_ns, state.iterations() * region.bytes());
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK_CAPTURE(BM_SavePages, null, std::string("null"))->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK_CAPTURE(BM_SavePages, memory, std::string("memory"))->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK_CAPTURE(BM_SavePages, file, std::string("file"))->Unit(benchmark::kMillisecond)->UseManualTime();
BENCHMARK_CAPTURE(BM_SavePages, exec, std::string("exec"))->Unit(benchmark::kMillisecond)->UseManualTime();

}  // namespace

}  // namespace snapbench_micro
