// `snapbench merge`: shards join into one CSV with one header and every row, their sidecars into
// {"merged_from": [...]}; mismatched schemas and headers are refused with exit code 2.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "harness/csv.h"
#include "harness/csv_table.h"
#include "tests/cli_helpers.h"

using namespace snap;

namespace {

std::vector<std::string> shard_rows(const std::string& strategy, int reps, uint64_t seed = 1) {
  std::vector<std::string> rows;
  for (int rep = 0; rep < reps; ++rep) {
    RunResult r;
    r.spec.strategy = strategy;
    r.spec.rep = rep;
    r.spec.seed = seed;
    r.region_bytes = 16ull << 20;
    r.completion_s = 0.01 * (rep + 1);
    r.verified = "pass";
    r.reason = rep == 1 ? "a reason, with \"quotes\"" : "";
    rows.push_back(csv_row(r));
  }
  return rows;
}

void write_csv(const std::string& path, const std::string& header, const std::vector<std::string>& rows) {
  std::ofstream f(path);
  f << header << "\n";
  for (const auto& r : rows) f << r << "\n";
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

// The rows with their schema_version field (the first column) replaced.
std::vector<std::string> with_schema_version(std::vector<std::string> rows, const std::string& version) {
  for (auto& r : rows) r = version + r.substr(r.find(','));
  return rows;
}

}  // namespace

TEST(Merge, ShardsJoinIntoOneHeaderAndEveryRowWithSidecars) {
  snaptest::TempDir tmp;
  const auto a = shard_rows("stop-copy", 3), b = shard_rows("uffd-wp", 2);
  write_csv(tmp / "a.csv", csv_header(), a);
  write_csv(tmp / "b.csv", csv_header(), b);
  write_csv(tmp / "c.csv", csv_header(), {});  // a shard that finished nothing
  std::ofstream(tmp / "a.meta.json") << R"({"git_sha": "aaa", "hostname": "one"})";
  std::ofstream(tmp / "b.meta.json") << R"({"git_sha": "bbb", "hostname": "two"})";
  auto r = snaptest::run_snapbench("merge " + tmp / "all.csv" + " " + tmp / "a.csv" + " " + tmp / "b.csv" + " " +
                                   tmp / "c.csv");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(r.out.find("warning"), std::string::npos) << r.out;
  std::vector<std::string> expected = {csv_header()};
  expected.insert(expected.end(), a.begin(), a.end());
  expected.insert(expected.end(), b.begin(), b.end());
  EXPECT_EQ(read_lines(tmp / "all.csv"), expected);

  std::ifstream meta(tmp / "all.meta.json");
  ASSERT_TRUE(meta) << "no merged sidecar";
  auto j = nlohmann::json::parse(meta);
  ASSERT_EQ(j["merged_from"].size(), 3u) << j.dump(2);
  EXPECT_EQ(j["merged_from"][0]["csv"], tmp / "a.csv");
  EXPECT_EQ(j["merged_from"][0]["meta"]["git_sha"], "aaa");
  EXPECT_EQ(j["merged_from"][1]["meta"]["hostname"], "two");
  EXPECT_TRUE(j["merged_from"][2]["meta"].is_null());
  EXPECT_FALSE(std::filesystem::exists(tmp / "all.csv.tmp"));
}

TEST(Merge, NoSidecarsMeansNoMergedSidecar) {
  snaptest::TempDir tmp;
  write_csv(tmp / "a.csv", csv_header(), shard_rows("none", 1));
  auto r = snaptest::run_snapbench("merge " + tmp / "out.csv" + " " + tmp / "a.csv");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(read_lines(tmp / "out.csv").size(), 2u);
  EXPECT_FALSE(std::filesystem::exists(tmp / "out.meta.json"));
}

TEST(Merge, RepeatedRunsAreKeptWithAWarning) {
  snaptest::TempDir tmp;
  write_csv(tmp / "a.csv", csv_header(), shard_rows("fork-cow", 2));
  write_csv(tmp / "b.csv", csv_header(), shard_rows("fork-cow", 2));             // same cells again
  write_csv(tmp / "c.csv", csv_header(), shard_rows("fork-cow", 2, /*seed=*/7));  // other seed: other runs
  auto r = snaptest::run_snapbench("merge " + tmp / "out.csv" + " " + tmp / "a.csv" + " " + tmp / "b.csv" + " " +
                                   tmp / "c.csv");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(read_lines(tmp / "out.csv").size(), 7u);
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 3) << "two warnings and the summary:\n" << r.out;
  EXPECT_NE(r.out.find("b.csv line 2 repeats the run of " + tmp / "a.csv" + " line 2"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("c.csv line"), std::string::npos) << r.out;
}

TEST(Merge, RefusesWhatCannotBeJoined) {
  snaptest::TempDir tmp;
  const auto rows = shard_rows("stop-copy", 2);
  write_csv(tmp / "v1.csv", csv_header(), rows);
  const std::string other = std::to_string(kSchemaVersion + 1);  // a version this build does not write
  write_csv(tmp / "v2.csv", csv_header(), with_schema_version(rows, other));
  auto mixed = rows;
  mixed.push_back(with_schema_version(rows, other)[0]);
  write_csv(tmp / "mixed.csv", csv_header(), mixed);
  // The same version but a column short (e.g. a hand-edited file).
  {
    CsvTable t = parse_csv_table("t", csv_header() + "\n" + rows[0] + "\n");
    size_t c = t.require_column("notes");
    t.columns.erase(t.columns.begin() + long(c));
    for (auto& r : t.rows) r.erase(r.begin() + long(c));
    std::ofstream(tmp / "short.csv") << format_csv_table(t);
  }
  {
    CsvTable t = parse_csv_table("t", csv_header() + "\n" + rows[0] + "\n");
    size_t c = t.require_column("schema_version");
    t.columns.erase(t.columns.begin() + long(c));
    for (auto& r : t.rows) r.erase(r.begin() + long(c));
    std::ofstream(tmp / "unversioned.csv") << format_csv_table(t);
  }
  std::ofstream(tmp / "exists.csv") << "keep me\n";
  struct Case {
    std::string args;
    std::vector<std::string> must_mention;
  } cases[] = {
      {tmp / "o1.csv" + " " + tmp / "v1.csv" + " " + tmp / "v2.csv", {"schema_version", "v1.csv", "v2.csv"}},
      {tmp / "o2.csv" + " " + tmp / "mixed.csv", {"schema_version", "mixed.csv"}},
      {tmp / "o3.csv" + " " + tmp / "v1.csv" + " " + tmp / "short.csv", {"header", "short.csv", "notes"}},
      {tmp / "o4.csv" + " " + tmp / "unversioned.csv", {"schema_version", "unversioned.csv"}},
      {tmp / "o5.csv" + " " + tmp / "v1.csv" + " " + tmp / "nosuch.csv", {"nosuch.csv"}},
      {tmp / "exists.csv" + " " + tmp / "v1.csv", {"exists.csv", "--force"}},
      {tmp / "o6.csv", {"INPUTS"}},
  };
  for (const auto& c : cases) {
    auto r = snaptest::run_snapbench("merge " + c.args);
    EXPECT_EQ(r.rc, 2) << c.args << "\n" << r.out;
    for (const auto& m : c.must_mention) EXPECT_NE(r.out.find(m), std::string::npos) << m << " in\n" << r.out;
    EXPECT_LE(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "one line:\n" << r.out;
  }
  for (const char* out : {"o1.csv", "o2.csv", "o3.csv", "o4.csv", "o5.csv", "o6.csv"})
    EXPECT_FALSE(std::filesystem::exists(tmp / out)) << out << " written despite the error";
  EXPECT_EQ(read_lines(tmp / "exists.csv"), std::vector<std::string>{"keep me"});
  // --force replaces it.
  auto r = snaptest::run_snapbench("merge --force " + tmp / "exists.csv" + " " + tmp / "v1.csv");
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(read_lines(tmp / "exists.csv").size(), 3u);
}
