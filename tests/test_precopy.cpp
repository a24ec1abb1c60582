// precopy end to end (through run_once) with every supported tracker, plus direct strategy runs for
// convergence, duplicates and max_passes (a failing sink: test_strategy_rules.cpp).
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/error.h"
#include "core/image.h"
#include "core/region.h"
#include "core/sink.h"
#include "core/units.h"
#include "harness/run.h"
#include "strategies/strategy.h"
#include "strategies/tracking/tracker.h"
#include "tests/test_support.h"

namespace snap {
namespace {

std::vector<std::string> supported_trackers() {
  std::vector<std::string> names;
  // The kvm trackers need a guest's writes: test_kvm_strategies.cpp covers them.
  for (const auto& e : tracker_registry())
    if (accepts(e.workloads, "threads") && e.make()->probe().supported) names.push_back(e.name);
  return names;
}

RunSpec precopy_spec(const std::string& tracker) {
  RunSpec s = snaptest::verified_spec("precopy");
  s.tracker = tracker;
  return s;
}

// --- the table: tracker x workload x populate x THP, each verified against the consistency point ---

struct WriteLoad {
  const char* label;
  const char* pattern;
  const char* rate;
};
constexpr WriteLoad kWorkloads[] = {
    {"idle", "uniform", "0"},
    {"uniform_moderate", "uniform", "100MiB/s"},
    {"hotset_high", "hotset:0.1:0.9", "max"},
};

struct TableCase {
  std::string tracker;
  WriteLoad workload;
  double populate;
  bool thp;
};

void PrintTo(const TableCase& c, std::ostream* os) {
  *os << c.tracker << " " << c.workload.label << " populate=" << c.populate << (c.thp ? " thp" : " no-thp");
}

std::vector<TableCase> table_cases() {
  std::vector<TableCase> cases;
  for (const auto& entry : tracker_registry())
    if (accepts(entry.workloads, "threads"))  // the kvm trackers: test_kvm_strategies.cpp
    for (const auto& w : kWorkloads)
      for (double populate : {1.0, 0.3})
        for (bool thp : {false, true}) cases.push_back({entry.name, w, populate, thp});
  return cases;
}

std::string table_name(const testing::TestParamInfo<TableCase>& info) {
  std::string n = info.param.tracker + "_" + info.param.workload.label + (info.param.populate < 1 ? "_pop30" : "_pop100") +
                  (info.param.thp ? "_thp" : "_nothp");
  std::replace(n.begin(), n.end(), '-', '_');
  return n;
}

class PrecopyTable : public testing::TestWithParam<TableCase> {};

TEST_P(PrecopyTable, VerifiesAtTheFinalPause) {
  const TableCase& c = GetParam();
  if (Support s = make_tracker(c.tracker)->probe(); !s.supported) GTEST_SKIP() << c.tracker << ": " << s.reason;
  RunSpec spec = precopy_spec(c.tracker);
  spec.pattern = c.workload.pattern;
  spec.rate = c.workload.rate;
  spec.populate = c.populate;
  spec.thp = c.thp;
  // A tight budget so the writers keep it iterating; few passes so the image stays small.
  spec.params["precopy"]["downtime_ms"] = "2";
  spec.params["precopy"]["max_passes"] = "4";

  RunResult r = run_once(spec);
  ASSERT_EQ(r.status, RunStatus::kOk) << r.reason;
  EXPECT_EQ(r.tracker, c.tracker);
  EXPECT_EQ(r.verified, "pass") << r.verify_detail;
  EXPECT_GE(r.passes, 2u);
  EXPECT_LE(r.passes, 4u);
  if (!r.converged) {
    EXPECT_EQ(r.passes, 4u) << "not converged, yet it stopped before max_passes";
  }
  const uint64_t pages = spec.mem_bytes / kPageSize;
  EXPECT_EQ(r.image.unique_pages, pages);
  EXPECT_EQ(r.image.pages_saved, r.image.unique_pages + r.image.duplicate_pages);
  EXPECT_GT(r.extra_rss_bytes, 0u);
  if (std::string(c.workload.rate) == "0") {
    EXPECT_EQ(r.passes, 2u);
    EXPECT_EQ(r.image.duplicate_pages, 0u);
  } else {
    EXPECT_GT(r.write_count, 0u);
  }
  if (c.tracker == "mprotect" && r.write_count > 0) {
    EXPECT_GT(r.faults, 0u);
  }
}

INSTANTIATE_TEST_SUITE_P(Precopy, PrecopyTable, testing::ValuesIn(table_cases()), table_name);

// --- behaviour of the iteration, per supported tracker ---

class PrecopyPerTracker : public testing::TestWithParam<std::string> {};

TEST_P(PrecopyPerTracker, IdleConvergesInTwoPassesWithoutDuplicates) {
  if (Support s = make_tracker(GetParam())->probe(); !s.supported) GTEST_SKIP() << s.reason;
  RunSpec spec = precopy_spec(GetParam());
  spec.rate = "0";
  RunResult r = run_once(spec);
  ASSERT_EQ(r.status, RunStatus::kOk) << r.reason;
  EXPECT_EQ(r.verified, "pass") << r.verify_detail;
  EXPECT_EQ(r.passes, 2u);
  EXPECT_TRUE(r.converged);
  EXPECT_EQ(r.image.duplicate_pages, 0u);
  EXPECT_EQ(r.image.pages_saved, spec.mem_bytes / kPageSize);
  EXPECT_GT(r.freeze_s, 0.0);
}

// Writers at half the sink's bandwidth: pass 1 takes ~0.3 s, during which a good part of the region
// is written again and must be re-saved, so the image outgrows the memory it copies (the cover
// letter's claim about dirty-logging migration to a file).
TEST_P(PrecopyPerTracker, WriteRateNearBandwidthDuplicatesPages) {
  if (Support s = make_tracker(GetParam())->probe(); !s.supported) GTEST_SKIP() << s.reason;
  RunSpec spec = precopy_spec(GetParam());
  spec.mem_bytes = 64ull << 20;
  spec.bandwidth = "200MiB/s";
  spec.rate = "100MiB/s";
  spec.pattern = "uniform";
  RunResult r = run_once(spec);
  ASSERT_EQ(r.status, RunStatus::kOk) << r.reason;
  EXPECT_EQ(r.verified, "pass") << r.verify_detail;
  EXPECT_GT(r.image.duplicate_pages, 0u);
  EXPECT_GT(r.image_ratio, 1.0);
  EXPECT_GE(r.passes, 2u);
}

// A write rate the budget can never absorb: it stops on max_passes, says it did not converge, and the
// image is still the exact state at the final pause.
TEST_P(PrecopyPerTracker, StopsOnMaxPassesWithoutConverging) {
  if (Support s = make_tracker(GetParam())->probe(); !s.supported) GTEST_SKIP() << s.reason;
  RunSpec spec = precopy_spec(GetParam());
  spec.mem_bytes = 16ull << 20;
  spec.bandwidth = "100MiB/s";
  spec.rate = "max";
  spec.params["precopy"]["downtime_ms"] = "1";
  spec.params["precopy"]["max_passes"] = "3";
  RunResult r = run_once(spec);
  ASSERT_EQ(r.status, RunStatus::kOk) << r.reason;
  EXPECT_EQ(r.verified, "pass") << r.verify_detail;
  EXPECT_EQ(r.passes, 3u);
  EXPECT_FALSE(r.converged);
  EXPECT_GT(r.image.duplicate_pages, 0u);
}

INSTANTIATE_TEST_SUITE_P(Precopy, PrecopyPerTracker, testing::Values("uffd-async", "mprotect", "soft-dirty"),
                         [](const testing::TestParamInfo<std::string>& i) {
                           std::string n = i.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// --- the strategy called directly (a failing sink: test_strategy_rules.cpp) ---

// The harness sizes an in-memory sink from the strategy's bound on its records: precopy's grows
// with max_passes (it re-saves pages), the others' is one record per page.
TEST(PrecopyBound, MaxRecordsFollowMaxPasses) {
  auto precopy = make_strategy("precopy");
  EXPECT_EQ(precopy->info().record_bound(100, ParamValues("precopy", precopy->info().params, {{"max_passes", "7"}})), 700u);
  auto stop_copy = make_strategy("stop-copy");
  EXPECT_EQ(stop_copy->info().record_bound(100, ParamValues("stop-copy", stop_copy->info().params, {})), 100u);
  auto none = make_strategy("none");
  EXPECT_EQ(none->info().record_bound(100, ParamValues("none", none->info().params, {})), 0u);
}

TEST_P(PrecopyPerTracker, DirectRunMarksOneConsistencyPointAndCountsPasses) {
  if (Support s = make_tracker(GetParam())->probe(); !s.supported) GTEST_SKIP() << s.reason;
  auto strategy = make_strategy("precopy");
  Region region({4ull << 20, 0.5, false, -1, 9});
  std::unique_ptr<Sink> sink = make_sink({"memory", false, 0, 64ull << 20});
  snaptest::TestControl control;
  StrategyMetrics metrics;
  ParamValues params("precopy", strategy->info().params, {});
  auto tracker = make_tracker(GetParam());
  ParamValues tracker_params(GetParam(), tracker->info().params, {});
  SnapshotContext ctx{region, control, *sink, metrics, params, tracker.get(), tracker_params};
  strategy->snapshot(ctx);
  EXPECT_EQ(control.consistency_points, 1);
  EXPECT_FALSE(control.paused);
  EXPECT_EQ(metrics.passes, 2u);
  EXPECT_TRUE(metrics.converged);
  FlatImage flat = flatten_image(sink->read_back());
  EXPECT_EQ(flat.header.strategy, "precopy");
  EXPECT_EQ(flat.header.consistency, ConsistencyPoint::kEnd);
  VerifyResult v = verify_image(flat, region.base(), region.pages());
  EXPECT_TRUE(v.pass) << v.message;
  EXPECT_EQ(metrics.image.pages_saved, region.pages());
}

// --- probe and unsupported trackers ---

TEST(Precopy, ProbeAndParams) {
  auto strategy = make_strategy("precopy");
  EXPECT_TRUE(strategy->info().uses_tracker);
  EXPECT_EQ(strategy->info().consistency, ConsistencyPoint::kEnd);
  EXPECT_EQ(strategy->probe().supported, !supported_trackers().empty()) << strategy->probe().reason;
  ParamValues defaults("precopy", strategy->info().params, {});
  EXPECT_EQ(defaults.get_int("downtime_ms"), 300);
  EXPECT_EQ(defaults.get_int("max_passes"), 30);
  EXPECT_THROW(ParamValues("precopy", strategy->info().params, {{"max_passes", "1"}}), UsageError);
  EXPECT_THROW(ParamValues("precopy", strategy->info().params, {{"downtime_ms", "0"}}), UsageError);
}

TEST(Precopy, SoftDirtyIsUnsupportedWithAReasonWhenTheKernelLacksIt) {
  Support s = make_tracker("soft-dirty")->probe();
  RunSpec spec = precopy_spec("soft-dirty");
  spec.rate = "0";
  RunResult r = run_once(spec);
  if (s.supported) {
    EXPECT_EQ(r.status, RunStatus::kOk) << r.reason;
    EXPECT_EQ(r.verified, "pass") << r.verify_detail;
  } else {
    EXPECT_EQ(r.status, RunStatus::kUnsupported);
    EXPECT_NE(r.reason.find("soft-dirty"), std::string::npos) << r.reason;
    EXPECT_NE(r.reason.find("CONFIG_MEM_SOFT_DIRTY"), std::string::npos) << r.reason;
  }
}

}  // namespace
}  // namespace snap
