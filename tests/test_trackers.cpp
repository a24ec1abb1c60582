// Dirty trackers tested directly: exact dirty sets, re-arming, never-touched pages, THP, concurrent
// writers (no lost write), cleanup (no protection, old SIGSEGV handler back) and the soft-dirty probe.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/clock.h"
#include "core/region.h"
#include "core/units.h"
#include "strategies/tracking/tracker.h"
#include "tests/test_support.h"

namespace snap {
namespace {

// Trackers of the threads workload need nothing from its control; they only receive it.
snaptest::TestControl g_control;

constexpr uint64_t kHugePages = (2u << 20) / kPageSize;  // 4 KiB pages per 2 MiB THP

struct TrackerCase {
  std::string tracker;
  bool populated;  // false: never-touched pages (populate 0)
  bool thp;
};

void PrintTo(const TrackerCase& c, std::ostream* os) {
  *os << c.tracker << (c.populated ? " populated" : " never-touched") << (c.thp ? " thp" : " no-thp");
}

std::string case_name(const testing::TestParamInfo<TrackerCase>& info) {
  std::string n = info.param.tracker + (info.param.populated ? "_populated" : "_untouched") +
                  (info.param.thp ? "_thp" : "_nothp");
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

std::vector<TrackerCase> all_cases() {
  std::vector<TrackerCase> cases;
  for (const auto& entry : tracker_registry())
    if (accepts(entry.workloads, "threads"))  // the kvm trackers track a guest: test_kvm_workload.cpp
    for (bool populated : {true, false})
      for (bool thp : {false, true}) cases.push_back({entry.name, populated, thp});
  return cases;
}

std::unique_ptr<DirtyTracker> make_supported(const std::string& name, std::string* skip_reason) {
  auto tracker = make_tracker(name);
  Support s = tracker->probe();
  if (!s.supported) {
    *skip_reason = name + " unsupported: " + s.reason;
    return nullptr;
  }
  return tracker;
}

std::vector<uint64_t> collect(DirtyTracker& tracker) {
  std::vector<uint64_t> dirty;
  tracker.collect(dirty);
  return dirty;
}

// Writes `value` into page `index` at an offset that depends on the value, like the workload does.
void write_page(Region& region, uint64_t index, uint64_t value) {
  auto* word = reinterpret_cast<volatile uint64_t*>(region.page(index) + (value % 512) * 8);
  *word = value;
}

uint64_t read_word(Region& region, uint64_t index, uint64_t value) {
  return *reinterpret_cast<volatile uint64_t*>(region.page(index) + (value % 512) * 8);
}

// Reads every page the way a saver does, so a tracker that counts reads as writes is caught.
uint64_t read_every_page(Region& region) {
  uint64_t sum = 0;
  for (size_t i = 0; i < region.pages(); ++i) sum += *reinterpret_cast<volatile uint64_t*>(region.page(i) + 8);
  return sum;
}

// AnonHugePages of the mapping that starts at the region's base (/proc/self/smaps).
uint64_t anon_huge_kib(Region& region) {
  std::ifstream smaps("/proc/self/smaps");
  char head[32];
  snprintf(head, sizeof head, "%lx-", reinterpret_cast<unsigned long>(region.base()));
  std::string line;
  bool in_region = false;
  while (std::getline(smaps, line)) {
    if (line.find('-') != std::string::npos && line.find(' ') > line.find('-') && isxdigit(line[0]))
      in_region = line.rfind(head, 0) == 0;
    if (in_region && line.rfind("AnonHugePages:", 0) == 0) return std::stoull(line.substr(14));
  }
  return 0;
}

// Is every reported page inside a 2 MiB block that holds a written page? (soft-dirty marks whole THPs.)
bool within_written_huge_pages(Region& region, const std::vector<uint64_t>& got, const std::vector<uint64_t>& want) {
  const uintptr_t base = reinterpret_cast<uintptr_t>(region.base());
  std::set<uintptr_t> blocks;
  for (uint64_t p : want) blocks.insert((base + p * kPageSize) >> 21);
  for (uint64_t p : got)
    if (!blocks.count((base + p * kPageSize) >> 21)) return false;
  return std::includes(got.begin(), got.end(), want.begin(), want.end());
}

class TrackerTable : public testing::TestWithParam<TrackerCase> {};

TEST_P(TrackerTable, ReportsExactlyTheWrittenPagesAndRearms) {
  const TrackerCase& c = GetParam();
  std::string why;
  auto tracker = make_supported(c.tracker, &why);
  if (!tracker) GTEST_SKIP() << why;

  Region region({16ull << 20, c.populated ? 1.0 : 0.0, c.thp, -1, 7});
  const uint64_t pages = region.pages();
  if (c.thp && c.populated && anon_huge_kib(region) == 0) GTEST_SKIP() << "no transparent huge page was obtained";

  tracker->start(region, g_control, ParamValues(c.tracker, tracker->info().params, {}));
  read_every_page(region);
  EXPECT_TRUE(collect(*tracker).empty()) << "reading pages made them dirty";

  // First and last page, a word boundary of a bitmap (63/64), a THP boundary (511/512), a run.
  std::vector<uint64_t> written = {0, 1, 63, 64, 65, 511, 512, 1000, pages - 1};
  for (uint64_t p = 3000; p < 3010; ++p) written.push_back(p);
  std::sort(written.begin(), written.end());
  for (uint64_t p : written) write_page(region, p, 1000 + p);

  std::vector<uint64_t> got = collect(*tracker);
  const bool whole_thp = c.tracker == "soft-dirty" && c.thp;  // soft-dirty is per PMD on a THP
  if (whole_thp) {
    EXPECT_TRUE(within_written_huge_pages(region, got, written));
  } else {
    EXPECT_EQ(got, written);
  }
  EXPECT_TRUE(collect(*tracker).empty()) << "a second collect must find nothing new";

  const std::vector<uint64_t> again = {1, 64, 3005, pages - 1};
  for (uint64_t p : again) write_page(region, p, 5000 + p);
  got = collect(*tracker);
  if (whole_thp) {
    EXPECT_TRUE(within_written_huge_pages(region, got, again));
  } else {
    EXPECT_EQ(got, again);
  }
  if (c.tracker == "mprotect") {
    EXPECT_GE(tracker->faults(), written.size() + again.size());
  }

  tracker->stop();
  tracker->stop();  // idempotent
  // Nothing left protected: no uffd-wp bit in the page tables, and every page takes a write.
  EXPECT_EQ(snaptest::pages_still_write_protected(region.base(), region.pages()), 0u);
  for (uint64_t p = 0; p < pages; ++p) write_page(region, p, 9000 + p);
  for (uint64_t p = 0; p < pages; ++p) ASSERT_EQ(read_word(region, p, 9000 + p), 9000 + p) << "page " << p;
  for (uint64_t p : again) EXPECT_EQ(read_word(region, p, 5000 + p), 5000 + p) << "page " << p;
}

INSTANTIATE_TEST_SUITE_P(Trackers, TrackerTable, testing::ValuesIn(all_cases()), case_name);

// A writer thread dirties random pages while the test collects and copies what is reported, as a
// precopy pass does. After the writer stops and a last collect, the copy must equal the region:
// any write lost in a race between a fault and a collect shows up as a mismatched page.
class TrackerRace : public testing::TestWithParam<TrackerCase> {};

TEST_P(TrackerRace, ConcurrentWriterLosesNoWrite) {
  const TrackerCase& c = GetParam();
  std::string why;
  auto tracker = make_supported(c.tracker, &why);
  if (!tracker) GTEST_SKIP() << why;
  if (tracker->info().collect_needs_pause) GTEST_SKIP() << c.tracker << " needs the writers paused to collect";

  Region region({8ull << 20, c.populated ? 0.5 : 0.0, c.thp, -1, 3});
  const uint64_t pages = region.pages();
  std::vector<uint8_t> copy(region.bytes());
  tracker->start(region, g_control, ParamValues(c.tracker, tracker->info().params, {}));
  std::memcpy(copy.data(), region.base(), region.bytes());

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> writes{0};
  std::thread writer([&] {
    std::mt19937_64 rng(11);
    // A hot quarter plus the whole region, so pages are re-written while being collected.
    for (uint64_t seq = 1; !stop.load(std::memory_order_relaxed); ++seq) {
      uint64_t page = (seq & 1) ? rng() % (pages / 4) : rng() % pages;
      __atomic_store_n(reinterpret_cast<uint64_t*>(region.page(page) + (seq % 512) * 8), seq, __ATOMIC_RELAXED);
      writes.fetch_add(1, std::memory_order_relaxed);
    }
  });
  auto copy_dirty = [&] {
    std::vector<uint64_t> dirty = collect(*tracker);
    EXPECT_TRUE(std::is_sorted(dirty.begin(), dirty.end()));
    EXPECT_TRUE(std::adjacent_find(dirty.begin(), dirty.end()) == dirty.end()) << "duplicate page in a collect";
    for (uint64_t p : dirty) std::memcpy(copy.data() + p * kPageSize, region.page(p), kPageSize);
    return dirty.size();
  };
  // At least 300 ms and 20000 writes (a loaded CI machine may starve the writer for a while), at
  // most 20 s; yielding between collects lets the writer run when both share one CPU.
  const uint64_t start = now_ns();
  size_t rounds = 0, reported = 0;
  while ((now_ns() - start < 300'000'000ull || writes.load() < 20000) && now_ns() - start < 20'000'000'000ull) {
    reported += copy_dirty();
    ++rounds;
    sched_yield();
  }
  stop = true;
  writer.join();
  reported += copy_dirty();
  tracker->stop();

  size_t mismatched = 0;
  for (uint64_t p = 0; p < pages; ++p)
    mismatched += std::memcmp(copy.data() + p * kPageSize, region.page(p), kPageSize) != 0;
  EXPECT_GE(writes.load(), 20000u);
  EXPECT_GT(reported, 0u);
  EXPECT_EQ(mismatched, 0u) << "after " << rounds << " collects, " << writes.load() << " writes";
}

std::vector<TrackerCase> race_cases() {
  std::vector<TrackerCase> cases;
  for (const auto& entry : tracker_registry())
    if (accepts(entry.workloads, "threads"))
    for (bool thp : {false, true}) cases.push_back({entry.name, true, thp});
  return cases;
}
INSTANTIATE_TEST_SUITE_P(Trackers, TrackerRace, testing::ValuesIn(race_cases()), case_name);

// --- mprotect: the SIGSEGV handler ---

void custom_segv_handler(int, siginfo_t*, void*) {}

TEST(MprotectTracker, StopRestoresThePreviousHandlerAndWritability) {
  struct sigaction mine {}, before {};
  mine.sa_sigaction = custom_segv_handler;
  mine.sa_flags = SA_SIGINFO;
  sigemptyset(&mine.sa_mask);
  ASSERT_EQ(sigaction(SIGSEGV, &mine, &before), 0);

  Region region({4ull << 20, 1.0, false, -1, 1});
  auto tracker = make_tracker("mprotect");
  tracker->start(region, g_control, ParamValues());
  EXPECT_NE(snaptest::current_segv_action().sa_sigaction, custom_segv_handler) << "the tracker's handler is not installed";
  write_page(region, 5, 55);
  tracker->stop();

  EXPECT_EQ(snaptest::current_segv_action().sa_sigaction, custom_segv_handler) << "the old handler is not back";
  for (uint64_t p = 0; p < region.pages(); ++p) write_page(region, p, 77 + p);  // would crash if protected
  EXPECT_EQ(read_word(region, 7, 77 + 7), 77u + 7);
  ASSERT_EQ(sigaction(SIGSEGV, &before, nullptr), 0);
}

TEST(MprotectTracker, OnlyOneRegionAtATime) {
  Region a({1ull << 20, 1.0, false, -1, 1}), b({1ull << 20, 1.0, false, -1, 2});
  auto first = make_tracker("mprotect");
  auto second = make_tracker("mprotect");
  first->start(a, g_control, ParamValues());
  EXPECT_THROW(second->start(b, g_control, ParamValues()), std::runtime_error);
  first->stop();
  second->start(b, g_control, ParamValues());  // free again once the first stopped
  write_page(b, 3, 33);
  EXPECT_EQ(collect(*second), std::vector<uint64_t>{3});
  second->stop();
}

// Re-enabling writes page by page splits the mapping; past vm.max_map_count mprotect fails, and the
// tracker must fall back to "every page dirty" rather than lose writes or loop on the fault.
TEST(MprotectTracker, FallsBackToAllDirtyAtTheMappingLimit) {
  std::ifstream limit_file("/proc/sys/vm/max_map_count");
  uint64_t limit = 0;
  if (!(limit_file >> limit) || limit > 70000) GTEST_SKIP() << "vm.max_map_count is " << limit << ": too large to reach quickly";
  // Every other page written gives two mappings per written page: enough to cross the limit.
  const uint64_t pages = limit + 1024;
  Region region({pages * kPageSize, 0.0, false, -1, 1});
  auto tracker = make_tracker("mprotect");
  tracker->start(region, g_control, ParamValues());
  for (uint64_t p = 0; p < pages; p += 2) write_page(region, p, p + 1);
  std::vector<uint64_t> got = collect(*tracker);
  EXPECT_EQ(got.size(), pages) << "past the mapping limit every page must count as dirty";
  for (uint64_t p = 0; p < pages; p += 2) ASSERT_EQ(read_word(region, p, p + 1), p + 1);
  // Re-protected as one mapping again: back to exact tracking.
  write_page(region, 7, 70);
  EXPECT_EQ(collect(*tracker), std::vector<uint64_t>{7});
  tracker->stop();
}

// A SIGSEGV that is not a write to the tracked region must still kill the process with SIGSEGV.
enum class ForeignFault { kWriteReadOnlyPage, kWildRead, kRaise };

class MprotectForeignFault : public testing::TestWithParam<ForeignFault> {};

TEST_P(MprotectForeignFault, StillCrashesLoudly) {
  fflush(nullptr);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    signal(SIGSEGV, SIG_DFL);
    Region region({1ull << 20, 1.0, false, -1, 1});
    auto tracker = make_tracker("mprotect");
    tracker->start(region, g_control, ParamValues());
    write_page(region, 1, 1);  // a tracked fault first: it must be absorbed
    void* ro = mmap(nullptr, kPageSize, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    switch (GetParam()) {
      case ForeignFault::kWriteReadOnlyPage:
        *static_cast<volatile int*>(ro) = 1;
        break;
      case ForeignFault::kWildRead: {
        // A read of an unmapped page (not of null: UBSan, in scripts/test-sanitizers, stops a null
        // read as undefined behaviour before it faults).
        void* gone = mmap(nullptr, kPageSize, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        munmap(gone, kPageSize);
        (void)*static_cast<volatile int*>(gone);
        break;
      }
      case ForeignFault::kRaise:
        raise(SIGSEGV);
        break;
    }
    _exit(0);  // survived: the tracker swallowed a foreign fault
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited normally with " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGSEGV);
}

INSTANTIATE_TEST_SUITE_P(Faults, MprotectForeignFault,
                         testing::Values(ForeignFault::kWriteReadOnlyPage, ForeignFault::kWildRead, ForeignFault::kRaise));

// --- soft-dirty: the run-time probe agrees with the kernel's configuration ---

TEST(SoftDirtyTracker, ProbeMatchesKernelConfig) {
  Support s = make_tracker("soft-dirty")->probe();
  if (!s.supported) {
    EXPECT_NE(s.reason.find("soft-dirty"), std::string::npos) << s.reason;
    EXPECT_FALSE(s.reason.empty());
  }
  // Cross-check with the kernel's own config when it publishes one.
  FILE* config = popen("zcat /proc/config.gz 2>/dev/null", "r");
  ASSERT_NE(config, nullptr);
  std::string text;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, config)) > 0;) text.append(buf, n);
  pclose(config);
  if (text.find("# CONFIG_MEM_SOFT_DIRTY is not set") != std::string::npos) {
    EXPECT_FALSE(s.supported);
    EXPECT_NE(s.reason.find("CONFIG_MEM_SOFT_DIRTY"), std::string::npos) << s.reason;
  } else if (text.find("CONFIG_MEM_SOFT_DIRTY=y") != std::string::npos) {
    EXPECT_TRUE(s.supported) << s.reason;
  } else {
    GTEST_SKIP() << "/proc/config.gz unavailable; probe said: " << (s.supported ? "supported" : s.reason);
  }
}

TEST(TrackerRegistry, EveryTrackerHasNameHelpAndAProbe) {
  for (const auto& entry : tracker_registry()) {
    auto tracker = entry.make();
    EXPECT_EQ(tracker->info().name, entry.name);
    EXPECT_FALSE(tracker->info().help.empty());
    Support s = tracker->probe();
    if (!s.supported) {
      EXPECT_FALSE(s.reason.empty()) << entry.name;
    }
  }
  EXPECT_THROW(make_tracker("no-such-tracker"), std::exception);
}

}  // namespace
}  // namespace snap
