// Restore strategies: every restore strategy restores an image of every snapshot strategy and
// verifies; a dead handler and a truncated image fail the run cleanly.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <cstring>
#include <string>

#include "cli_helpers.h"
#include "core/scoped.h"
#include "core/image.h"
#include "harness/restore_run.h"
#include "harness/run.h"
#include "restore/restore.h"
#include "strategies/strategy.h"

namespace {

using namespace snap;

size_t thread_count() {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) n += bool(e.path().filename().string().size());
  return n;
}

RunSpec tiny_restore(const std::string& strategy, const std::string& restore) {
  RunSpec s;
  s.strategy = strategy;
  s.restore = restore;
  s.mem_bytes = 8u << 20;
  s.writers = 2;
  s.rate = "20000pages/s";
  s.pattern = "hotset:0.1:0.9";
  s.warmup_s = 0.05;
  s.verify = true;
  s.restore_access = "mix:0.7";
  s.restore_window_s = 0.1;
  s.params["prefetch"]["record_s"] = "0.05";
  if (restore != "prefetch") s.params.erase("prefetch");
  return s;
}

struct Case {
  std::string strategy, restore;
};

class RestoreEachImage : public ::testing::TestWithParam<Case> {};

TEST_P(RestoreEachImage, RestoresAndVerifies) {
  const Case& c = GetParam();
  auto restorer = restore_registry().get(c.restore).make();
  if (Support s = restorer->probe(); !s.supported) GTEST_SKIP() << c.restore << ": " << s.reason;
  if (Support s = make_strategy(c.strategy)->probe(); !s.supported) GTEST_SKIP() << c.strategy << ": " << s.reason;
  for (const char* cache : {"warm", "cold"}) {
    RunSpec spec = tiny_restore(c.strategy, c.restore);
    spec.restore_cache = cache;
    RunResult r = run_once(spec);
    if (r.status == RunStatus::kUnsupported) GTEST_SKIP() << r.reason;
    ASSERT_EQ(r.status, RunStatus::kOk) << r.reason;
    EXPECT_EQ(r.verified, "pass");
    EXPECT_EQ(r.restore_verified, "pass") << cache;
    EXPECT_GE(r.resume_s, 0);
    EXPECT_GT(r.restore_accesses, 0u);
    EXPECT_GT(r.resident_ops_s, 0);
    EXPECT_GT(r.restore_index_s, 0);
    // Something of the image came in: read by the strategy, or (mmap) mapped from the flat file.
    EXPECT_GT(r.restore_read_bytes, 0u);
    if (c.restore == "uffd-lazy") {
      EXPECT_GT(r.restore_faults, 0u);
    }
  }
}

std::vector<Case> all_cases() {
  std::vector<Case> out;
  for (const auto& s : strategy_registry())
    if (s.produces_image && s.workloads.empty())
      for (const auto& r : restore_registry()) out.push_back({s.name, r.name});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Table, RestoreEachImage, ::testing::ValuesIn(all_cases()), [](const auto& info) {
  std::string n = info.param.strategy + "_" + info.param.restore;
  for (char& ch : n)
    if (ch == '-') ch = '_';
  return n;
});

// A handler that dies mid-restore: the run fails with the reason, every thread it started is gone
// (none left blocked in a fault), and the process goes on.
TEST(RestoreFailure, DeadHandlerFailsCleanly) {
  for (const char* r : {"uffd-lazy", "uffd-lazy-prefault", "prefetch"}) {
    if (Support s = restore_registry().get(r).make()->probe(); !s.supported) GTEST_SKIP() << s.reason;
    const size_t before = thread_count();
    RunSpec spec = tiny_restore("stop-copy", r);
    spec.params[r]["fail_after"] = "3";
    spec.restore_access = "read";
    spec.pattern = "uniform";
    RunResult res = run_once(spec);
    EXPECT_EQ(res.status, RunStatus::kFailed) << r;
    EXPECT_NE(res.reason.find("died"), std::string::npos) << res.reason;
    EXPECT_EQ(thread_count(), before) << r;
  }
}

TEST(RestoreFailure, DeadHandlerExitsOneWithTheReason) {
  if (Support s = restore_registry().get("uffd-lazy").make()->probe(); !s.supported) GTEST_SKIP() << s.reason;
  auto c = snaptest::run_snapbench("run --mem 8M --restore uffd-lazy --set uffd-lazy.fail_after=5 --restore-window 0.2");
  EXPECT_EQ(c.rc, 1) << c.out;
  EXPECT_NE(c.out.find("restore handler died after serving 5 faults"), std::string::npos) << c.out;
}

TEST(RestoreFailure, TruncatedImageFailsWithTheReason) {
  snaptest::TempDir dir;
  const std::string img = (dir.path / "run.img").string();
  RunSpec spec = tiny_restore("stop-copy", "uffd-lazy");
  spec.restore.clear();
  spec.image_path = img;
  ASSERT_EQ(run_once(spec).status, RunStatus::kOk);
  const auto size = std::filesystem::file_size(img);
  std::filesystem::resize_file(img, size - 5000);  // into the last record
  for (const auto& e : restore_registry()) {
    RunSpec rs = tiny_restore("stop-copy", e.name);
    RunResult res;
    res.spec = rs;
    const size_t before = thread_count();
    run_restore(rs, res, img);
    if (res.status == RunStatus::kUnsupported) continue;
    EXPECT_EQ(res.status, RunStatus::kFailed) << e.name;
    EXPECT_NE(res.reason.find("truncated"), std::string::npos) << res.reason;
    EXPECT_EQ(thread_count(), before);
  }
}

// The index agrees with the reader: each page's last record, zero pages as marks.
TEST(RestoreIndex, AgreesWithTheFlattenedImage) {
  snaptest::TempDir dir;
  const std::string img = (dir.path / "run.img").string();
  RunSpec spec = tiny_restore("precopy", "");  // precopy re-saves pages: later records must win
  spec.restore.clear();
  spec.populate = 0.5;
  spec.image_path = img;
  ASSERT_EQ(run_once(spec).status, RunStatus::kOk);
  const FlatImage flat = flatten_image(read_image_file(img));
  UniqueFd fd(::open(img.c_str(), O_RDONLY));
  const ImageIndex idx = build_image_index(fd.get());
  ASSERT_EQ(idx.where.size(), flat.header.region_pages);
  std::vector<uint8_t> page(4096);
  for (uint64_t p = 0; p < idx.where.size(); ++p) {
    if (!idx.has_data(p)) continue;
    ASSERT_EQ(::pread(fd.get(), page.data(), 4096, off_t(idx.where[p])), 4096);
    ASSERT_EQ(std::memcmp(page.data(), flat.memory.data() + p * 4096, 4096), 0) << "page " << p;
  }
}

TEST(RestoreCli, BadValuesAreUsageErrors) {
  EXPECT_EQ(snaptest::run_snapbench("run --mem 4M --restore nope").rc, 2);
  EXPECT_EQ(snaptest::run_snapbench("run --mem 4M --restore eager --restore-access mix:2").rc, 2);
  EXPECT_EQ(snaptest::run_snapbench("run --mem 4M --restore eager --restore-cache lukewarm").rc, 2);
  EXPECT_EQ(snaptest::run_snapbench("run --mem 4M --strategy none --restore eager").rc, 2);
}

}  // namespace
