// Sharding for clusters: shards cover every case exactly once and balance the estimated cost, the
// estimate follows the spec, the spec hash tells matrices apart, and the CLI's dry-run, resume and
// merge use it (another spec's shards are refused); compare and merge name the machines of the rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "harness/compare.h"
#include "harness/csv.h"
#include "harness/csv_table.h"
#include "harness/machines.h"
#include "harness/matrix.h"
#include "harness/provenance.h"
#include "harness/shard.h"
#include "tests/cli_helpers.h"

using namespace snap;

namespace {

// Cases of very different cost: region sizes from 4 MiB to 1 GiB, precopy at several rates.
const char* kUneven = R"(
name = "uneven"
reps = 2
[fixed]
writers = 1
warmup = 0.1
bandwidth = "512MiB/s"
[axes]
strategy = ["stop-copy", "precopy", "uffd-wp"]
mem = ["4M", "64M", "256M", "1G"]
rate = ["0", "100MiB/s", "400MiB/s"]
)";

double cost_of(const Matrix& m, const std::vector<size_t>& idx) {
  double c = 0;
  for (size_t i : idx) c += estimate_run_seconds(m.cases[i].spec);
  return c;
}

void write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

const std::string kSmall =
    "name = \"small\"\nreps = 2\n[fixed]\nmem = \"4M\"\nwriters = 1\nwarmup = 0\nverify = true\n"
    "[axes]\nstrategy = [\"stop-copy\", \"uffd-wp\"]\nrate = [\"0\", \"5MiB/s\"]\n";

// Two repetitions of one stop-copy case, as this machine writes them.
CsvTable two_rows_of_this_machine(const std::string& source) {
  RunResult r;
  r.spec.strategy = "stop-copy";
  r.region_bytes = 8 << 20;
  r.verified = "pass";
  r.completion_s = 0.1;
  return parse_csv_table(source, csv_header() + "\n" + csv_row(r) + "\n" + csv_row(r) + "\n");
}

}  // namespace

TEST(Shard, EveryCaseInExactlyOneShardAndDeterministic) {
  Matrix m = parse_matrix(kUneven, "uneven.toml");
  for (int n : {1, 2, 3, 5, 8, 36, 50}) {
    std::vector<int> seen(m.cases.size(), 0);
    for (int i = 1; i <= n; ++i) {
      auto idx = shard_indices(m.cases, i, n);
      EXPECT_TRUE(std::is_sorted(idx.begin(), idx.end()));
      EXPECT_EQ(idx, shard_indices(m.cases, i, n)) << "not deterministic: shard " << i << "/" << n;
      for (size_t k : idx) ++seen[k];
      auto cases = shard_cases(m.cases, i, n);
      ASSERT_EQ(cases.size(), idx.size());
      for (size_t j = 0; j < idx.size(); ++j) EXPECT_EQ(cases[j].label, m.cases[idx[j]].label);
    }
    for (size_t k = 0; k < seen.size(); ++k) EXPECT_EQ(seen[k], 1) << m.cases[k].label << " with N=" << n;
  }
}

TEST(Shard, ShardsHaveAboutEqualEstimatedCost) {
  Matrix m = parse_matrix(kUneven, "uneven.toml");
  double biggest = 0, total = 0;
  for (const auto& c : m.cases) {
    biggest = std::max(biggest, estimate_run_seconds(c.spec));
    total += estimate_run_seconds(c.spec);
  }
  for (int n : {2, 3, 4}) {
    std::vector<double> costs;
    for (int i = 1; i <= n; ++i) costs.push_back(cost_of(m, shard_indices(m.cases, i, n)));
    auto [lo, hi] = std::minmax_element(costs.begin(), costs.end());
    // Largest-first into the lightest shard: shards differ by at most one case's cost.
    EXPECT_LE(*hi - *lo, biggest + 1e-9) << "N=" << n;
    // And far better than dealing every N-th case in spec order, which piles the 1 GiB cases up.
    std::vector<double> round_robin(size_t(n), 0);
    for (size_t k = 0; k < m.cases.size(); ++k) round_robin[k % size_t(n)] += estimate_run_seconds(m.cases[k].spec);
    auto [rlo, rhi] = std::minmax_element(round_robin.begin(), round_robin.end());
    EXPECT_LT(*hi - *lo, *rhi - *rlo) << "N=" << n;
    EXPECT_NEAR(std::accumulate(costs.begin(), costs.end(), 0.0), total, 1e-6);
  }
}

TEST(Shard, EstimateFollowsTheSpec) {
  RunSpec small;
  small.strategy = "stop-copy";
  small.warmup_s = 0;
  small.mem_bytes = 64ull << 20;
  RunSpec big = small, fast = small;
  big.mem_bytes = 1ull << 30;
  EXPECT_GT(estimate_run_seconds(big), 4 * estimate_run_seconds(small));
  RunSpec verified = big;
  verified.verify = true;
  EXPECT_GT(estimate_run_seconds(verified), estimate_run_seconds(big));
  // Precopy re-saves what the writers dirty: the closer the write rate to the save rate, the more.
  RunSpec pre = big;
  pre.strategy = "precopy";
  pre.bandwidth = "512MiB/s";
  RunSpec idle = pre, busy = pre, unpaced = pre;
  busy.rate = "400MiB/s";
  unpaced.rate = "max";
  EXPECT_GT(estimate_run_seconds(busy), 2 * estimate_run_seconds(idle));
  EXPECT_GE(estimate_run_seconds(unpaced), estimate_run_seconds(busy));
  // none costs its duration, not a save.
  fast.strategy = "none";
  fast.params["none"]["duration_ms"] = "3000";
  EXPECT_GT(estimate_run_seconds(fast), 3.0);
  EXPECT_LT(estimate_run_seconds(fast), 3.0 + estimate_run_seconds(small));
}

TEST(Shard, SpecHashChangesWithWhatRunsOnly) {
  const std::string base = "name = \"a\"\nreps = 2\n[fixed]\nmem = \"8M\"\n[axes]\nstrategy = [\"stop-copy\", \"uffd-wp\"]\n";
  const std::string h = matrix_hash(parse_matrix(base, "a"));
  EXPECT_EQ(h.size(), 16u);
  // Name, comments, layout and shuffle seed do not change what runs.
  EXPECT_EQ(h, matrix_hash(parse_matrix("# a comment\nname = \"b\"\nshuffle_seed = 9\nreps = 2\n[fixed]\nmem = "
                                        "\"8MiB\"\n[axes]\nstrategy = [\"stop-copy\", \"uffd-wp\"]\n",
                                        "b")));
  std::set<std::string> others = {
      matrix_hash(parse_matrix("reps = 3\n[fixed]\nmem = \"8M\"\n[axes]\nstrategy = [\"stop-copy\", \"uffd-wp\"]\n", "c")),
      matrix_hash(parse_matrix("reps = 2\n[fixed]\nmem = \"16M\"\n[axes]\nstrategy = [\"stop-copy\", \"uffd-wp\"]\n", "d")),
      matrix_hash(parse_matrix("reps = 2\n[fixed]\nmem = \"8M\"\n[axes]\nstrategy = [\"stop-copy\"]\n", "e")),
      matrix_hash(parse_matrix("reps = 2\n[fixed]\nmem = \"8M\"\nverify = true\n[axes]\nstrategy = [\"stop-copy\", "
                               "\"uffd-wp\"]\n",
                               "f")),
      matrix_hash(parse_matrix("reps = 2\n[fixed]\nmem = \"8M\"\nseed = 2\n[axes]\nstrategy = [\"stop-copy\", "
                               "\"uffd-wp\"]\n",
                               "g")),
  };
  EXPECT_EQ(others.size(), 5u);
  EXPECT_EQ(others.count(h), 0u);
}

TEST(ShardCli, DryRunShowsEveryShardsEstimateAndWhatIsLeft) {
  snaptest::TempDir tmp;
  write(tmp / "m.toml", kUneven);
  auto c = snaptest::run_snapbench("matrix " + tmp / "m.toml" + " --out " + tmp / "o" + " --dry-run --shard 2/3");
  ASSERT_EQ(c.rc, 0) << c.out;
  for (const char* s : {"  shard 1/3:", "* shard 2/3:", "  shard 3/3:", "spec_hash ", "est "})
    EXPECT_NE(c.out.find(s), std::string::npos) << s << " in\n" << c.out;
  EXPECT_NE(c.out.find("\nto run: "), std::string::npos) << c.out;
  EXPECT_FALSE(std::filesystem::exists(tmp / "o")) << "a dry run writes nothing";
}

TEST(ShardCli, ResumeOnlyDoesWhatIsMissingAndRefusesAnotherSpec) {
  snaptest::TempDir tmp;
  write(tmp / "m.toml", kSmall);
  auto c = snaptest::run_snapbench("matrix " + tmp / "m.toml" + " --out " + tmp / "s1" + " --shard 1/2 -q");
  ASSERT_EQ(c.rc, 0) << c.out;
  c = snaptest::run_snapbench("matrix " + tmp / "m.toml" + " --out " + tmp / "s1" + " --shard 1/2 --resume --dry-run");
  ASSERT_EQ(c.rc, 0) << c.out;
  EXPECT_NE(c.out.find("to run: 0 of "), std::string::npos) << c.out;
  // The same directory with another spec (one more repetition) is refused, naming both hashes.
  std::string other = kSmall;
  other.replace(other.find("reps = 2"), 8, "reps = 3");
  write(tmp / "other.toml", other);
  c = snaptest::run_snapbench("matrix " + tmp / "other.toml" + " --out " + tmp / "s1" + " --shard 1/2 --resume");
  EXPECT_EQ(c.rc, 2) << c.out;
  EXPECT_NE(c.out.find("another spec"), std::string::npos) << c.out;
  std::ifstream meta(tmp / "s1/meta.json");
  auto j = nlohmann::json::parse(meta);
  EXPECT_EQ(j["matrix"]["spec_hash"], matrix_hash(parse_matrix(kSmall, "m")));
  EXPECT_EQ(j["matrix"]["shard"], "1/2");
}

TEST(ShardCli, MergeJoinsShardsOfOneSpecAndRefusesOthers) {
  snaptest::TempDir tmp;
  write(tmp / "m.toml", kSmall);
  std::string other = kSmall;
  other.replace(other.find("\"4M\""), 4, "\"8M\"");
  write(tmp / "other.toml", other);
  const std::string bin = "matrix ";
  for (const auto& [spec, dir, shard] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"m.toml", "a1", "1/2"}, {"m.toml", "a2", "2/2"}, {"other.toml", "b2", "2/2"}, {"m.toml", "c1", "1/3"}}) {
    auto c = snaptest::run_snapbench(bin + tmp / spec + " --out " + tmp / dir + " --shard " + shard + " -q");
    ASSERT_EQ(c.rc, 0) << c.out;
  }
  auto c = snaptest::run_snapbench("merge " + tmp / "ok.csv" + " " + tmp / "a1/results.csv" + " " + tmp / "a2/results.csv");
  ASSERT_EQ(c.rc, 0) << c.out;
  std::ifstream meta(tmp / "ok.meta.json");
  auto j = nlohmann::json::parse(meta);
  EXPECT_EQ(j["spec_hash"], matrix_hash(parse_matrix(kSmall, "m")));
  EXPECT_EQ(read_csv_table(tmp / "ok.csv").rows.size(), 8u);
  // Another spec's shard: refused (exit 2, one line naming the file), nothing written.
  c = snaptest::run_snapbench("merge " + tmp / "bad.csv" + " " + tmp / "a1/results.csv" + " " + tmp / "b2/results.csv");
  EXPECT_EQ(c.rc, 2) << c.out;
  EXPECT_NE(c.out.find("b2/results.csv comes from another spec"), std::string::npos) << c.out;
  EXPECT_FALSE(std::filesystem::exists(tmp / "bad.csv"));
  // The same spec split into another number of shards would overlap: refused too.
  c = snaptest::run_snapbench("merge " + tmp / "bad.csv" + " " + tmp / "a1/results.csv" + " " + tmp / "c1/results.csv");
  EXPECT_EQ(c.rc, 2) << c.out;
  EXPECT_NE(c.out.find("split differently"), std::string::npos) << c.out;
  // --any-spec joins them anyway.
  c = snaptest::run_snapbench("merge --any-spec " + tmp / "any.csv" + " " + tmp / "a1/results.csv" + " " +
                              tmp / "b2/results.csv");
  EXPECT_EQ(c.rc, 0) << c.out;
}

TEST(Machines, RowsNameTheirMachineCompareWarnsAndHostKeepsOne) {
  CsvTable t = two_rows_of_this_machine("cur.csv");
  const size_t host = t.require_column("host"), kernel = t.require_column("kernel");
  t.rows[1][t.require_column("rep")] = "1";  // two repetitions, not one run recorded twice
  EXPECT_EQ(t.rows[0][host], this_machine().host);
  EXPECT_EQ(t.rows[0][kernel], this_machine().kernel);
  EXPECT_FALSE(this_machine().host.empty());
  EXPECT_EQ(machines_in(t).size(), 1u);
  EXPECT_TRUE(compare_tables(t, t).warnings.empty());
  // The second row from another machine: compare warns that medians would pool two machines.
  CsvTable mixed = t;
  mixed.rows[1][host] = "elsewhere";
  ASSERT_EQ(machines_in(mixed).size(), 2u);
  auto report = compare_tables(t, mixed);
  ASSERT_EQ(report.warnings.size(), 1u);
  EXPECT_NE(report.warnings[0].find("2 machines"), std::string::npos) << report.warnings[0];
  EXPECT_EQ(rows_of_host(mixed, "elsewhere").rows.size(), 1u);
  // A schema-1 table (no host column) is kept whole and lists no machine.
  CsvTable old = t;
  old.columns.erase(old.columns.begin() + long(host));
  for (auto& row : old.rows) row.erase(row.begin() + long(host));
  EXPECT_TRUE(machines_in(old).empty());
  EXPECT_EQ(rows_of_host(old, "elsewhere").rows.size(), 2u);
}

TEST(Machines, CompareHostFlag) {
  snaptest::TempDir tmp;
  CsvTable t = two_rows_of_this_machine("t");
  std::ofstream(tmp / "base.csv") << format_csv_table(t);
  t.rows[1][t.require_column("host")] = "elsewhere";
  t.rows[1][t.require_column("completion_s")] = "100";  // a much slower machine
  std::ofstream(tmp / "mixed.csv") << format_csv_table(t);
  auto c = snaptest::run_snapbench("compare --baseline " + tmp / "base.csv" + " --current " + tmp / "mixed.csv");
  EXPECT_NE(c.out.find("holds runs of 2 machines"), std::string::npos) << c.out;
  c = snaptest::run_snapbench("compare --baseline " + tmp / "base.csv" + " --current " + tmp / "mixed.csv" +
                              " --host " + this_machine().host);
  EXPECT_EQ(c.rc, 0) << c.out;
  EXPECT_EQ(c.out.find("machines"), std::string::npos) << c.out;
  c = snaptest::run_snapbench("compare --baseline " + tmp / "base.csv" + " --current " + tmp / "mixed.csv" +
                              " --host elsewhere");
  EXPECT_EQ(c.rc, 1) << c.out;  // the slow machine alone: completion_s regressed
  c = snaptest::run_snapbench("compare --baseline " + tmp / "base.csv" + " --current " + tmp / "mixed.csv" +
                              " --host nowhere");
  EXPECT_EQ(c.rc, 2) << c.out;
  EXPECT_NE(c.out.find("--host"), std::string::npos) << c.out;
}
