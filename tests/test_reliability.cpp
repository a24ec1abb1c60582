// Reliability found from outside (issue 8): whole CSV rows on a full disk, a checked sidecar, torn
// rows reported and repaired, --image checked before the run, and what a run that failed on its sink
// reports.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "harness/csv.h"
#include "harness/csv_table.h"
#include "harness/provenance.h"
#include "harness/run.h"
#include "tests/cli_helpers.h"
#include "tests/test_support.h"

using namespace snap;
using snaptest::Cmd;
using snaptest::run_snapbench;
using snaptest::TempDir;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// Runs fn in a child process whose files may not grow past `limit` bytes (RLIMIT_FSIZE, with SIGXFSZ
// ignored so a write past it fails with EFBIG, as on a full disk). Returns the child's exit code.
int with_file_size_limit(uint64_t limit, const std::function<int()>& fn) {
  fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {limit, limit};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(90);
    int rc = 91;
    try {
      rc = fn();
    } catch (...) {
      rc = 92;
    }
    fflush(nullptr);
    _exit(rc);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

RunResult some_result() {
  RunResult r;
  r.spec.strategy = "stop-copy";
  r.region_bytes = 4 << 20;
  r.reason = "";
  r.notes = std::string(300, 'n');  // a row of several hundred bytes
  return r;
}

const char* kTinyMatrix = R"(
name = "torn"
reps = 1
[fixed]
mem = "4M"
writers = 1
warmup = 0
"none.duration_ms" = 10
[axes]
strategy = ["none", "stop-copy"]
)";

}  // namespace

// ---- finding 2: a row is written whole or not at all ----

TEST(CsvRows, AFailedWriteLeavesTheFileAtItsLastCompleteRow) {
  TempDir dir;
  const std::string path = dir / "r.csv";
  { CsvAppender header_only(path); }
  const std::string before = slurp(path);
  ASSERT_EQ(before, csv_header() + "\n");
  // Room for 100 more bytes: the row (several hundred) starts, then the file size limit stops it.
  const int rc = with_file_size_limit(before.size() + 100, [&] {
    CsvAppender csv(path);
    try {
      csv.append(some_result());
    } catch (const std::runtime_error& e) {
      const std::string msg = e.what();
      return msg.find("the row was not written") != std::string::npos && msg.find("File too large") != std::string::npos
                 ? 0 : 3;
    }
    return 4;  // no error: the limit did not bite
  });
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(slurp(path), before) << "a torn row was left behind";
  // The next append (with room) writes a whole row on its own line.
  { CsvAppender(path).append(some_result()); }
  CsvTable t = read_csv_table(path);
  EXPECT_EQ(t.rows.size(), 1u);
}

TEST(CsvRows, ATornLastLineIsDroppedBeforeAppending) {
  TempDir dir;
  const std::string path = dir / "r.csv";
  { CsvAppender(path).append(some_result()); }
  const std::string whole = slurp(path);
  spit(path, whole + csv_row(some_result()).substr(0, 40));  // a crash mid-write
  testing::internal::CaptureStderr();
  uint64_t dropped;
  {
    CsvAppender csv(path);
    dropped = csv.dropped_torn_bytes();
    csv.append(some_result());
  }
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(dropped, 40u);
  EXPECT_NE(err.find("dropped a torn last line (40 bytes"), std::string::npos) << err;
  CsvTable t = read_csv_table(path);
  EXPECT_EQ(t.rows.size(), 2u);
}

TEST(CsvRows, TheSidecarIsCheckedAfterItsBytesAreOut) {
  TempDir dir;
  const std::string path = dir / "r.meta.json";
  spit(path, "{\"old\": true}\n");
  nlohmann::json big;
  big["filler"] = std::string(64 << 10, 'x');
  const int rc = with_file_size_limit(4096, [&] {
    try {
      write_json(path, big);
    } catch (const std::runtime_error& e) {
      return std::string(e.what()).find("cannot write " + path) != std::string::npos ? 0 : 3;
    }
    return 4;
  });
  ASSERT_EQ(rc, 0) << "a failed sidecar write must be an error";
  EXPECT_EQ(slurp(path), "{\"old\": true}\n") << "the sidecar was left empty or cut short";
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  write_json(path, big);
  EXPECT_EQ(nlohmann::json::parse(slurp(path)), big);
}

TEST(CsvRows, ReadersNameATornLastRow) {
  const std::string header = "a,b,c\n";
  for (const std::string& torn : {std::string("1,2,3\n4,5"), std::string("1,2,3\n4,\"5")}) {
    try {
      parse_csv_table("t.csv", header + torn);
      ADD_FAILURE() << "accepted " << torn;
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("t.csv line 3: torn last row"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("--resume"), std::string::npos) << e.what();
    }
  }
  // A bad line that is not the last, or a last line that ends with its newline, is not called torn.
  for (const std::string& bad : {std::string("1,2\n4,5,6\n"), std::string("1,2,3\n4,5\n")}) {
    try {
      parse_csv_table("t.csv", header + bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const UsageError& e) {
      EXPECT_EQ(std::string(e.what()).find("torn"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("fields where the header has 3"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(parse_csv_table("t.csv", header + "1,2,3").rows.size(), 1u);  // complete, only the newline missing
}

TEST(CsvRows, CompareAndMergeReportATornFileResumeRepairsIt) {
  TempDir dir;
  spit(dir / "spec.toml", kTinyMatrix);
  Cmd c = run_snapbench("matrix " + (dir / "spec.toml") + " --out " + (dir / "m") + " -q");
  ASSERT_EQ(c.rc, 0) << c.out;
  const std::string csv = dir / "m/results.csv";
  const std::string whole = slurp(csv);
  ASSERT_EQ(read_csv_table(csv).rows.size(), 2u);
  // Tear the last row in half, as a full disk or a crash mid-write would.
  const size_t last_row = whole.rfind('\n', whole.size() - 2) + 1;
  const std::string torn = whole.substr(0, last_row + (whole.size() - last_row) / 2);
  spit(csv, torn);
  c = run_snapbench("compare --baseline " + csv + " --current " + csv);
  EXPECT_EQ(c.rc, 2) << c.out;
  EXPECT_NE(c.out.find("line 3: torn last row"), std::string::npos) << c.out;
  c = run_snapbench("merge " + (dir / "merged.csv") + " " + csv);
  EXPECT_EQ(c.rc, 2) << c.out;
  EXPECT_NE(c.out.find("torn last row"), std::string::npos) << c.out;

  c = run_snapbench("matrix " + (dir / "spec.toml") + " --out " + (dir / "m") + " -q --resume");
  EXPECT_EQ(c.rc, 0) << c.out;
  EXPECT_NE(c.out.find("dropped a torn last line"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("1 runs done, 1 skipped"), std::string::npos) << c.out;
  CsvTable t = read_csv_table(csv);
  EXPECT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(slurp(csv).substr(0, last_row), whole.substr(0, last_row)) << "the complete rows were kept as they were";
}

// ---- finding 6: --image that cannot be written is bad input, found before the run ----

TEST(ExitCodes, ImageInAMissingDirectoryFailsBeforeTheRun) {
  RunSpec s = snaptest::verified_spec("stop-copy");
  s.image_path = "/nonexistent-snapbench-dir/x.img";
  EXPECT_THROW(resolve_spec(s), UsageError);
  Cmd c = run_snapbench("run --strategy stop-copy --mem 4M --warmup 0 --image /nonexistent-snapbench-dir/x.img");
  EXPECT_EQ(c.rc, 2) << c.out;
  EXPECT_NE(c.out.find("--image: cannot write '/nonexistent-snapbench-dir/x.img': directory "
                       "'/nonexistent-snapbench-dir' does not exist"),
            std::string::npos)
      << c.out;
  EXPECT_EQ(c.out.find("[1/1]"), std::string::npos) << "the run went ahead: " << c.out;
  TempDir dir;
  c = run_snapbench("run --strategy stop-copy --mem 4M --warmup 0 --image " + dir.path.string());
  EXPECT_EQ(c.rc, 2) << c.out;
  EXPECT_NE(c.out.find("is a directory"), std::string::npos) << c.out;
}

TEST(ExitCodes, MissingInputsAreBadInputEverywhere) {
  TempDir dir;
  const std::string missing = dir / "missing";
  for (const std::string& args : {"matrix " + missing + ".toml --out " + (dir / "o"), "image info " + missing,
                                  "compare --baseline " + missing + " --current " + missing,
                                  "merge " + (dir / "m.csv") + " " + missing}) {
    Cmd c = run_snapbench(args);
    EXPECT_EQ(c.rc, 2) << args << ": " << c.out;
  }
}

// ---- finding 8: a run that failed on its sink reports what it wrote, and verified=off ----

TEST(FailedSink, ReportsTheBytesWrittenAndNothingVerified) {
  int ran = 0;
  for (const std::string name : {"stop-copy", "precopy", "uffd-wp", "fork-cow"}) {
    for (bool verify : {true, false}) {
      RunSpec s = snaptest::verified_spec(name);
      s.verify = verify;
      s.sink = "fail:100000";
      RunResult r = run_once(s);
      SCOPED_TRACE(name + (verify ? " --verify" : ""));
      if (r.status == RunStatus::kUnsupported) continue;
      ++ran;
      EXPECT_EQ(r.status, RunStatus::kFailed) << r.reason;
      EXPECT_NE(r.reason.find("injected sink failure"), std::string::npos) << r.reason;
      EXPECT_EQ(r.verified, "off") << "nothing was verified: the image was never finished";
      EXPECT_EQ(r.image.image_bytes, 100000u) << "image_bytes is what the sink took";
    }
  }
  if (ran == 0) GTEST_SKIP() << "no strategy is supported here";
}
