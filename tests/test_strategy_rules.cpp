// The rules every strategy owes, tested once over the registry: strategy (× tracker) × workload × sink.
// Its image verifies under concurrent writers; a failing sink fails the run cleanly (status=failed, no
// page left protected, no handler left installed, no fd, thread or child left behind) and the next
// run works. A combination this machine cannot run is skipped with the harness's reason.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/image.h"
#include "core/region.h"
#include "core/sink.h"
#include "harness/run.h"
#include "strategies/strategy.h"
#include "strategies/tracking/tracker.h"
#include "tests/cli_helpers.h"
#include "tests/test_support.h"
#include "workloads/workload.h"

using namespace snap;

namespace {

struct Case {
  std::string strategy, tracker, workload, sink;
};

// gtest names a failing case by this, not by the struct's bytes.
[[maybe_unused]] void PrintTo(const Case& c, std::ostream* os) {
  *os << c.strategy << "/" << c.tracker << "/" << c.workload << "/" << c.sink;
}

std::string case_name(const testing::TestParamInfo<Case>& i) {
  std::string n = i.param.strategy + (i.param.tracker.empty() ? "" : "_" + i.param.tracker) + "_" + i.param.workload;
  if (!i.param.sink.empty()) n += "_" + i.param.sink;
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

// Every strategy of the registry, with every tracker when it uses one (no hand list: a new unit is
// covered by adding it to its registry). `with_image_only` leaves out what saves nothing (`none`).
std::vector<Case> units(bool with_image_only) {
  std::vector<Case> cases;
  for (const auto& entry : strategy_registry()) {
    if (with_image_only && !entry.produces_image) continue;
    if (!entry.uses_tracker) {
      cases.push_back({entry.name, "", "", ""});
      continue;
    }
    for (const auto& t : tracker_registry()) cases.push_back({entry.name, t.name, "", ""});
  }
  return cases;
}

// The sinks an image is verified through: read back from memory, from a file, and through the tee a
// null sink needs for --verify. `none` writes no image, so it gets one case.
std::vector<Case> verify_cases() {
  std::vector<Case> cases;
  for (Case u : units(false))
    for (const auto& w : workload_registry())
      for (const char* sink : {"memory", "file", "null"}) {
        if (!strategy_registry().get(u.strategy).produces_image && std::string(sink) != "null") continue;
        u.workload = w.name;
        u.sink = sink;
        cases.push_back(u);
      }
  return cases;
}

std::vector<Case> failing_sink_cases() {
  std::vector<Case> cases;
  for (Case u : units(true))
    for (const auto& w : workload_registry()) {
      u.workload = w.name;
      cases.push_back(u);
    }
  return cases;
}

// A small run every workload can do: 16 MiB, 2 writers at 100 MiB/s, verified.
RunSpec spec_for(const Case& c) {
  RunSpec s = snaptest::verified_spec(c.strategy);
  s.tracker = c.tracker;
  s.workload = c.workload;
  s.mem_bytes = 16ull << 20;
  s.populate = 0.8;
  s.rate = "100MiB/s";
  s.bandwidth = "256MiB/s";  // precopy converges, and the run takes a few tenths of a second at most
  if (c.strategy == "none") s.params["none"]["duration_ms"] = "50";
  return s;
}

// Skips a combination this machine cannot run, with the reason the harness would give.
#define SKIP_IF_UNSUPPORTED(c)                                                                   \
  do {                                                                                           \
    const std::string why = snaptest::unsupported_reason((c).strategy, (c).tracker, (c).workload); \
    if (!why.empty()) GTEST_SKIP() << why;                                                       \
  } while (0)

// What a run may leave behind in this process, taken before and compared after.
struct Leftovers {
  int fds = snaptest::count_open_fds();
  int writer_threads = snaptest::count_threads_named("snap-");
  struct sigaction segv = snaptest::current_segv_action();
  struct sigaction bus = current_action(SIGBUS);

  static struct sigaction current_action(int sig) {
    struct sigaction now {};
    sigaction(sig, nullptr, &now);
    return now;
  }
  void expect_same_now() const {
    EXPECT_EQ(snaptest::count_open_fds(), fds) << "a descriptor was left open";
    EXPECT_EQ(snaptest::count_threads_named("snap-"), writer_threads) << "a writer, vCPU or saver thread was left";
    EXPECT_EQ(snaptest::current_segv_action().sa_sigaction, segv.sa_sigaction) << "a SIGSEGV handler was left";
    EXPECT_EQ(current_action(SIGBUS).sa_sigaction, bus.sa_sigaction) << "a SIGBUS handler was left";
    int status;
    errno = 0;
    const pid_t reaped = waitpid(-1, &status, WNOHANG);
    EXPECT_TRUE(reaped == 0 || (reaped < 0 && errno == ECHILD)) << "a child was left: waitpid reaped " << reaped;
  }
};

// Whether every mapping of /proc/self/maps overlapping [base, base + bytes) is writable: a page left
// read-only (mprotect) shows as a mapping without 'w'.
bool mapped_writable(const void* base, size_t bytes) {
  const uintptr_t lo = reinterpret_cast<uintptr_t>(base), hi = lo + bytes;
  std::ifstream maps("/proc/self/maps");
  size_t covered = 0;
  for (std::string line; std::getline(maps, line);) {
    uintptr_t start = 0, end = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &start, &end, perms) != 3) continue;
    if (end <= lo || start >= hi) continue;
    if (perms[1] != 'w') return false;
    covered += std::min(end, hi) - std::max(start, lo);
  }
  return covered == bytes;
}

class VerifiesUnderWriters : public testing::TestWithParam<Case> {};
class FailingSink : public testing::TestWithParam<Case> {};
class FailingSinkDirect : public testing::TestWithParam<Case> {};

}  // namespace

// The image verifies byte for byte against the region at the consistency point while the writers
// keep writing; nothing is left behind.
TEST_P(VerifiesUnderWriters, ImageMatchesTheConsistencyPoint) {
  const Case& c = GetParam();
  SKIP_IF_UNSUPPORTED(c);
  snaptest::TempDir tmp;
  RunSpec s = spec_for(c);
  s.sink = c.sink == "file" ? "file:" + (tmp / "image") : c.sink;
  const Leftovers before;
  RunResult r;
  try {
    r = run_once(s);
  } catch (const UsageError& e) {  // a combination the harness refuses as input (qemu's own trackers)
    GTEST_SKIP() << "refused as input: " << e.what();
  }
  // What only the run can tell (e.g. a workload that takes one writer): skipped with its reason.
  if (r.status == RunStatus::kUnsupported) GTEST_SKIP() << r.reason;
  ASSERT_EQ(r.status, RunStatus::kOk) << r.reason;
  before.expect_same_now();
  EXPECT_GT(r.rate_before_pages_s, 0) << "the writers wrote nothing before the snapshot";
  if (!strategy_registry().get(c.strategy).produces_image) {
    EXPECT_EQ(r.verified, "off");
    EXPECT_EQ(r.image.pages_saved, 0u);
    EXPECT_GT(r.write_count, 0u);
    return;
  }
  EXPECT_EQ(r.verified, "pass") << r.verify_detail;
  EXPECT_GE(r.image.unique_pages, s.mem_bytes / kPageSize);
  if (!strategy_registry().get(c.strategy).may_save_duplicates) {
    EXPECT_EQ(r.image.duplicate_pages, 0u);
  }
  if (c.sink == "file") {
    EXPECT_EQ(read_file_bytes(tmp / "image").size(), r.image.image_bytes);
  }
}

INSTANTIATE_TEST_SUITE_P(StrategyRules, VerifiesUnderWriters, testing::ValuesIn(verify_cases()), case_name);

// A sink failing 100 000 bytes in: the run ends failed with the sink's reason, nothing verified,
// nothing left behind, and the next run of the same combination works.
TEST_P(FailingSink, FailsCleanlyAndTheNextRunWorks) {
  const Case& c = GetParam();
  SKIP_IF_UNSUPPORTED(c);
  const Leftovers before;
  RunSpec s = spec_for(c);
  s.sink = "fail:100000";
  RunResult failed;
  try {
    failed = run_once(s);
  } catch (const UsageError& e) {  // a combination the harness refuses as input (qemu's own trackers)
    GTEST_SKIP() << "refused as input: " << e.what();
  }
  if (failed.status == RunStatus::kUnsupported) GTEST_SKIP() << failed.reason;
  EXPECT_EQ(failed.status, RunStatus::kFailed) << failed.reason;
  EXPECT_NE(failed.reason.find("injected sink failure"), std::string::npos) << failed.reason;
  EXPECT_EQ(failed.verified, "off") << "a run failed on its sink has no image to verify";
  before.expect_same_now();

  const RunResult again = run_once(spec_for(c));
  EXPECT_EQ(again.status, RunStatus::kOk) << again.reason;
  EXPECT_EQ(again.verified, "pass") << again.verify_detail;
  if (!strategy_registry().get(c.strategy).may_save_duplicates) {
    EXPECT_EQ(again.image.duplicate_pages, 0u);
  }
  before.expect_same_now();
}

INSTANTIATE_TEST_SUITE_P(StrategyRules, FailingSink, testing::ValuesIn(failing_sink_cases()), case_name);

// The same failure with the strategy called directly on a region the test owns, under the test's own
// writers, to look at the region afterwards: no page write-protected (pagemap), none read-only
// (maps), every page takes a write, the writers are not left paused and still write, and a second
// snapshot of the same region verifies.
TEST_P(FailingSinkDirect, LeavesTheRegionWritableAndTheNextSnapshotVerifies) {
  const Case& c = GetParam();
  SKIP_IF_UNSUPPORTED(c);
  const Leftovers before;
  Region region(RegionOptions{16ull << 20, 0.5, false, -1, 7});
  snaptest::TestControl writers(region, 2, std::chrono::microseconds(20));
  auto strategy = make_strategy(c.strategy);
  ParamValues params(c.strategy, strategy->info().params, {});
  // A fresh tracker for each snapshot, as the harness makes one per run.
  auto snapshot = [&](Sink& sink) {
    std::unique_ptr<DirtyTracker> tracker = c.tracker.empty() ? nullptr : make_tracker(c.tracker);
    ParamValues tracker_params = tracker ? ParamValues(c.tracker, tracker->info().params, {}) : ParamValues();
    StrategyMetrics metrics;
    SnapshotContext ctx{region, writers, sink, metrics, params, tracker.get(), tracker_params};
    strategy->snapshot(ctx);
  };
  {
    std::unique_ptr<Sink> failing = make_sink({"fail:100000", false, 0, 0});
    try {
      snapshot(*failing);
      ADD_FAILURE() << "the snapshot did not fail";
    } catch (const std::exception& e) {
      // fork-cow's child reports the sink's error through the parent; the others throw it as is.
      EXPECT_NE(std::string(e.what()).find("injected sink failure"), std::string::npos) << e.what();
    }
  }
  EXPECT_FALSE(writers.paused) << "writers left paused";
  EXPECT_EQ(writers.pauses, writers.resumes);
  EXPECT_EQ(snaptest::pages_still_write_protected(region.base(), region.pages()), 0u);
  EXPECT_TRUE(mapped_writable(region.base(), region.bytes())) << "part of the region was left read-only";
  const uint64_t writes = writers.writes();
  EXPECT_TRUE(snaptest::wait_until([&] { return writers.writes() > writes + 100; })) << "a writer was left blocked";
  for (size_t p = 0; p < region.pages(); ++p) region.page(p)[kPageSize - 1] ^= 0x5a;  // every page takes a write

  // Sized as the harness sizes an in-memory sink (harness/run.cpp).
  const uint64_t capacity = 8192 + strategy->info().record_bound(region.pages(), params) * (kPageSize + 16);
  std::unique_ptr<Sink> memory = make_sink({"memory", false, 0, capacity});
  const int points = writers.consistency_points;
  ASSERT_NO_THROW(snapshot(*memory));
  writers.stop();
  EXPECT_EQ(writers.consistency_points, points + 1);
  const VerifyResult v = verify_image(flatten_image(memory->read_back()), writers.reference.data(), region.pages());
  EXPECT_TRUE(v.pass) << v.message;
  EXPECT_EQ(snaptest::pages_still_write_protected(region.base(), region.pages()), 0u);
  before.expect_same_now();
}

// Only where the test owns the writers: the threads workload's region in this process.
INSTANTIATE_TEST_SUITE_P(StrategyRules, FailingSinkDirect,
                         testing::ValuesIn([] {
                           std::vector<Case> cases;
                           for (Case u : units(true)) {
                             u.workload = "threads";
                             cases.push_back(u);
                           }
                           return cases;
                         }()),
                         case_name);
