// Matrix specs: expansion, folding of senseless combinations, shards that partition the matrix,
// shuffled order, errors, and --resume through the CLI.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "core/error.h"
#include "harness/csv.h"
#include "harness/csv_table.h"
#include "harness/matrix.h"
#include "harness/shard.h"
#include "tests/cli_helpers.h"

using namespace snap;

namespace {

const char* kSpec = R"(
name = "t"
reps = 2
[fixed]
mem = "8M"
writers = 1
warmup = 0
"none.duration_ms" = 10
[axes]
strategy = ["none", "stop-copy", "precopy"]
tracker = ["uffd-async", "mprotect"]
rate = ["0", "10MiB/s"]
"stop-copy.chunk_pages" = [16, 64]
)";

}  // namespace

TEST(Matrix, ExpandsAndFoldsWhatDoesNotApply) {
  Matrix m = parse_matrix(kSpec, "spec");
  // none: 1 tracker-less x 2 rates; stop-copy: 2 rates x 2 chunk sizes; precopy: 2 trackers x 2 rates.
  EXPECT_EQ(m.cases.size(), 2u + 4u + 4u);
  EXPECT_EQ(m.reps, 2);
  EXPECT_FALSE(m.skipped.empty());
  for (const auto& c : m.cases) {
    if (c.spec.strategy != "precopy") {
      EXPECT_TRUE(c.spec.tracker.empty()) << c.label;
    }
    if (c.spec.strategy != "stop-copy") {
      EXPECT_EQ(c.spec.params.count("stop-copy"), 0u) << c.label;
    }
    EXPECT_EQ(c.spec.mem_bytes, 8u << 20);
  }
}

TEST(Matrix, WorkloadIsAKey) {
  Matrix m = parse_matrix("[fixed]\nworkload = \"threads\"\nmem = \"8M\"\n", "spec");
  ASSERT_EQ(m.cases.size(), 1u);
  EXPECT_EQ(m.cases[0].spec.workload, "threads");
  EXPECT_EQ(parse_matrix("[fixed]\nmem = \"8M\"\n", "spec").cases[0].spec.workload, "threads");
}

// Issue 8, reliability 4: the product is counted before expanding, so a huge spec is refused at
// once (naming the axes and the flag that raises the limit) instead of growing without bound.
TEST(Matrix, TooManyRunsAreRefusedBeforeExpanding) {
  const std::string huge = "[axes]\nseed = [1,2,3,4,5,6,7,8,9,10]\nwarmup = [0,1,2,3,4,5,6,7,8,9]\nwriters = [0,1,2,3,4,5,6,7,8,9]\n"
         "populate = [0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9]\nrate = [\"0\",\"1MiB/s\",\"2MiB/s\",\"3MiB/s\","
         "\"4MiB/s\",\"5MiB/s\",\"6MiB/s\",\"7MiB/s\",\"8MiB/s\",\"9MiB/s\"]\n"
         "\"stop-copy.chunk_pages\" = [1,2,3,4,5,6,7,8,9,10]\nnuma_node = [-1,0,1,2,3,4,5,6,7,8]\n"
         "\"none.duration_ms\" = [1,2,3,4,5,6,7,8,9,10]\n";  // 10^8 runs
  try {
    parse_matrix(huge, "huge.toml");
    ADD_FAILURE() << "a 10^8-run spec was accepted";
  } catch (const UsageError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("huge.toml"), std::string::npos) << m;
    EXPECT_NE(m.find("--max-runs"), std::string::npos) << m;
    EXPECT_NE(m.find("seed=10"), std::string::npos) << m;
    EXPECT_NE(m.find("warmup=10"), std::string::npos) << m;
  }
  const std::string small = "reps = 2\n[axes]\nwarmup = [0, 0.1, 0.2]\nseed = [1, 2]\n";  // 12 runs
  EXPECT_THROW(parse_matrix(small, "s.toml", 11), UsageError);
  EXPECT_EQ(parse_matrix(small, "s.toml", 12).cases.size(), 6u);
  snaptest::TempDir tmp;
  std::ofstream(tmp / "s.toml") << small;
  auto c = snaptest::run_snapbench("matrix " + tmp / "s.toml" + " --dry-run --out " + tmp / "o" + " --max-runs 11");
  EXPECT_EQ(c.rc, 2) << c.out;
  EXPECT_NE(c.out.find("--max-runs"), std::string::npos) << c.out;
  c = snaptest::run_snapbench("matrix " + tmp / "s.toml" + " --dry-run --out " + tmp / "o" + " --max-runs 12");
  EXPECT_EQ(c.rc, 0) << c.out;
}

// Issue 8, reliability 1: cases that differ only in warmup, verify or fsync are distinct runs for
// --resume too (the resume key left them out: 1 row kept, "0 runs done, 4 skipped").
TEST(Matrix, ResumeTellsCasesApartByEveryIdentityField) {
  snaptest::TempDir tmp;
  const std::string spec = tmp / "w.toml";
  std::ofstream(spec) << "[fixed]\nstrategy = \"stop-copy\"\nmem = \"4M\"\nwriters = 0\nsink = \"file:" + tmp / "img" + "\"\n"
                         "[axes]\nwarmup = [0, 0.01]\nverify = [false, true]\nfsync = [false, true]\n";
  const std::string out = tmp / "out";
  auto c = snaptest::run_snapbench("matrix " + spec + " --out " + out + " -q");
  ASSERT_EQ(c.rc, 0) << c.out;
  std::vector<std::string> lines;
  {
    std::ifstream in(out + "/results.csv");
    for (std::string l; std::getline(in, l);) lines.push_back(l);
  }
  ASSERT_EQ(lines.size(), 9u);
  std::ofstream(out + "/results.csv", std::ios::trunc) << lines[0] << "\n" << lines[1] << "\n";
  c = snaptest::run_snapbench("matrix " + spec + " --out " + out + " --resume -q");
  ASSERT_EQ(c.rc, 0) << c.out;
  EXPECT_NE(c.out.find("7 runs done, 1 skipped"), std::string::npos) << c.out;
  CsvTable t = read_csv_table(out + "/results.csv");
  ASSERT_EQ(t.rows.size(), 8u);
  std::set<std::string> keys;
  const size_t w = t.require_column("warmup_s"), v = t.require_column("verify"), f = t.require_column("fsync");
  for (const auto& r : t.rows) keys.insert(r[w] + "|" + r[v] + "|" + r[f]);
  EXPECT_EQ(keys.size(), 8u);
}

TEST(Matrix, ShardsPartitionTheMatrixExactly) {
  Matrix m = parse_matrix(kSpec, "spec");
  for (int n : {1, 2, 3, 4, 7, 20}) {
    size_t total = 0;
    std::multiset<std::string> all;
    for (int i = 1; i <= n; ++i) {
      auto part = shard_cases(m.cases, i, n);
      total += part.size();
      for (const auto& c : part) all.insert(c.label);
    }
    EXPECT_EQ(total, m.cases.size()) << n;
    std::set<std::string> unique(all.begin(), all.end());
    EXPECT_EQ(unique.size(), m.cases.size()) << n;  // no case in two shards
  }
}

TEST(Matrix, ShuffleIsAPermutationAndDeterministic) {
  auto a = shuffled_order(50, 3, 0), b = shuffled_order(50, 3, 0), c = shuffled_order(50, 3, 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::set<size_t> s(a.begin(), a.end());
  EXPECT_EQ(s.size(), 50u);
}

TEST(Matrix, BadSpecsNameTheKey) {
  struct Case {
    std::string text, mention;
  } cases[] = {{"[axes]\nstrategy = [\"bogus\"]\n", "axes.strategy"},
               {"[fixed]\nmem = \"lots\"\n", "fixed.mem"},
               {"[fixed]\ncolour = \"red\"\n", "fixed.colour"},
               {"[fixed]\nrate = [\"0\"]\n", "[axes]"},
               {"reps = 0\n", "reps"},
               {"[axes\n", "TOML"},
               {"[axes]\n\"uffd-wp.nope\" = [1]\n", "uffd-wp.nope"},
               {"[axes]\nworkload = [\"threads\", \"nosuch\"]\n", "axes.workload"},
               // Type errors and out-of-range values that used to be ignored or defaulted (issue 8,
               // reliability 5): each names the spec file and the key.
               {"reps = \"two\"\n[fixed]\nmem = \"8M\"\n", "spec.toml: reps"},
               {"reps = 4294967297\n[fixed]\nmem = \"8M\"\n", "spec.toml: reps"},
               {"name = 5\n[fixed]\nmem = \"8M\"\n", "spec.toml: name"},
               {"shuffle_seed = -3\n[fixed]\nmem = \"8M\"\n", "spec.toml: shuffle_seed"},
               {"fixed = 3\n", "spec.toml: fixed"},
               {"axes = [1, 2]\n", "spec.toml: axes"},
               {"", "sets nothing"},
               {"name = \"x\"\n[fixed]\n[axes]\n", "sets nothing"},
               {"[fixed]\nwriters = 4294967298\n", "spec.toml: fixed.writers"},
               {"[axes]\nwarmup = [0, nan]\n", "spec.toml: axes.warmup"},
               {"[fixed]\nseed = -1\n", "spec.toml: fixed.seed"},
               {"[fixed]\nnuma_node = -2\n", "spec.toml: fixed.numa_node"},
               {"[fixed]\nbandwidth = \"1e99MiB/s\"\n", "spec.toml: fixed.bandwidth"},
               {"[fixed]\nverify = \"sometimes\"\n", "spec.toml: fixed.verify"},
               {"oops = 1\n", "oops"}};
  for (const auto& c : cases) {
    try {
      parse_matrix(c.text, "spec.toml");
      ADD_FAILURE() << "accepted: " << c.text;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(c.mention), std::string::npos) << e.what();
    }
  }
  int i, n;
  EXPECT_THROW(parse_shard("0/2", i, n), UsageError);
  EXPECT_THROW(parse_shard("3/2", i, n), UsageError);
  EXPECT_THROW(parse_shard("x", i, n), UsageError);
  parse_shard("2/3", i, n);
  EXPECT_EQ(i, 2);
  EXPECT_EQ(n, 3);
}

TEST(Matrix, RunsResumesAndRefusesToOverwrite) {
  snaptest::TempDir tmp;
  const std::string spec = tmp / "m.toml";
  std::ofstream(spec) << "name = \"small\"\nreps = 2\n[fixed]\nmem = \"4M\"\nwriters = 1\nwarmup = 0\nverify = true\n"
                         "\"none.duration_ms\" = 5\n[axes]\nstrategy = [\"none\", \"stop-copy\"]\nrate = [\"0\", \"5MiB/s\"]\n";
  const std::string out = tmp / "out";
  auto count_rows = [&] {
    std::ifstream in(out + "/results.csv");
    size_t n = 0;
    for (std::string l; std::getline(in, l);) ++n;
    return n == 0 ? 0 : n - 1;
  };
  // Shard 1 of 2, then resume the whole matrix: only the missing runs are added.
  auto c = snaptest::run_snapbench("matrix " + spec + " --out " + out + " --shard 1/2");
  ASSERT_EQ(c.rc, 0) << c.out;
  EXPECT_EQ(count_rows(), 4u);
  c = snaptest::run_snapbench("matrix " + spec + " --out " + out);
  EXPECT_EQ(c.rc, 2) << c.out;  // exists, no --resume
  c = snaptest::run_snapbench("matrix " + spec + " --out " + out + " --resume");
  ASSERT_EQ(c.rc, 0) << c.out;
  EXPECT_EQ(count_rows(), 8u);
  EXPECT_NE(c.out.find("4 skipped"), std::string::npos) << c.out;
  c = snaptest::run_snapbench("matrix " + spec + " --out " + out + " --resume");
  ASSERT_EQ(c.rc, 0) << c.out;
  EXPECT_EQ(count_rows(), 8u);
  EXPECT_TRUE(std::ifstream(out + "/meta.json").good());
}

TEST(Matrix, InterruptFinishesTheRunInProgressAndKeepsEveryRow) {
  snaptest::TempDir tmp;
  const std::string spec = tmp / "m.toml";
  std::ofstream(spec) << "reps = 50\n[fixed]\nmem = \"8M\"\nwriters = 1\nwarmup = 0.05\nverify = true\n"
                         "rate = \"5MiB/s\"\n[axes]\nstrategy = [\"stop-copy\", \"uffd-wp\", \"fork-cow\", \"precopy\"]\n";
  const std::string out = tmp / "out";
  // SIGINT after a moment: the matrix must stop early, exit 130 and leave only complete rows.
  std::string script = "sh -c '" + std::string(SNAPBENCH_BINARY) + " matrix " + spec + " --out " + out +
                       " -q & pid=$!; sleep 1.5; kill -INT $pid; wait $pid; echo rc=$?'";
  FILE* p = popen(script.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string text;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) text += buf;
  pclose(p);
  EXPECT_NE(text.find("rc=130"), std::string::npos) << text;
  // Every row complete (the reader rejects a row with the wrong number of fields) and ok.
  CsvTable table = read_csv_table(out + "/results.csv");
  EXPECT_EQ(table.columns, csv_columns_names());
  const size_t status = table.require_column("status");
  for (const auto& row : table.rows) EXPECT_EQ(row[status], "ok");
  const size_t rows = table.rows.size();
  EXPECT_LT(rows, 200u);  // it stopped early
}
