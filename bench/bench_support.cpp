// Shared helpers of the micro-benchmarks (see bench_support.h).
#include "bench/bench_support.h"

#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>

namespace snapbench_micro {

namespace {

struct RegionSlot {
  std::mutex mutex;
  std::unique_ptr<snap::Region> region;
};

RegionSlot& region_slot() {
  static RegionSlot slot;
  return slot;
}

}  // namespace

snap::Region& cached_region(uint64_t bytes, bool thp, double populate) {
  RegionSlot& slot = region_slot();
  std::lock_guard<std::mutex> lock(slot.mutex);
  if (slot.region) {
    const snap::RegionOptions& o = slot.region->options();
    if (o.bytes == bytes && o.thp == thp && o.populate == populate) return *slot.region;
    slot.region.reset();  // free the old one before mapping the new one
  }
  snap::RegionOptions opts;
  opts.bytes = bytes;
  opts.thp = thp;
  opts.populate = populate;
  slot.region = std::make_unique<snap::Region>(opts);
  return *slot.region;
}

void drop_cached_region() {
  RegionSlot& slot = region_slot();
  std::lock_guard<std::mutex> lock(slot.mutex);
  slot.region.reset();
}

bool require_uffd(benchmark::State& state, uint64_t features, const char* what) {
  const snap::UffdFeatures& f = snap::uffd_features();
  if (!f.available) {
    state.SkipWithError(f.reason.c_str());
    return false;
  }
  if (!f.has(features)) {
    const std::string reason = std::string("userfaultfd feature missing: ") + what;
    state.SkipWithError(reason.c_str());
    return false;
  }
  return true;
}

WpRange::WpRange(void* base, size_t len, uint64_t features, bool nonblocking)
    : uffd_(features, nonblocking), base_(base), len_(len) {
  uffd_.register_wp(base_, len_);
}

WpRange::~WpRange() {
  try {
    uffd_.writeprotect(base_, len_, false);
    uffd_.unregister(base_, len_);
  } catch (...) {
    // Closing the fd (Uffd's destructor) unregisters the range anyway.
  }
}

uint64_t read_word_per_page(const snap::Region& region) {
  uint64_t sum = 0;
  for (size_t i = 0; i < region.pages(); ++i) sum += *reinterpret_cast<const volatile uint64_t*>(region.page(i));
  return sum;
}

void copy_pages_into_ring(const snap::Region& region, std::vector<uint8_t>& ring) {
  // The run-time size keeps GCC from inlining `rep movsq` (what ImageWriter avoids too).
  volatile size_t page_bytes = snap::kPageSize;
  const size_t n = page_bytes;
  const size_t ring_pages = ring.size() / snap::kPageSize;
  const uint8_t* src = region.base();
  for (size_t i = 0; i < region.pages(); ++i, src += snap::kPageSize)
    std::memcpy(ring.data() + (i % ring_pages) * snap::kPageSize, src, n);
}

void set_counter(benchmark::State& state, const char* name, double value) {
  state.counters[name] = benchmark::Counter(value);
}

void set_fault_latency_counters(benchmark::State& state, const snap::Histogram& latency) {
  set_counter(state, "ns_per_fault", latency.mean());
  set_counter(state, "p50_ns", double(latency.percentile(0.50)));
  set_counter(state, "p99_ns", double(latency.percentile(0.99)));
  set_counter(state, "max_ns", double(latency.max()));
}

void set_ms_per_gib(benchmark::State& state, uint64_t elapsed_ns, uint64_t bytes) {
  if (bytes == 0) return;
  set_counter(state, "ms_per_GiB", double(elapsed_ns) * 1e-6 / (double(bytes) / double(kGiB)));
}

std::string thp_mode() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  if (!std::getline(in, line)) return "";
  const auto open = line.find('['), close = line.find(']');
  if (open == std::string::npos || close == std::string::npos || close < open) return "";
  return line.substr(open + 1, close - open - 1);
}

uint64_t anon_huge_bytes(const void* base, size_t len) {
  const uint64_t begin = reinterpret_cast<uint64_t>(base), end = begin + len;
  std::ifstream in("/proc/self/smaps");
  std::string line;
  bool inside = false;  // the current mapping overlaps the range
  uint64_t total = 0;
  while (std::getline(in, line)) {
    unsigned long long lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    // A mapping's first line starts "lo-hi perms ..." in hex; its field lines start with a name.
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo < end && hi > begin;
      continue;
    }
    if (!inside || line.rfind("AnonHugePages:", 0) != 0) continue;
    std::istringstream fields(line.substr(14));
    uint64_t kib = 0;
    fields >> kib;
    total += kib * 1024;
  }
  return total;
}

}  // namespace snapbench_micro
