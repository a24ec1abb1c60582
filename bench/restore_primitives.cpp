// The restore strategies' physical limits: a MISSING fault round trip served with UFFDIO_COPY (what
// uffd-lazy pays per first touch), and the page-cache read rate of a warm file (what eager's read
// of the image is bounded by).
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "bench/bench_support.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/histogram.h"
#include "core/scoped.h"
#include "core/uffd.h"
#include "core/units.h"

namespace snapbench_micro {

namespace {

using snap::kPageSize;

constexpr uint64_t kRegionBytes = 64 * kMiB;

// Each iteration reads one never-touched page of a MISSING-registered region; a handler thread
// answers the fault with UFFDIO_COPY of one page. The walk drops the region (MADV_DONTNEED, untimed)
// when it reaches the end, so every read is a missing fault again.
void BM_MissingFaultCopy(benchmark::State& state) try {
  if (!require_uffd(state, 0, "userfaultfd")) return;
  snap::Mapping region(kRegionBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, "the region");
  madvise(region.data(), region.size(), MADV_NOHUGEPAGE);
  snap::Uffd uffd(0, true);
  uffdio_register reg{};
  reg.range.start = uint64_t(region.data());
  reg.range.len = region.size();
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  if (ioctl(uffd.fd(), UFFDIO_REGISTER, &reg) != 0) snap::throw_errno("UFFDIO_REGISTER");
  std::vector<uint8_t> source(kPageSize, 0x5a);
  std::atomic<bool> stop{false};
  std::thread handler([&] {
    while (!stop.load()) {
      pollfd p{uffd.fd(), POLLIN, 0};
      if (poll(&p, 1, 20) <= 0) continue;
      uffd_msg msg;
      if (read(uffd.fd(), &msg, sizeof msg) != sizeof msg || msg.event != UFFD_EVENT_PAGEFAULT) continue;
      uffdio_copy c{};
      c.dst = msg.arg.pagefault.address & ~uint64_t(kPageSize - 1);
      c.src = uint64_t(source.data());
      c.len = kPageSize;
      ioctl(uffd.fd(), UFFDIO_COPY, &c);
    }
  });
  snap::Histogram latency;
  const size_t pages = region.size() / kPageSize;
  size_t next = 0;
  for (auto _ : state) {
    if (next == pages) {
      madvise(region.data(), region.size(), MADV_DONTNEED);
      next = 0;
    }
    const uint64_t t0 = snap::now_ns();
    benchmark::DoNotOptimize(*reinterpret_cast<volatile uint64_t*>(region.data() + next * kPageSize));
    const uint64_t t1 = snap::now_ns();
    state.SetIterationTime(snap::ns_to_s(t1 - t0));
    latency.record(t1 - t0);
    ++next;
  }
  stop.store(true);
  handler.join();
  set_fault_latency_counters(state, latency);
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK(BM_MissingFaultCopy)->UseManualTime();

// pread of a warm 256 MiB file in 8 MiB chunks (eager's read size) into one reused buffer.
void BM_PageCacheRead(benchmark::State& state) try {
  const uint64_t bytes = 256 * kMiB;
  const std::string path = (std::filesystem::temp_directory_path() / ("snapbench-micro-pagecache-" + std::to_string(getpid()))).string();
  snap::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) snap::throw_errno("creating " + path);
  ::unlink(path.c_str());
  std::vector<uint8_t> buf(8 * kMiB, 0x33);
  for (uint64_t off = 0; off < bytes; off += buf.size())
    if (::pwrite(fd.get(), buf.data(), buf.size(), off_t(off)) != ssize_t(buf.size())) snap::throw_errno("writing " + path);
  for (auto _ : state) {
    for (uint64_t off = 0; off < bytes; off += buf.size())
      if (::pread(fd.get(), buf.data(), buf.size(), off_t(off)) != ssize_t(buf.size())) snap::throw_errno("reading " + path);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(bytes));
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK(BM_PageCacheRead)->Unit(benchmark::kMillisecond);

}  // namespace

}  // namespace snapbench_micro
