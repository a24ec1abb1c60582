// Tests of the fork-cow strategy: the image is the fork instant, copy-on-write memory is measured,
// a failing / crashing / hung child is reported and reaped; then end to end through run_once.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>

#include "core/clock.h"
#include "core/error.h"
#include "core/image.h"
#include "core/region.h"
#include "harness/run.h"
#include "strategies/strategy.h"
#include "tests/cli_helpers.h"
#include "tests/test_support.h"

using namespace snap;

namespace {

// A sink over a MAP_SHARED buffer (so the parent sees what the forked child wrote), with switches
// for the failure paths: throw, die by SIGKILL, or hang once `trip_after` bytes have been taken.
class SharedBufferSink final : public Sink {
 public:
  enum class Trip { kNone, kThrow, kKillSelf, kHang };
  explicit SharedBufferSink(size_t capacity, Trip trip = Trip::kNone, uint64_t trip_after = 0)
      : capacity_(capacity), trip_(trip), trip_after_(trip_after), owner_(getpid()) {
    map_bytes_ = sizeof(Shared) + capacity;
    void* p = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap of the test sink");
    shared_ = new (p) Shared{};
  }
  ~SharedBufferSink() override { munmap(shared_, map_bytes_); }
  void write(const void* data, size_t len) override {
    const uint64_t off = shared_->used.load();
    if (trip_ != Trip::kNone && off + len > trip_after_) {
      if (trip_ == Trip::kThrow) throw SinkError("test sink refuses bytes past " + std::to_string(trip_after_));
      if (trip_ == Trip::kKillSelf && getpid() != owner_) kill(getpid(), SIGKILL);
      if (trip_ == Trip::kHang)
        for (;;) pause();
    }
    if (off + len > capacity_) throw SinkError("test sink full");
    std::memcpy(bytes() + off, data, len);
    shared_->used.store(off + len);
  }
  void finish() override { ++(getpid() == owner_ ? shared_->parent_finishes : shared_->child_finishes); }
  uint64_t bytes_written() const override { return shared_->used.load(); }
  std::string kind() const override { return "test-shared"; }
  bool readable() const override { return true; }
  std::vector<uint8_t> read_back() const override { return {bytes(), bytes() + bytes_written()}; }
  int parent_finishes() const { return shared_->parent_finishes.load(); }
  int child_finishes() const { return shared_->child_finishes.load(); }

 private:
  struct Shared {
    std::atomic<uint64_t> used{0};
    std::atomic<int> parent_finishes{0}, child_finishes{0};
  };
  uint8_t* bytes() const { return reinterpret_cast<uint8_t*>(shared_) + sizeof(Shared); }
  size_t capacity_, map_bytes_;
  Trip trip_;
  uint64_t trip_after_;
  pid_t owner_;
  Shared* shared_;
};

std::string note_value(const std::string& notes, const std::string& key) {
  std::istringstream in(notes);
  for (std::string kv; std::getline(in, kv, ';');)
    if (kv.rfind(key + "=", 0) == 0) return kv.substr(key.size() + 1);
  return "";
}

uint64_t note_u64(const std::string& notes, const std::string& key) {
  const std::string v = note_value(notes, key);
  EXPECT_FALSE(v.empty()) << "note " << key << " missing in '" << notes << "'";
  return v.empty() ? 0 : std::stoull(v);
}

// Processes whose parent is us, alive or zombie, named as the fork-cow child names itself.
int fork_cow_children() {
  int n = 0;
  DIR* d = opendir("/proc");
  if (!d) return -1;
  const pid_t me = getpid();
  while (dirent* e = readdir(d)) {
    if (!std::isdigit(static_cast<unsigned char>(e->d_name[0]))) continue;
    std::ifstream in(std::string("/proc/") + e->d_name + "/stat");
    std::string stat;
    std::getline(in, stat);
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    const std::string comm = stat.substr(stat.find('(') + 1, close - stat.find('(') - 1);
    std::istringstream rest(stat.substr(close + 2));
    char state;
    pid_t ppid;
    rest >> state >> ppid;
    n += ppid == me && comm == "snap-fork-cow";
  }
  closedir(d);
  return n;
}

// No zombie to reap and no fork-cow child still running.
void expect_no_child_left() {
  int status;
  errno = 0;
  const pid_t r = waitpid(-1, &status, WNOHANG);
  EXPECT_TRUE(r == 0 || (r < 0 && errno == ECHILD)) << "waitpid(-1, WNOHANG) reaped " << r;
  EXPECT_EQ(fork_cow_children(), 0);
}

struct Snap {
  std::unique_ptr<Strategy> strategy = make_strategy("fork-cow");
  StrategyMetrics metrics;
  ParamValues params;
  ParamValues none;
  explicit Snap(const std::map<std::string, std::string>& raw = {})
      : params("fork-cow", strategy->info().params, raw) {}
  void run(Region& region, WorkloadControl& control, Sink& sink) {
    SnapshotContext ctx{region, control, sink, metrics, params, nullptr, none};
    strategy->snapshot(ctx);
  }
};

size_t image_capacity(const Region& r) { return 4096 + r.pages() * (kPageSize + 16) + 4096; }

}  // namespace

TEST(ForkCow, ProbeAndContract) {
  auto s = make_strategy("fork-cow");
  EXPECT_EQ(s->info().name, "fork-cow");
  EXPECT_TRUE(s->probe().supported);
  EXPECT_EQ(s->info().consistency, ConsistencyPoint::kStart);
  EXPECT_FALSE(s->info().uses_tracker);
  EXPECT_TRUE(s->info().produces_image);
}

// The parent overwrites populated pages right after resume(), while the child is alive: the image
// must hold the fork-instant content, and each overwritten page must show up as exactly one 4 KiB
// copy-on-write duplicate — with THP too (Linux >= 5.8 splits a shared huge PMD on a write fault
// and copies 4 KiB, not 2 MiB). Writes to never-touched pages duplicate nothing.
TEST(ForkCow, ImageIsTheForkInstantAndCowCopiesAreCounted) {
  struct Case {
    double populate;
    bool thp;
    std::string sample_ms;  // "1": periodic samples too, which must not change the peak's bounds
  } cases[] = {{1.0, false, "0"}, {0.3, false, "1"}, {1.0, true, "1"}, {0.3, true, "0"}};
  for (const auto& c : cases) {
    SCOPED_TRACE("populate=" + std::to_string(c.populate) + " thp=" + std::to_string(c.thp) +
                 " sample_ms=" + c.sample_ms);
    Region region({32ull << 20, c.populate, c.thp, -1, 7});
    // One populated target per 2 MiB block, so with THP each write hits a different huge page.
    std::vector<size_t> targets, untouched;
    for (size_t block = 0; block < region.pages(); block += 512) {
      for (size_t p = block + 7; p < block + 512; ++p)
        if (!page_is_zero(region.page(p))) {
          targets.push_back(p);
          break;
        }
      // A never-touched page (only without THP, where a zero page really has no memory behind it).
      if (!c.thp) {
        for (size_t p = block + 300; p < block + 512; ++p)
          if (page_is_zero(region.page(p))) {
            untouched.push_back(p);
            break;
          }
      }
    }
    ASSERT_EQ(targets.size(), region.pages() / 512);
    if (!c.thp && c.populate < 1.0) {
      ASSERT_FALSE(untouched.empty());
    }

    auto overwrite = [&] {
      for (size_t p : targets) std::memset(region.page(p), 0xA5, 64);
      for (size_t p : untouched) std::memset(region.page(p), 0x5A, 64);
    };
    snaptest::TestControl control(region);
    control.after_resume = overwrite;
    SharedBufferSink sink(image_capacity(region));
    Snap snap({{"sample_ms", c.sample_ms}});
    snap.run(region, control, sink);

    EXPECT_EQ(control.pauses, 1);
    EXPECT_EQ(control.resumes, 1);
    EXPECT_EQ(control.consistency_points, 1);
    EXPECT_EQ(sink.child_finishes(), 1);   // the child finished its side of the sink
    EXPECT_EQ(sink.parent_finishes(), 1);  // and the parent its own copy, after reaping it
    expect_no_child_left();

    FlatImage flat = flatten_image(sink.read_back());
    EXPECT_EQ(flat.header.strategy, "fork-cow");
    EXPECT_EQ(flat.header.consistency, ConsistencyPoint::kStart);
    VerifyResult v = verify_image(flat, control.reference.data(), region.pages());
    EXPECT_TRUE(v.pass) << v.message;
    // Not vacuous: the region has moved on since the fork, the image has not.
    for (size_t p : targets) {
      EXPECT_NE(std::memcmp(region.page(p), flat.memory.data() + p * kPageSize, kPageSize), 0);
      EXPECT_EQ(std::memcmp(control.reference.data() + p * kPageSize, flat.memory.data() + p * kPageSize, kPageSize), 0);
    }
    const ImageStats& st = snap.metrics.image;
    EXPECT_EQ(st.pages_saved, region.pages());
    EXPECT_EQ(st.unique_pages, region.pages());
    EXPECT_EQ(st.duplicate_pages, 0u);
    EXPECT_EQ(st.image_bytes, sink.bytes_written());
    size_t zero_pages = 0;
    for (size_t p = 0; p < region.pages(); ++p) zero_pages += page_is_zero(control.reference.data() + p * kPageSize);
    EXPECT_EQ(st.zero_pages, zero_pages);

    EXPECT_GT(snap.metrics.freeze_s, 0.0);
    EXPECT_LT(snap.metrics.freeze_s, 1.0);
    // Each overwritten target is a copy. A never-touched page is one too where a read fault gave it a
    // page of its own (the test's page_is_zero and the reference copy read it before the fork); where
    // the read mapped the shared zero page, the parent's write allocates a page the child never had.
    const uint64_t expected_cow =
        (targets.size() + (snaptest::read_fault_maps_zero_page() ? 0 : untouched.size())) * kPageSize;
    const uint64_t cow_region = note_u64(snap.metrics.notes, "cow_region_bytes");
    EXPECT_GE(cow_region, expected_cow);
    EXPECT_LE(cow_region, expected_cow + 8 * kPageSize) << "more than 4 KiB per overwritten page";
    // The rest is the child's own writes (stack, the image writer's 1 MiB buffer...): small. Under
    // AddressSanitizer the child also reads shadow memory for every access, and where a read fault
    // allocates a page (no zero page: the AMD machine's pvm_no_zero_page=1) each shadow page it reads
    // is memory of its own: 5.3 MiB measured there. That is the instrumentation's, not the strategy's.
#if defined(__SANITIZE_ADDRESS__)
    const uint64_t child_own_bound = snaptest::read_fault_maps_zero_page() ? (4ull << 20) : (16ull << 20);
#else
    const uint64_t child_own_bound = 4ull << 20;
#endif
    EXPECT_GE(snap.metrics.extra_rss_bytes, cow_region);
    EXPECT_LE(snap.metrics.extra_rss_bytes, cow_region + child_own_bound);
    EXPECT_GT(note_u64(snap.metrics.notes, "child_pte_bytes"), 0u);
    EXPECT_GE(note_u64(snap.metrics.notes, "cow_samples"), 1u);  // at least the final one
  }
}

// Nothing written after the fork: no page of the region is duplicated.
TEST(ForkCow, IdleParentDuplicatesNoRegionPage) {
  Region region({16ull << 20, 1.0, false, -1, 3});
  snaptest::TestControl control(region);
  SharedBufferSink sink(image_capacity(region));
  Snap snap;
  snap.run(region, control, sink);
  EXPECT_EQ(note_u64(snap.metrics.notes, "cow_region_bytes"), 0u);
  EXPECT_LE(snap.metrics.extra_rss_bytes, 4ull << 20);
  EXPECT_TRUE(verify_image(flatten_image(sink.read_back()), control.reference.data(), region.pages()).pass);
}

TEST(ForkCow, ChildFailuresAreReportedAndReaped) {
  struct Case {
    const char* name;
    SharedBufferSink::Trip trip;
    std::map<std::string, std::string> params;
    std::string expected;  // substring of the error
  } cases[] = {
      {"sink error", SharedBufferSink::Trip::kThrow, {}, "image writer in child failed: test sink refuses bytes past 100000"},
      {"crash", SharedBufferSink::Trip::kKillSelf, {}, "child killed by signal 9"},
      {"hang", SharedBufferSink::Trip::kHang, {{"timeout_s", "0.3"}}, "did not finish within timeout_s"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Region region({8ull << 20, 1.0, false, -1, 5});
    snaptest::TestControl control(region);
    SharedBufferSink sink(image_capacity(region), c.trip, 100000);
    Snap snap(c.params);
    const uint64_t t0 = now_ns();
    try {
      snap.run(region, control, sink);
      ADD_FAILURE() << "snapshot did not throw";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(c.expected), std::string::npos) << e.what();
    }
    EXPECT_LT(ns_to_s(now_ns() - t0), 10.0);
    EXPECT_EQ(control.pauses, 1);
    EXPECT_EQ(control.resumes, 1);
    EXPECT_EQ(control.consistency_points, 1);
    EXPECT_EQ(sink.parent_finishes(), 0);
    expect_no_child_left();
  }
}

// ---- end to end through the harness ----

namespace {

RunSpec fork_spec(const std::string& pattern, const std::string& rate, double populate, bool thp) {
  RunSpec s = snaptest::verified_spec("fork-cow");
  s.pattern = pattern;
  s.rate = rate;
  s.populate = populate;
  s.thp = thp;
  s.warmup_s = 0.1;
  return s;
}

}  // namespace

TEST(ForkCow, EndToEndVerifiesAcrossWorkloadsPopulationAndThp) {
  struct Load {
    std::string pattern, rate;
  } loads[] = {{"uniform", "0"}, {"uniform", "100MiB/s"}, {"hotset:0.1:0.9", "max"}};
  for (const auto& load : loads)
    for (double populate : {1.0, 0.3})
      for (bool thp : {false, true}) {
        RunSpec s = fork_spec(load.pattern, load.rate, populate, thp);
        SCOPED_TRACE(load.pattern + " rate=" + load.rate + " populate=" + std::to_string(populate) +
                     " thp=" + std::to_string(thp));
        RunResult r = run_once(s);
        ASSERT_EQ(r.status, RunStatus::kOk) << r.reason;
        EXPECT_EQ(r.verified, "pass") << r.verify_detail;
        EXPECT_EQ(r.image.pages_saved, s.mem_bytes / kPageSize);
        EXPECT_EQ(r.image.duplicate_pages, 0u);
        EXPECT_GT(r.freeze_s, 0.0);
        const uint64_t cow_region = note_u64(r.notes, "cow_region_bytes");
        EXPECT_GE(r.extra_rss_bytes, cow_region);
        if (load.rate == "0") {
          EXPECT_EQ(r.write_count, 0u);
          EXPECT_EQ(cow_region, 0u);  // idle writers: no page of the region is duplicated
          EXPECT_LE(r.extra_rss_bytes, 4ull << 20);
        } else {
          EXPECT_GT(r.write_count, 0u);
          EXPECT_GT(cow_region, 0u);
          EXPECT_GT(r.extra_rss_bytes, 0u);
          // Each write can duplicate at most its own 4 KiB page.
          EXPECT_LE(cow_region, r.write_count * kPageSize);
        }
      }
}

// The image on disk, written by the child through an inherited descriptor (file) or pipe (exec).
TEST(ForkCow, EndToEndFileAndExecSinksLeaveAVerifiedImage) {
  snaptest::TempDir tmp;
  const std::string file_path = tmp / "file.img";
  const std::string exec_path = tmp / "exec.img";
  const std::string tee_path = tmp / "tee.img";

  RunSpec f = fork_spec("uniform", "100MiB/s", 0.5, false);
  f.sink = "file:" + file_path;
  f.fsync = true;
  RunResult rf = run_once(f);
  ASSERT_EQ(rf.status, RunStatus::kOk) << rf.reason;
  EXPECT_EQ(rf.verified, "pass") << rf.verify_detail;
  FlatImage from_file = flatten_image(read_file_bytes(file_path));
  EXPECT_EQ(from_file.stats.pages_saved, f.mem_bytes / kPageSize);
  EXPECT_EQ(read_file_bytes(file_path).size(), rf.image.image_bytes);

  // exec: the harness verifies its in-memory copy (and keeps it at tee_path); the file `cat` wrote
  // must be the same bytes, which means the command got EOF and was reaped with status 0.
  RunSpec e = fork_spec("hotset:0.1:0.9", "100MiB/s", 1.0, true);
  e.sink = "exec:cat > '" + exec_path + "'";
  e.image_path = tee_path;
  RunResult re = run_once(e);
  ASSERT_EQ(re.status, RunStatus::kOk) << re.reason;
  EXPECT_EQ(re.verified, "pass") << re.verify_detail;
  const std::vector<uint8_t> exec_bytes = read_file_bytes(exec_path);
  EXPECT_EQ(exec_bytes.size(), re.image.image_bytes);
  EXPECT_EQ(exec_bytes, read_file_bytes(tee_path));
  EXPECT_EQ(flatten_image(exec_bytes).stats.pages_saved, e.mem_bytes / kPageSize);

  // exec whose command fails: the parent's finish() reaps it and the run fails with its status.
  RunSpec bad = fork_spec("uniform", "0", 1.0, false);
  bad.sink = "exec:cat > /dev/null; exit 3";
  bad.verify = false;
  RunResult rb = run_once(bad);
  EXPECT_EQ(rb.status, RunStatus::kFailed);
  EXPECT_NE(rb.reason.find("exited with status 3"), std::string::npos) << rb.reason;
  expect_no_child_left();
}
