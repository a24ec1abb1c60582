// The CLI: bad input is a one-line error naming the flag with exit code 2; help and list work.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "strategies/strategy.h"
#include "strategies/tracking/tracker.h"
#include "tests/cli_helpers.h"

using snaptest::run_snapbench;

TEST(Cli, BadInputIsExitTwoNamingTheFlag) {
  snaptest::TempDir tmp;
  struct Case {
    std::string args, must_mention;
  } cases[] = {
      {"run --strategy bogus --mem 16M", "--strategy"},
      {"run --mem 12Q", "--mem"},
      {"run --mem 16M --rate fast", "--rate"},
      {"run --mem 16M --populate 1.5", "--populate"},
      {"run --mem 16M --populate -0.1", "--populate"},
      {"run --mem 16M --thp maybe", "--thp"},
      {"run --mem 16M --pattern nosuch", "--pattern"},
      {"run --mem 16M --pattern hotset:2:0.9", "--pattern"},
      {"run --mem 16M --bandwidth lots", "--bandwidth"},
      {"run --mem 16M --sink file:/nonexistent-dir-xyz/img", "--sink"},
      {"run --mem 16M --sink teleport", "--sink"},
      {"run --mem 16M --set stop-copy.nope=1", "stop-copy.nope"},
      {"run --mem 16M --set stop-copy.chunk_pages=0", "stop-copy.chunk_pages"},
      {"run --mem 16M --set nounit.x=1", "nounit"},
      {"run --mem 16M --strategy uffd-wp --set uffd-wp.fault_wait=sometimes", "uffd-wp.fault_wait"},
      {"run --mem 16M --set malformed", "--set"},
      {"run --mem 16M --tracker mprotect --strategy stop-copy", "--tracker"},
      {"run --mem 16M --strategy precopy --tracker nosuch", "--tracker"},
      {"run --mem 16M --workload nosuch", "--workload"},
      {"run --mem 16M --set threads.nope=1", "threads.nope"},
      // Nonsense that used to run with exit 0 (issue 8, reliability 5).
      {"run --mem 16M --warmup nan", "--warmup"},
      {"run --mem 16M --warmup inf", "--warmup"},
      {"run --mem 16M --warmup 1e300", "--warmup"},
      {"run --mem 16M --warmup -1", "--warmup"},
      {"run --mem 16M --bandwidth 1e99MiB/s", "--bandwidth"},
      {"run --mem 16M --rate 1e99MiB/s", "--rate"},
      {"run --mem 16M --seed -1", "--seed"},
      {"run --mem 16M --seed 18446744073709551616", "--seed"},
      {"run --mem 16M --numa-node -2", "--numa-node"},
      {"run --mem 16M --writers 4294967298", "--writers"},
      {"run --mem 16M --writers 257", "--writers"},
      {"run --mem 16M --reps 4294967297", "--reps"},
      {"run --mem 16M --strategy stop-copy --set uffd-wp.chunk_pages=8", "uffd-wp.chunk_pages"},
      {"run --mem 16M --strategy stop-copy --set precopy.max_passes=8", "not in this run"},
      {"run --mem 16M --numa-node 999", "--numa-node"},
      {"run --mem 16M --reps 0", "--reps"},
      {"run --mem 16M --out " + tmp / "no/such/dir/x.csv", "--out"},
      {"run --no-such-flag", "no-such-flag"},
  };
  for (const auto& c : cases) {
    auto r = run_snapbench(c.args);
    EXPECT_EQ(r.rc, 2) << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find(c.must_mention), std::string::npos) << c.args << "\n" << r.out;
    // One line: the error, nothing else.
    EXPECT_LE(std::count(r.out.begin(), r.out.end(), '\n'), 1) << c.args << "\n" << r.out;
  }
}

TEST(Cli, HelpExplainsEveryRunFlag) {
  auto r = run_snapbench("run --help");
  EXPECT_EQ(r.rc, 0) << r.out;
  for (const char* flag : {"--strategy", "--tracker", "--mem", "--populate", "--thp", "--numa-node", "--writers", "--rate",
                           "--pattern", "--sink", "--fsync", "--bandwidth", "--warmup", "--reps", "--seed", "--verify",
                           "--out", "--image", "--set", "--workload"})
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
}

TEST(Cli, ListShowsEveryUnitWithSupport) {
  auto r = run_snapbench("list");
  ASSERT_EQ(r.rc, 0) << r.out;
  for (const char* name : {"none", "stop-copy", "precopy", "uffd-wp", "fork-cow", "uffd-async", "mprotect", "soft-dirty",
                           "uniform", "hotset", "zipf", "sequential", "null", "memory", "file:PATH", "exec:COMMAND"})
    EXPECT_NE(r.out.find(name), std::string::npos) << name;
  EXPECT_NE(r.out.find("supported"), std::string::npos);
  EXPECT_NE(r.out.find("--set stop-copy.chunk_pages"), std::string::npos);
}

TEST(Cli, ColumnsListsTheSchema) {
  auto r = run_snapbench("columns");
  ASSERT_EQ(r.rc, 0);
  for (const char* col : {"schema_version", "image_ratio", "duplicate_pages", "downtime_s", "write_p999_us", "verified"})
    EXPECT_NE(r.out.find(col), std::string::npos) << col;
}

// `list --json` is the registries as data (scripts take the strategies from it): every entry, in
// registry order, with its descriptor's facts.
TEST(Cli, ListJsonIsTheRegistries) {
  auto r = run_snapbench("list --json");
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["strategies"].size(), snap::strategy_registry().size());
  size_t i = 0;
  for (const auto& e : snap::strategy_registry()) {
    const auto& s = j["strategies"][i++];
    EXPECT_EQ(s["name"], e.name);
    EXPECT_EQ(s["produces_image"], e.produces_image) << e.name;
    EXPECT_EQ(s["uses_tracker"], e.uses_tracker) << e.name;
    EXPECT_EQ(s["may_save_duplicates"], e.may_save_duplicates) << e.name;
    EXPECT_EQ(s["consistency"], e.consistency == snap::ConsistencyPoint::kStart ? "start" : "end") << e.name;
    EXPECT_EQ(s["params"].size(), e.params.size()) << e.name;
  }
  ASSERT_EQ(j["trackers"].size(), snap::tracker_registry().size());
  i = 0;
  for (const auto& e : snap::tracker_registry()) EXPECT_EQ(j["trackers"][i++]["name"], e.name);
  ASSERT_EQ(j["workloads"].size(), snap::workload_registry().size());
}
