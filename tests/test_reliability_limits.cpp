// Reliability found from outside (issue 25): a run larger than the machine or longer than its limit is
// refused, a run ends at its time limit with nothing left, one results directory takes one matrix,
// the image reader stops on endless input, and requests are never dropped silently.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "core/error.h"
#include "core/image.h"
#include "harness/csv_table.h"
#include "harness/dir_lock.h"
#include "harness/run.h"
#include "harness/run_limits.h"
#include "tests/cli_helpers.h"
#include "tests/image_test_util.h"
#include "tests/test_support.h"

using namespace snap;
using snaptest::Cmd;
using snaptest::run_snapbench;
using snaptest::run_snapbench_shell;
using snaptest::TempDir;

namespace {

void spit(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }
void spit(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}
std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Whether a process whose command line contains `needle` is alive (reads /proc, not ps).
bool process_alive_now(const std::string& needle) {
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmd = slurp(e.path() / "cmdline");
    for (char& c : cmd)
      if (c == '\0') c = ' ';
    // A zombie has an empty cmdline; only live commands count.
    if (cmd.find(needle) != std::string::npos) return true;
  }
  return false;
}

// The same, allowing a killed process a moment to die (SIGKILL is delivered asynchronously, and an
// orphan is reaped by init): alive 3 s after the run ended is left behind.
bool process_with_cmdline(const std::string& needle) {
  for (int i = 0; i < 300; ++i) {
    if (!process_alive_now(needle)) return false;
    usleep(10000);
  }
  return true;
}

}  // namespace

// ---- item 1: a run larger than the machine is refused up front, naming both sizes ----

TEST(MemoryCheck, ARegionLargerThanMemAvailableIsRefusedAtOnceNamingBothSizes) {
  const auto t0 = std::chrono::steady_clock::now();
  Cmd c = run_snapbench_shell("SNAPBENCH_MEMAVAILABLE=64M ", "run --mem 1T --populate 1 --warmup 0");
  EXPECT_EQ(c.rc, 2) << c.out;
  EXPECT_LT(seconds_since(t0), 10.0) << "refused only after filling";
  EXPECT_NE(c.out.find("needs 1.0 TiB"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("64.0 MiB available (SNAPBENCH_MEMAVAILABLE)"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("--skip-memory-check"), std::string::npos) << c.out;
}

TEST(MemoryCheck, CountsTheVerifyCopiesTheMemorySinkAndForkCowsWorstCase) {
  RunSpec s;
  s.mem_bytes = 64ull << 20;
  const uint64_t region_only = run_memory_need(s).bytes;
  EXPECT_EQ(region_only, s.mem_bytes);
  s.verify = true;
  const MemoryNeed verified = run_memory_need(s);
  EXPECT_GE(verified.bytes, 3 * s.mem_bytes) << verified.parts;  // region, reference, flattened image
  EXPECT_NE(verified.parts.find("verify reference"), std::string::npos) << verified.parts;
  s.verify = false;
  s.sink = "memory";
  EXPECT_GT(run_memory_need(s).bytes, s.mem_bytes + s.mem_bytes / 2);
  s.sink = "null";
  s.strategy = "fork-cow";
  const MemoryNeed cow = run_memory_need(s);
  EXPECT_EQ(cow.bytes, 2 * s.mem_bytes) << cow.parts;
  EXPECT_NE(cow.parts.find("fork-cow"), std::string::npos) << cow.parts;
  // Just above what is "available": refused without allocating (populate 0 would allocate nothing anyway).
  setenv("SNAPBENCH_MEMAVAILABLE", std::to_string(cow.bytes - 4096).c_str(), 1);
  s.populate = 0;
  EXPECT_THROW(check_run_limits(s), UsageError);
  EXPECT_THROW(run_once(s), UsageError);
  s.skip_memory_check = true;
  EXPECT_NO_THROW(check_run_limits(s));
  unsetenv("SNAPBENCH_MEMAVAILABLE");
}

TEST(MemoryCheck, CountsARestoresStreamAndPrecopysResentPages) {
  RunSpec s;
  s.mem_bytes = 64ull << 20;
  // A restore without --verify or --image still keeps the stream in memory (the null sink cannot be
  // read back) and reads it back to write the image file the restore phase reads.
  s.restore = "eager";
  const MemoryNeed restore = run_memory_need(s);
  EXPECT_GE(restore.bytes, 3 * s.mem_bytes) << restore.parts;
  EXPECT_NE(restore.parts.find("in-memory stream"), std::string::npos) << restore.parts;
  EXPECT_NE(restore.parts.find("image read back"), std::string::npos) << restore.parts;
  // With a file sink the restore reads that file: nothing more than the region.
  s.sink = "file:/nonexistent-dir/x.img";
  EXPECT_EQ(run_memory_need(s).bytes, s.mem_bytes) << run_memory_need(s).parts;
  s.sink = "null";
  s.restore.clear();
  // precopy re-sends what the writers dirty: with verify, an idle run backs two images of stream, a
  // run whose writers dirty nearly as fast as the saver saves backs more, never past max_passes images.
  s.strategy = "precopy";
  s.verify = true;
  const uint64_t idle = run_memory_need(s).bytes;
  s.rate = "1GiB/s";
  const MemoryNeed busy = run_memory_need(s);
  EXPECT_GT(busy.bytes, idle) << busy.parts;
  s.params["precopy"]["max_passes"] = "2";
  EXPECT_LT(run_memory_need(s).bytes, busy.bytes);
  EXPECT_GE(run_memory_need(s).bytes, idle);
}

TEST(MemoryCheck, TheRealMemAvailableRefusesATerabyte) {
  if (available_memory_bytes() >= (1ull << 40)) GTEST_SKIP() << "this machine has a terabyte available";
  const auto t0 = std::chrono::steady_clock::now();
  Cmd c = run_snapbench("run --mem 1T --populate 1");
  EXPECT_EQ(c.rc, 2) << c.out;
  EXPECT_LT(seconds_since(t0), 10.0);
  EXPECT_NE(c.out.find("(MemAvailable)"), std::string::npos) << c.out;
}

TEST(MemoryCheck, AMatrixChecksEveryCaseBeforeItsFirstRun) {
  TempDir dir;
  spit(dir / "spec.toml", R"(
[fixed]
strategy = "stop-copy"
warmup = 0
writers = 1
[axes]
mem = ["4M", "512M"]
)");
  Cmd c = run_snapbench_shell("SNAPBENCH_MEMAVAILABLE=100M ", "matrix " + (dir / "spec.toml") + " --out " + (dir / "o") + " -q");
  EXPECT_EQ(c.rc, 2) << c.out;
  EXPECT_NE(c.out.find("case 'stop-copy mem=512M'"), std::string::npos) << c.out;
  EXPECT_FALSE(std::filesystem::exists(dir / "o/results.csv")) << "a run started, or the directory was written";
  // The key overrides it, as the flag does.
  spit(dir / "spec2.toml", R"(
[fixed]
strategy = "none"
"none.duration_ms" = 1
warmup = 0
writers = 1
skip_memory_check = true
[axes]
mem = ["4M", "8M"]
)");
  c = run_snapbench_shell("SNAPBENCH_MEMAVAILABLE=1M ", "matrix " + (dir / "spec2.toml") + " --out " + (dir / "o2") + " -q");
  EXPECT_EQ(c.rc, 0) << c.out;
}

// ---- item 6 (and 4): a run ends at its time limit, with no process left; too long is refused ----

TEST(TimeLimit, AnExecSinkThatNeverReadsFailsAtTheLimitWithNoProcessLeft) {
  int ran = 0;
  for (const std::string name : {"stop-copy", "precopy", "uffd-wp", "fork-cow"}) {
    SCOPED_TRACE(name);
    RunSpec s;
    s.strategy = name;
    s.mem_bytes = 16ull << 20;
    s.writers = 1;
    s.warmup_s = 0;
    const std::string marker = "sleep 987." + std::to_string(ran + 1);
    s.sink = "exec:" + marker;
    s.time_limit_s = 1;
    const auto t0 = std::chrono::steady_clock::now();
    RunResult r = run_once(s);
    const double took = seconds_since(t0);
    if (r.status == RunStatus::kUnsupported) continue;
    ++ran;
    EXPECT_EQ(r.status, RunStatus::kFailed) << r.reason;
    EXPECT_NE(r.reason.find("timed out after 1 s"), std::string::npos) << r.reason;
    EXPECT_LT(took, 6.0) << "the run outlived its limit by far";
    EXPECT_FALSE(process_with_cmdline(marker)) << "the sink's command was left running";
    // The next run works (no stop request left over).
    RunSpec next;
    next.mem_bytes = 4ull << 20;
    next.warmup_s = 0;
    next.writers = 1;
    EXPECT_EQ(run_once(next).status, RunStatus::kOk);
  }
  if (ran == 0) GTEST_SKIP() << "no strategy is supported here";
}

TEST(TimeLimit, ARunEstimatedLongerThanItsLimitIsRefused) {
  Cmd c = run_snapbench("run --mem 16M --bandwidth 1B/s --warmup 0");
  EXPECT_EQ(c.rc, 2) << c.out;
  EXPECT_NE(c.out.find("exceeds its time limit (86400 s"), std::string::npos) << c.out;
  c = run_snapbench("run --mem 16M --warmup 5 --time-limit 2");
  EXPECT_EQ(c.rc, 2) << c.out;
  EXPECT_NE(c.out.find("--time-limit"), std::string::npos) << c.out;
  RunSpec s;
  EXPECT_GE(run_time_limit_s(s), 60.0);
  s.time_limit_s = 7;
  EXPECT_EQ(run_time_limit_s(s), 7.0);
}

// ---- item 2: one results directory, one matrix; repeated runs are named ----

TEST(DirectoryLock, ASecondMatrixOnTheDirectorySaysWhoHoldsItAndRunsNothing) {
  TempDir dir;
  spit(dir / "spec.toml", R"(
[fixed]
strategy = "none"
"none.duration_ms" = 1
mem = "4M"
warmup = 0
writers = 1
)");
  std::filesystem::create_directories(dir / "o");
  {
    DirLock held(dir / "o", "the test");
    Cmd c = run_snapbench("matrix " + (dir / "spec.toml") + " --out " + (dir / "o") + " -q --resume");
    EXPECT_EQ(c.rc, 2) << c.out;
    EXPECT_NE(c.out.find("is in use by pid " + std::to_string(getpid())), std::string::npos) << c.out;
    EXPECT_NE(c.out.find("the test"), std::string::npos) << c.out;
    EXPECT_FALSE(std::filesystem::exists(dir / "o/results.csv"));
  }
  Cmd c = run_snapbench("matrix " + (dir / "spec.toml") + " --out " + (dir / "o") + " -q --resume");
  EXPECT_EQ(c.rc, 0) << c.out;
  EXPECT_EQ(read_csv_table(dir / "o/results.csv").rows.size(), 1u);
}

TEST(DirectoryLock, CompareNamesARunRecordedTwice) {
  TempDir dir;
  Cmd c = run_snapbench("run --strategy none --set none.duration_ms=1 --mem 4M --warmup 0 --writers 1 -q --out " +
                        (dir / "r.csv"));
  ASSERT_EQ(c.rc, 0) << c.out;
  const std::string text = slurp(dir / "r.csv");
  spit(dir / "double.csv", text + text.substr(text.find('\n') + 1));
  c = run_snapbench("compare --baseline " + (dir / "r.csv") + " --current " + (dir / "double.csv"));
  EXPECT_NE(c.out.find("1 row(s) repeat a run"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("line 3 repeats"), std::string::npos) << c.out;
  c = run_snapbench("merge " + (dir / "m.csv") + " " + (dir / "double.csv"));
  EXPECT_NE(c.out.find("repeats the run of"), std::string::npos) << c.out;
}

// ---- item 3: the image reader stops on an endless input ----

namespace {

// `image info` on a FIFO fed `prefix` and then zeros without end; the feeder is killed afterwards.
Cmd info_on_endless_fifo(const std::vector<uint8_t>& prefix, double& took) {
  TempDir dir;
  const std::string fifo = dir / "f";
  EXPECT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  fflush(nullptr);
  const pid_t feeder = fork();
  if (feeder == 0) {
    signal(SIGPIPE, SIG_DFL);
    const int fd = ::open(fifo.c_str(), O_WRONLY);
    if (fd < 0) _exit(1);
    if (::write(fd, prefix.data(), prefix.size()) < 0) _exit(1);
    std::vector<uint8_t> zeros(1 << 16, 0);
    for (;;)
      if (::write(fd, zeros.data(), zeros.size()) < 0) _exit(0);
  }
  const auto t0 = std::chrono::steady_clock::now();
  Cmd c = run_snapbench_shell("exec timeout 120 ", "image info " + fifo);
  took = seconds_since(t0);
  kill(feeder, SIGKILL);
  waitpid(feeder, nullptr, 0);
  return c;
}

}  // namespace

TEST(EndlessImage, VersionZeroIsRefusedAtByte8) {
  double took = 0;
  const std::string magic = "SNAPIMG1";
  Cmd c = info_on_endless_fifo(std::vector<uint8_t>(magic.begin(), magic.end()), took);
  EXPECT_EQ(c.rc, 1) << c.out;
  EXPECT_NE(c.out.find("unsupported image version 0 at byte 8"), std::string::npos) << c.out;
  EXPECT_LT(took, 60.0);
}

TEST(EndlessImage, AValidHeaderAndEndlessRecordsStopAtTheRecordBound) {
  std::vector<uint8_t> header = snaptest::header_only_image(4);
  header.resize(header.size() - image_detail::kTrailerBytes);  // no trailer: records follow
  double took = 0;
  Cmd c = info_on_endless_fifo(header, took);
  EXPECT_EQ(c.rc, 1) << c.out;
  // Zeros are data records of page 0: 1024 records per page of a 4-page region, then it stops.
  EXPECT_NE(c.out.find("record 4096 at byte"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("more than 1024 records per page"), std::string::npos) << c.out;
  EXPECT_LT(took, 60.0);
}

// ---- item 7: image verify checks the sizes before it builds the region ----

TEST(ImageVerify, ASizeMismatchIsFoundBeforeTheRegionIsBuilt) {
  TempDir dir;
  // A header declaring a region larger than any memory (4 PiB) against a 16 KiB reference: before the
  // fix the flatten refused it for memory (exit 1) instead of naming the sizes.
  spit(dir / "big.img", snaptest::header_only_image(1ull << 40));
  spit(dir / "ref.raw", std::string(16384, '\0'));
  Cmd c = run_snapbench("image verify " + (dir / "big.img") + " --reference " + (dir / "ref.raw"));
  EXPECT_EQ(c.rc, 2) << c.out;
  EXPECT_NE(c.out.find("has 16384 bytes, the image's region 4503599627370496"), std::string::npos) << c.out;
}

// ---- items 5 and 8: nothing dropped or guessed silently ----

TEST(NoSilentDrop, EachIsAnErrorNamingTheFlag) {
  struct Case {
    std::string args, expect;
  } cases[] = {
      {"run --image x.img --sink file:y.img", "--image: the file sink already keeps the image in 'y.img'"},
      {"run --image ''", "--image: an empty file name"},
      {"run --out ''", "--out: an empty file name"},
      {"run --fsync", "--fsync: only the file sink syncs"},
      {"run --strategy none --set none.duration_ms=1 --set none.duration_ms=2", "given twice ('1' and '2')"},
      {"run --rate 100MiB", "--rate: '100MiB' is not a rate: it needs /s"},
      {"run --mem 4095", "--mem: 4095 is not a whole number of 4096-byte pages"},
      {"matrix /dev/null --out o --max-runs -1", "--max-runs: expected a whole number"},
      {"image bogus f", "unknown subcommand 'bogus'"},
      {"image flatten /dev/null -o /nonexistent-snapbench-dir/x", "-o: cannot write '/nonexistent-snapbench-dir/x'"},
  };
  for (const auto& k : cases) {
    Cmd d = run_snapbench(k.args);
    EXPECT_EQ(d.rc, 2) << k.args << ": " << d.out;
    EXPECT_NE(d.out.find(k.expect), std::string::npos) << k.args << ": " << d.out;
  }
}

TEST(NoSilentDrop, SpecKeysInFixedAndAxesRatesWrittenTwoWaysAndErrorsNamingTheKey) {
  TempDir dir;
  spit(dir / "both.toml", "[fixed]\nmem = \"4M\"\n[axes]\nmem = [\"4M\", \"8M\"]\n");
  Cmd c = run_snapbench("matrix " + (dir / "both.toml") + " --out " + (dir / "o") + " --dry-run");
  EXPECT_EQ(c.rc, 2) << c.out;
  EXPECT_NE(c.out.find("axes.mem: also set in [fixed]"), std::string::npos) << c.out;

  spit(dir / "rates.toml", "[fixed]\nmem = \"4M\"\n[axes]\nrate = [\"100MiB/s\", \"100M/s\", \"25600pages/s\"]\n"
                           "sink = [\"null\", \"file:" + (dir / "x.img") + "\"]\nfsync = [true, false]\n");
  c = run_snapbench("matrix " + (dir / "rates.toml") + " --out " + (dir / "o") + " --dry-run");
  EXPECT_EQ(c.rc, 0) << c.out;
  // One rate, fsync folded away for the null sink: null, file+fsync, file without.
  EXPECT_NE(c.out.find("to run: 3 of 3"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("fsync for sinks other than file"), std::string::npos) << c.out;
  EXPECT_EQ(c.out.find("fsync=true rate=100MiB/s sink=null"), std::string::npos) << c.out;

  spit(dir / "bad.toml", "[fixed]\nmem = \"4M\"\nstrategy = \"precopy\"\ntracker = \"bogus\"\n");
  c = run_snapbench("matrix " + (dir / "bad.toml") + " --out " + (dir / "o") + " --dry-run");
  EXPECT_EQ(c.rc, 2) << c.out;
  EXPECT_NE(c.out.find("bad.toml: fixed.tracker: unknown tracker 'bogus'"), std::string::npos) << c.out;
  spit(dir / "bad2.toml", "[fixed]\nmem = \"4M\"\nstrategy = \"uffd-wp\"\n[axes]\n\"uffd-wp.chunk_pages\" = [0]\n");
  c = run_snapbench("matrix " + (dir / "bad2.toml") + " --out " + (dir / "o") + " --dry-run");
  EXPECT_EQ(c.rc, 2) << c.out;
  EXPECT_NE(c.out.find("bad2.toml: axes.uffd-wp.chunk_pages: "), std::string::npos) << c.out;
}

TEST(NoSilentDrop, ResumeDryRunReadsATornFileAsResumeWould) {
  TempDir dir;
  spit(dir / "spec.toml", "[fixed]\nstrategy = \"none\"\n\"none.duration_ms\" = 1\nmem = \"4M\"\nwarmup = 0\n"
                          "writers = 1\n[axes]\nseed = [1, 2]\n");
  Cmd c = run_snapbench("matrix " + (dir / "spec.toml") + " --out " + (dir / "o") + " -q");
  ASSERT_EQ(c.rc, 0) << c.out;
  const std::string csv = dir / "o/results.csv";
  const std::string whole = slurp(csv);
  spit(csv, whole.substr(0, whole.size() - 10));  // the last row torn
  c = run_snapbench("matrix " + (dir / "spec.toml") + " --out " + (dir / "o") + " --resume --dry-run");
  EXPECT_EQ(c.rc, 0) << c.out;
  EXPECT_NE(c.out.find("to run: 1 of 2"), std::string::npos) << c.out;
  EXPECT_EQ(slurp(csv), whole.substr(0, whole.size() - 10)) << "a dry run changed the file";
}

TEST(NoSilentDrop, AnImageThatCannotBeWrittenSaysWhyAndLeavesNoFile) {
  TempDir dir;
  const std::string img = dir / "x.img";
  fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {8192, 8192};  // a "full disk" for the image; the run itself writes no file
    setrlimit(RLIMIT_FSIZE, &rl);
    RunSpec s;
    s.mem_bytes = 1ull << 20;
    s.warmup_s = 0;
    s.writers = 1;
    s.image_path = img;
    RunResult r = run_once(s);
    const bool ok = r.status == RunStatus::kFailed && r.reason.find("--image: cannot write") != std::string::npos &&
                    r.reason.find("File too large") != std::string::npos;
    _exit(ok ? 0 : 3);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_FALSE(std::filesystem::exists(img)) << "a partial image was left";
}
