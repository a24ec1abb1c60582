// Shared helpers of the micro-benchmarks: one cached region, uffd set-up with a clean teardown,
// feature checks that skip with a reason, and the custom counters in the units the report uses.
#pragma once
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/histogram.h"
#include "core/region.h"
#include "core/uffd.h"

namespace snapbench_micro {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;

// A populated region kept between calls of a benchmark (Google Benchmark calls each function several
// times while it sizes the iteration count). One slot only: asking for other options drops the old
// region first, so the run never holds more than one large region. Thread-safe.
snap::Region& cached_region(uint64_t bytes, bool thp = false, double populate = 1.0);
// Frees the cached region (before a benchmark that must see the process without it).
void drop_cached_region();

// Skips the benchmark with a reason unless userfaultfd offers every bit of `features`. Returns true
// when the benchmark may run.
bool require_uffd(benchmark::State& state, uint64_t features, const char* what);

// A userfaultfd with `base`..`base+len` registered for write-protect. On destruction the range is
// released (un-protected, writers woken) and unregistered, so the cached region is left plain.
class WpRange {
 public:
  WpRange(void* base, size_t len, uint64_t features, bool nonblocking);
  ~WpRange();
  WpRange(const WpRange&) = delete;
  WpRange& operator=(const WpRange&) = delete;
  snap::Uffd& uffd() { return uffd_; }
  void protect_all() { uffd_.writeprotect(base_, len_, true); }
  void release_all() { uffd_.writeprotect(base_, len_, false); }

 private:
  snap::Uffd uffd_;
  void* base_;
  size_t len_;
};

// Reads one word of every page of `region` (a saver's first touch of each page, without the copy);
// returns their sum so the reads cannot be optimised away.
uint64_t read_word_per_page(const snap::Region& region);
// memcpy of every page of `region`, one page at a time, into `ring` (a whole number of pages, reused
// round-robin): the copy one saver thread makes.
void copy_pages_into_ring(const snap::Region& region, std::vector<uint8_t>& ring);

// Sets counter `name` to a plain value (no rate, no averaging).
void set_counter(benchmark::State& state, const char* name, double value);
// The per-fault latency counters every write-fault round trip reports (ns_per_fault, p50_ns, p99_ns,
// max_ns), under the names perf-report reads.
void set_fault_latency_counters(benchmark::State& state, const snap::Histogram& latency);
// ms_per_GiB = elapsed / bytes, in milliseconds per GiB.
void set_ms_per_gib(benchmark::State& state, uint64_t elapsed_ns, uint64_t bytes);

// The system THP mode ("always", "madvise", "never") or "" when THP is absent.
std::string thp_mode();
// AnonHugePages, in bytes, of the mappings overlapping [base, base + len) (from /proc/self/smaps;
// 0 if unreadable).
uint64_t anon_huge_bytes(const void* base, size_t len);

// A CPU pause for spin loops.
inline void cpu_relax() {
#if defined(__x86_64__)
  __builtin_ia32_pause();
#endif
}

}  // namespace snapbench_micro
