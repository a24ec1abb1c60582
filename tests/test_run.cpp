// End-to-end runs through the harness: stop-copy verified under writers, the CSV and its sidecar,
// none's baseline, a deliberately corrupted image that verify must reject, and a tiny verified run of every
// registered strategy and tracker.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/image.h"
#include "harness/csv.h"
#include "harness/run.h"
#include "strategies/strategy.h"
#include "strategies/tracking/tracker.h"
#include "tests/cli_helpers.h"
#include "tests/test_support.h"

using namespace snap;

namespace {

RunSpec small(const std::string& strategy) {
  RunSpec s = snaptest::verified_spec(strategy);
  s.rate = "100MiB/s";
  s.warmup_s = 0.1;
  return s;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

}  // namespace

TEST(Run, StopCopyVerifiesUnderWriters) {
  struct Case {
    std::string rate, pattern, sink;
    double populate;
    bool thp;
  } cases[] = {{"100MiB/s", "uniform", "memory", 1.0, false}, {"max", "hotset:0.1:0.9", "null", 0.3, false},
               {"20000pages/s", "zipf:0.99", "memory", 0.5, true}, {"0", "sequential", "null", 1.0, true}};
  for (const auto& c : cases) {
    RunSpec s = small("stop-copy");
    s.rate = c.rate;
    s.pattern = c.pattern;
    s.sink = c.sink;
    s.populate = c.populate;
    s.thp = c.thp;
    RunResult r = run_once(s);
    SCOPED_TRACE(c.rate + " " + c.pattern + " " + c.sink);
    EXPECT_EQ(r.status, RunStatus::kOk) << r.reason;
    EXPECT_EQ(r.verified, "pass") << r.verify_detail;
    EXPECT_EQ(r.image.pages_saved, s.mem_bytes / 4096);
    EXPECT_EQ(r.image.duplicate_pages, 0u);
    if (c.populate < 1.0 && c.rate == "0") {
      EXPECT_GT(r.image.zero_pages, 0u);
    }
    EXPECT_GT(r.downtime_s, 0.0);
    EXPECT_LE(r.downtime_s, r.completion_s + 1e-3);
    if (c.rate != "0") {
      EXPECT_GT(r.rate_before_pages_s, 0.0);
    }
    // Stop-copy saves each page once: the image is about the region, so about 1x non-zero RSS or more.
    EXPECT_GT(r.image_ratio, 0.9);
  }
}

TEST(Run, NoneMeasuresTheWorkloadAlone) {
  RunSpec s = small("none");
  s.params["none"]["duration_ms"] = "200";
  RunResult r = run_once(s);
  EXPECT_EQ(r.status, RunStatus::kOk) << r.reason;
  EXPECT_EQ(r.verified, "off");
  EXPECT_EQ(r.image.pages_saved, 0u);
  EXPECT_GT(r.write_count, 0u);
  // Pacing accuracy is the workload tests' job; here only that the phase was measured (loose: a
  // loaded 2-core machine can starve the writers for a while).
  EXPECT_GT(r.rate_during_pages_s, 100.0 * 256 * 0.3);
  EXPECT_LT(r.rate_during_pages_s, 100.0 * 256 * 1.2);
  EXPECT_GE(r.completion_s, 0.19);
}

TEST(Run, CsvRowAndSidecarFromTheCommand) {
  snaptest::TempDir tmp;
  const std::string csv = tmp / "x.csv";
  auto c = snaptest::run_snapbench("run --strategy stop-copy --mem 32M --writers 2 --rate 100MiB/s --verify --warmup 0.1 "
                                   "--reps 2 --out " + csv);
  ASSERT_EQ(c.rc, 0) << c.out;
  auto lines = read_lines(csv);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0], csv_header());
  auto col = [&](const std::string& line, const std::string& name) {
    std::vector<std::string> fields;
    std::string f;
    for (char ch : line + ",") {
      if (ch == ',') {
        fields.push_back(f);
        f.clear();
      } else {
        f += ch;
      }
    }
    const auto& cols = csv_columns();
    for (size_t i = 0; i < cols.size(); ++i)
      if (cols[i].name == name) return fields.at(i);
    return std::string("?");
  };
  for (int i = 1; i <= 2; ++i) {
    EXPECT_EQ(col(lines[i], "status"), "ok");
    EXPECT_EQ(col(lines[i], "verified"), "pass");
    EXPECT_EQ(col(lines[i], "rep"), std::to_string(i - 1));
    EXPECT_EQ(col(lines[i], "strategy"), "stop-copy");
  }
  // Appending again keeps one header.
  c = snaptest::run_snapbench("run --strategy none --mem 16M --rate 0 --warmup 0 --set none.duration_ms=10 --out " + csv);
  ASSERT_EQ(c.rc, 0) << c.out;
  lines = read_lines(csv);
  EXPECT_EQ(lines.size(), 4u);
  EXPECT_EQ(std::count(lines.begin(), lines.end(), csv_header()), 1);
  std::ifstream meta(tmp / "x.meta.json");
  ASSERT_TRUE(meta.good());
  auto j = nlohmann::json::parse(meta);
  for (const char* key : {"git_sha", "kernel_release", "cpu_model", "thp_enabled", "build_type", "command_line"})
    EXPECT_TRUE(j.contains(key)) << key;
}

TEST(Run, CorruptedImageFailsVerify) {
  snaptest::TempDir tmp;
  const std::string img = tmp / "img", raw = tmp / "raw";
  auto c = snaptest::run_snapbench("run --strategy stop-copy --mem 8M --writers 2 --rate 50MiB/s --warmup 0.05 --verify "
                                   "--sink null --image " + img);
  ASSERT_EQ(c.rc, 0) << c.out;
  c = snaptest::run_snapbench("image info " + img);
  ASSERT_EQ(c.rc, 0) << c.out;
  EXPECT_NE(c.out.find("stop-copy"), std::string::npos);
  c = snaptest::run_snapbench("image flatten " + img + " -o " + raw);
  ASSERT_EQ(c.rc, 0) << c.out;
  c = snaptest::run_snapbench("image verify " + img + " --reference " + raw);
  EXPECT_EQ(c.rc, 0) << c.out;
  EXPECT_NE(c.out.find("pass"), std::string::npos);

  // One byte of one page differs from the reference: verify must say fail and name the page.
  {
    std::fstream f(raw, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(4096 * 100 + 7);
    char ch;
    f.seekg(4096 * 100 + 7);
    f.get(ch);
    f.seekp(4096 * 100 + 7);
    f.put(char(ch ^ 0x5a));
  }
  c = snaptest::run_snapbench("image verify " + img + " --reference " + raw);
  EXPECT_EQ(c.rc, 1) << c.out;
  EXPECT_NE(c.out.find("fail"), std::string::npos);
  EXPECT_NE(c.out.find("100"), std::string::npos) << c.out;

  // A byte flipped inside the image itself is caught by the reader.
  auto bytes = read_file_bytes(img);
  bytes[bytes.size() / 2] ^= 0x01;
  {
    std::ofstream f(img, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  }
  c = snaptest::run_snapbench("image info " + img);
  EXPECT_NE(c.rc, 0) << c.out;
}

namespace {

// Every strategy (and, for precopy, every tracker) of the registry, one case each.
struct UnitCase {
  std::string strategy, tracker;
};

std::vector<UnitCase> every_unit() {
  std::vector<UnitCase> cases;
  for (const auto& entry : strategy_registry()) {
    if (!entry.uses_tracker) {
      cases.push_back({entry.name, ""});
      continue;
    }
    for (const auto& t : tracker_registry()) cases.push_back({entry.name, t.name});
  }
  return cases;
}

std::string unsupported_reason(const UnitCase& c) {
  return snaptest::unsupported_reason(c.strategy, c.tracker, "threads");
}

// gtest names a failing case by this, not by the struct's bytes.
[[maybe_unused]] void PrintTo(const UnitCase& c, std::ostream* os) { *os << c.strategy << "/" << c.tracker; }

class RegistryUnit : public testing::TestWithParam<UnitCase> {};

}  // namespace

// A tiny verified run of one unit: a supported unit must produce a verified image; an unsupported
// one a row with a reason (the test is skipped with it), never a crash.
TEST_P(RegistryUnit, RunsTinyAndVerified) {
  const UnitCase& c = GetParam();
  auto strategy = make_strategy(c.strategy);
  EXPECT_EQ(strategy->info().name, c.strategy);
  EXPECT_FALSE(strategy->info().help.empty()) << c.strategy;
  ParamValues defaults(c.strategy, strategy->info().params, {});  // every default is valid
  RunSpec s = small(c.strategy);
  s.tracker = c.tracker;
  s.mem_bytes = 4ull << 20;
  s.rate = "5MiB/s";
  s.warmup_s = 0.02;
  if (c.strategy == "none") s.params["none"]["duration_ms"] = "20";  // --set only a unit of the run
  RunResult r = run_once(s);
  if (r.status == RunStatus::kUnsupported) {
    ASSERT_FALSE(r.reason.empty());
    EXPECT_EQ(r.reason, unsupported_reason(c)) << "the harness and the probes disagree";
    GTEST_SKIP() << c.strategy << "/" << c.tracker << ": " << r.reason;
  }
  EXPECT_EQ(r.status, RunStatus::kOk) << r.reason;
  EXPECT_EQ(r.verified, strategy->info().produces_image ? "pass" : "off") << r.verify_detail;
  if (strategy->info().produces_image) {
    EXPECT_GE(r.image.unique_pages, 1024u);
  }
}

INSTANTIATE_TEST_SUITE_P(Registry, RegistryUnit, testing::ValuesIn(every_unit()),
                         [](const testing::TestParamInfo<UnitCase>& i) {
                           std::string n = i.param.strategy + (i.param.tracker.empty() ? "" : "_" + i.param.tracker);
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// The cases above skip what this machine cannot run; if it could run none of them, they would all
// pass having checked nothing.
TEST(Registry, SomeUnitRunsHere) {
  std::string reasons;
  for (const UnitCase& c : every_unit()) {
    const std::string why = unsupported_reason(c);
    if (why.empty()) return;
    reasons += "\n  " + c.strategy + "/" + c.tracker + ": " + why;
  }
  FAIL() << "every strategy and tracker is unsupported here:" << reasons;
}

// The harness refuses a combination from the registry entries' data alone: a strategy or tracker
// that lists the workloads it accepts makes every other workload a run with status=unsupported.
TEST(Registry, RefusedWorkloadCombinationIsUnsupportedWithTheReason) {
  const StrategyEntry any{.name = "any"};
  const StrategyEntry only_vm{.name = "only-vm", .workloads = {"vm"}};
  EXPECT_TRUE(combination_support(any, nullptr, "threads").supported);
  Support s = combination_support(only_vm, nullptr, "threads");
  EXPECT_FALSE(s.supported);
  EXPECT_NE(s.reason.find("only-vm"), std::string::npos) << s.reason;
  EXPECT_NE(s.reason.find("threads"), std::string::npos) << s.reason;
  const TrackerEntry& mprotect = tracker_registry().get("mprotect");
  EXPECT_TRUE(combination_support(any, &mprotect, "threads").supported);
  Support t = combination_support(any, &mprotect, "vm");
  EXPECT_FALSE(t.supported);
  EXPECT_NE(t.reason.find("mprotect"), std::string::npos) << t.reason;
  // A strategy that names the trackers it takes refuses the others the same way.
  const StrategyEntry only_mprotect{.name = "only-mprotect", .trackers = {"mprotect"}, .uses_tracker = true};
  EXPECT_TRUE(combination_support(only_mprotect, &mprotect, "threads").supported);
  Support u = combination_support(only_mprotect, &tracker_registry().get("uffd-async"), "threads");
  EXPECT_FALSE(u.supported);
  EXPECT_NE(u.reason.find("uffd-async"), std::string::npos) << u.reason;
  // Every registered workload is accepted by every strategy that names none.
  for (const auto& w : workload_registry())
    for (const auto& e : strategy_registry())
      if (e.workloads.empty()) {
        EXPECT_TRUE(combination_support(e, nullptr, w.name).supported) << e.name;
      }
}

TEST(Run, TheWorkloadIsNamedInTheResult) {
  RunSpec spec = snaptest::verified_spec("stop-copy");
  spec.mem_bytes = 4ull << 20;
  spec.warmup_s = 0;
  RunResult r = run_once(spec);
  ASSERT_EQ(r.status, RunStatus::kOk) << r.reason;
  EXPECT_EQ(r.spec.workload, "threads");
  const auto names = csv_columns_names();
  const size_t col = size_t(std::find(names.begin(), names.end(), "workload") - names.begin());
  ASSERT_LT(col, names.size());
  EXPECT_EQ(parse_csv_table("row", csv_header() + "\n" + csv_row(r) + "\n").rows[0][col], "threads");
}
