// Tests of the uffd-wp strategy: snapshots under in-test writers checked page by page, faults served
// while the sink is blocked, clean-up after a failing sink (pagemap uffd-wp bits, writable pages), and
// end-to-end runs through the harness over patterns, rates, population and THP.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <iostream>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/image.h"
#include "core/linux_compat.h"
#include "core/region.h"
#include "core/sink.h"
#include "core/uffd.h"
#include "harness/run.h"
#include "strategies/strategy.h"
#include "strategies/uffd_wp/sigbus.h"
#include "tests/test_support.h"

using namespace snap;

namespace {

bool uffd_wp_supported(std::string* why) {
  Support s = make_strategy("uffd-wp")->probe();
  if (!s.supported && why) *why = s.reason;
  return s.supported;
}

#define SKIP_WITHOUT_UFFD_WP()                                      \
  do {                                                              \
    std::string why;                                                \
    if (!uffd_wp_supported(&why)) GTEST_SKIP() << "uffd-wp: " << why; \
  } while (0)

// Writes one byte to every page from a helper thread; false if that does not finish in time (a page
// still protected with nobody to service the fault would block the thread for good).
bool every_page_writable_within(Region& region, std::chrono::milliseconds limit) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> finished = done->get_future();
  std::thread([&region, done] {
    for (size_t i = 0; i < region.pages(); ++i) {
      volatile uint8_t* p = region.page(i) + kPageSize - 1;
      *p = uint8_t(*p + 1);
    }
    done->set_value();
  }).detach();
  return finished.wait_for(limit) == std::future_status::ready;
}

// A sink that keeps the stream in a vector; optionally runs `on_first_write` (once) before taking
// the first bytes, which lets a test act while the saver is stuck inside the sink.
class VectorSink final : public Sink {
 public:
  std::function<void()> on_first_write;
  void write(const void* data, size_t len) override {
    if (on_first_write) {
      auto hook = std::move(on_first_write);
      on_first_write = nullptr;
      hook();
    }
    const auto* p = static_cast<const uint8_t*>(data);
    bytes_.insert(bytes_.end(), p, p + len);
  }
  void finish() override {}
  uint64_t bytes_written() const override { return bytes_.size(); }
  std::string kind() const override { return "memory"; }
  bool readable() const override { return true; }
  std::vector<uint8_t> read_back() const override { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

struct DirectRun {
  StrategyMetrics metrics;
  std::string error;  // what snapshot() threw, empty if it returned
};

// Runs the strategy directly (no harness) with the given parameters.
DirectRun snapshot_directly(Region& region, WorkloadControl& control, Sink& sink,
                            const std::map<std::string, std::string>& raw) {
  auto strategy = make_strategy("uffd-wp");
  ParamValues values("uffd-wp", strategy->info().params, raw);
  ParamValues none;
  DirectRun out;
  SnapshotContext ctx{region, control, sink, out.metrics, values, nullptr, none};
  try {
    strategy->snapshot(ctx);
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  return out;
}

bool note_has(const std::string& notes, const std::string& key_value) {
  return (";" + notes + ";").find(";" + key_value + ";") != std::string::npos;
}

// Every fault_wait mode (`saver` has no fault thread: the saver serves faults between chunks;
// `sigbus` neither: each writer saves its own page in its SIGBUS handler).
const char* const kFaultWaits[] = {"spin", "poll", "read", "saver", "sigbus"};

// False (and says why, as a skipped case on stdout) when this kernel cannot run `fault_wait`: only
// sigbus needs more than the strategy's probe (UFFD_FEATURE_SIGBUS).
bool fault_wait_runs_here(const std::string& fault_wait) {
  if (fault_wait != "sigbus") return true;
  const std::string why = uffd_wp::sigbus_unsupported_reason();
  if (!why.empty()) std::cout << "[  SKIPPED ] fault_wait=sigbus: " << why << "\n";
  return why.empty();
}

}  // namespace

TEST(UffdWp, ProbeFollowsTheKernelFeatures) {
  const UffdFeatures& f = uffd_features();
  Support s = make_strategy("uffd-wp")->probe();
  EXPECT_EQ(s.supported, f.available && f.has(UFFD_FEATURE_PAGEFAULT_FLAG_WP)) << s.reason;
  if (!s.supported) {
    EXPECT_FALSE(s.reason.empty());
  }
  EXPECT_EQ(make_strategy("uffd-wp")->info().consistency, ConsistencyPoint::kStart);
}

// The image equals the region at the consistency point, page for page, whatever the fault thread's
// wait mode, THP, population, staging and chunk size; nothing stays protected afterwards.
TEST(UffdWp, DirectSnapshotMatchesTheReferenceUnderWriters) {
  SKIP_WITHOUT_UFFD_WP();
  struct Case {
    const char* fault_wait;
    bool thp;
    double populate;
    const char* chunk_pages;
    const char* staging;
    const char* wp_unpopulated;
  } cases[] = {
      {"spin", false, 1.0, "64", "image", "true"},     {"poll", false, 0.3, "512", "separate", "true"},
      {"read", true, 1.0, "512", "none", "true"},      {"spin", true, 0.3, "1", "image", "true"},
      {"poll", true, 1.0, "7", "none", "true"},        {"read", false, 0.0, "4096", "image", "true"},
      {"poll", false, 0.3, "64", "separate", "false"}, {"spin", true, 0.3, "512", "none", "false"},
      {"saver", false, 1.0, "16", "image", "true"},    {"saver", true, 0.3, "64", "none", "false"},
      {"read", true, 1.0, "300", "image", "true"},     {"poll", false, 1.0, "4096", "separate", "true"},
      {"sigbus", false, 1.0, "64", "image", "true"},   {"sigbus", true, 0.3, "512", "none", "false"},
      {"sigbus", false, 0.0, "7", "separate", "true"}, {"sigbus", true, 1.0, "1", "image", "true"},
  };
  // An odd size too: the last chunk and the last bitmap word are partial.
  const uint64_t sizes[] = {16ull << 20, (16ull << 20) + 5 * kPageSize};
  for (size_t k = 0; k < std::size(cases); ++k) {
    const Case& c = cases[k];
    if (!fault_wait_runs_here(c.fault_wait)) continue;
    const uint64_t bytes = sizes[k % 2];
    SCOPED_TRACE(std::string(c.fault_wait) + " thp=" + std::to_string(c.thp) + " populate=" +
                 std::to_string(c.populate) + " chunk=" + c.chunk_pages + " staging=" + c.staging +
                 " wp_unpopulated=" + c.wp_unpopulated + " bytes=" + std::to_string(bytes));
    Region region(RegionOptions{bytes, c.populate, c.thp, -1, 7});
    snaptest::TestControl writers(region, 2, std::chrono::microseconds(5));
    VectorSink sink;
    DirectRun run = snapshot_directly(region, writers, sink,
                                      {{"fault_wait", c.fault_wait},
                                       {"chunk_pages", c.chunk_pages},
                                       {"staging", c.staging},
                                       {"wp_unpopulated", c.wp_unpopulated}});
    const uint64_t writes_after = writers.writes();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_GT(writers.writes(), writes_after) << "writers should keep running after the snapshot";
    writers.stop();
    ASSERT_EQ(run.error, "");
    EXPECT_EQ(writers.consistency_points, 1);
    EXPECT_FALSE(writers.paused);

    FlatImage flat = flatten_image(sink.read_back());
    EXPECT_EQ(flat.header.strategy, "uffd-wp");
    EXPECT_EQ(flat.header.consistency, ConsistencyPoint::kStart);
    VerifyResult v = verify_image(flat, writers.reference.data(), region.pages());
    EXPECT_TRUE(v.pass) << v.message;
    EXPECT_EQ(run.metrics.image.pages_saved, region.pages());
    EXPECT_EQ(run.metrics.image.unique_pages, region.pages());
    EXPECT_EQ(run.metrics.image.duplicate_pages, 0u);
    EXPECT_EQ(run.metrics.passes, 1u);
    EXPECT_GT(run.metrics.extra_rss_bytes, 0u);
    const bool markers = std::string(c.wp_unpopulated) == "true" && uffd_features().has(UFFD_FEATURE_WP_UNPOPULATED);
    EXPECT_TRUE(note_has(run.metrics.notes, markers ? "wp_unpopulated=1" : "wp_unpopulated=0")) << run.metrics.notes;
    EXPECT_EQ(snaptest::pages_still_write_protected(region.base(), region.pages()), 0u);
    EXPECT_TRUE(every_page_writable_within(region, std::chrono::seconds(5)));
  }
}

// While the saver is stuck in the sink, writes to pages it has not reached must still complete:
// the fault thread copies them aside without touching the sink. The image keeps their old content.
TEST(UffdWp, FaultsAreServedWhileTheSinkIsBlocked) {
  SKIP_WITHOUT_UFFD_WP();
  struct Case {
    const char* fault_wait;
    bool thp;
    const char* wp_unpopulated;  // "false": never-touched pages are pre-faulted by reading instead
  } cases[] = {{"spin", false, "true"}, {"spin", true, "true"},  {"poll", false, "true"}, {"poll", true, "true"},
               {"read", false, "true"}, {"read", true, "true"},  {"poll", false, "false"}, {"read", true, "false"},
               {"sigbus", false, "true"}, {"sigbus", true, "true"}, {"sigbus", false, "false"}};
  for (const auto& [wait, thp, wp_unpopulated] : cases) {
    if (!fault_wait_runs_here(wait)) continue;
    {
      SCOPED_TRACE(std::string(wait) + (thp ? " thp" : " no-thp") + " wp_unpopulated=" + wp_unpopulated);
      Region region(RegionOptions{16ull << 20, 0.5, thp, -1, 3});
      snaptest::TestControl writers(region, 0, std::chrono::microseconds(0));  // the test writes itself
      // Pages far ahead of the saver (which saves in address order): one with content, and one
      // zapped back to the never-touched state (no page table entry: without WP_UNPOPULATED only
      // the pre-fault makes it fault). Reading a page would map the zero page, so nothing reads it.
      const std::vector<size_t> targets = {region.pages() - 3, region.pages() - 2};
      std::memset(region.page(targets[0]), 0x3C, kPageSize);
      ASSERT_EQ(madvise(region.page(targets[1]), kPageSize, MADV_DONTNEED), 0);
      bool writes_completed = false;
      std::promise<void> done;
      std::future<void> finished = done.get_future();
      std::thread writer;  // joined after snapshot(), whose clean-up releases it if it is stuck
      VectorSink sink;
      sink.on_first_write = [&] {
        writer = std::thread([&region, &targets, &done] {
          for (size_t t : targets) std::memset(region.page(t), 0xA5, kPageSize);
          done.set_value();
        });
        writes_completed = finished.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
      };
      DirectRun run = snapshot_directly(region, writers, sink, {{"fault_wait", wait}, {"wp_unpopulated", wp_unpopulated}});
      if (writer.joinable()) writer.join();
      ASSERT_EQ(run.error, "");
      EXPECT_TRUE(writes_completed) << "a write fault waited for the blocked sink";
      EXPECT_GE(run.metrics.faults, targets.size());
      FlatImage flat = flatten_image(sink.read_back());
      VerifyResult v = verify_image(flat, writers.reference.data(), region.pages());
      EXPECT_TRUE(v.pass) << v.message;
      for (size_t t : targets) {
        EXPECT_EQ(std::memcmp(flat.memory.data() + t * kPageSize, writers.reference.data() + t * kPageSize, kPageSize), 0);
        EXPECT_EQ(region.page(t)[100], 0xA5);  // the write itself went through
      }
      EXPECT_EQ(run.metrics.image.duplicate_pages, 0u);
      EXPECT_EQ(snaptest::pages_still_write_protected(region.base(), region.pages()), 0u);
    }
  }
}

// A one-slot ring fills up while the saver is stuck in the sink: the fault thread copies fault A
// aside, then must wait for the saver to free the slot before it can take fault B (back-pressure),
// and meanwhile fault C waits unread in the queue. Once the sink moves again everything completes;
// with saver_serves_faults the saver itself picks up C, since it looks at the queue before it
// drains the ring. Each step waits for the observable state it needs (a write done, the fault
// thread spinning on the full ring, a writer asleep in its fault) rather than for a fixed time, so
// a loaded machine cannot reorder them.
TEST(UffdWp, FullCopyAsideRingAppliesBackPressure) {
  SKIP_WITHOUT_UFFD_WP();
  for (const char* saver_serves : {"true", "false"}) {
    SCOPED_TRACE(std::string("saver_serves_faults=") + saver_serves);
    Region region(RegionOptions{16ull << 20, 1.0, false, -1, 5});
    snaptest::TestControl writers(region, 0, std::chrono::microseconds(0));
    std::atomic<int> written{0};
    std::atomic<pid_t> tid_c{-1};
    bool a_done = false, b_taken = false, c_asleep = false;
    int written_while_blocked = -1;
    std::vector<std::thread> faulting;
    auto fault_on = [&](size_t k) {
      faulting.emplace_back([&region, &written, &tid_c, k] {
        if (k == 3) tid_c.store(pid_t(gettid()));
        region.page(region.pages() - k * 10)[0] = 0x5A;
        written.fetch_add(1);
      });
    };
    VectorSink sink;
    sink.on_first_write = [&] {
      const pid_t fault_thread = snaptest::thread_named("snap-uffd-fault");
      fault_on(1);
      a_done = snaptest::wait_until([&] { return written.load() == 1; }) &&
               snaptest::wait_until([&] { return snaptest::thread_state(fault_thread) == 'S'; });  // back in poll()
      fault_on(2);
      // The fault thread leaves poll() to spin on the full ring once it has read B.
      b_taken = snaptest::wait_until([&] { return snaptest::thread_state(fault_thread) == 'R'; });
      fault_on(3);
      c_asleep = snaptest::wait_until([&] { return tid_c.load() > 0 && snaptest::thread_state(tid_c.load()) == 'S'; });
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // would let a wrongly woken writer finish
      written_while_blocked = written.load();
    };
    DirectRun run = snapshot_directly(region, writers, sink,
                                      {{"fault_wait", "poll"},
                                       {"ring_pages", "1"},
                                       {"ring_budget_pages", "1"},
                                       {"saver_serves_faults", saver_serves}});
    for (auto& t : faulting) t.join();
    ASSERT_EQ(run.error, "");
    ASSERT_TRUE(a_done) << "fault A was not served while the sink was stuck";
    ASSERT_TRUE(b_taken) << "the fault thread never took fault B";
    ASSERT_TRUE(c_asleep) << "the writer of fault C never slept in its fault";
    EXPECT_EQ(written_while_blocked, 1) << "only the fault that fits the ring completes while the sink is stuck";
    EXPECT_EQ(written.load(), 3);
    EXPECT_FALSE(note_has(run.metrics.notes, "ring_full_waits=0")) << run.metrics.notes;
    if (std::string(saver_serves) == "true") {
      EXPECT_FALSE(note_has(run.metrics.notes, "saver_faults=0")) << run.metrics.notes;
    } else {
      EXPECT_TRUE(note_has(run.metrics.notes, "saver_faults=0")) << run.metrics.notes;
    }
    EXPECT_GE(run.metrics.faults, 3u);
    FlatImage flat = flatten_image(sink.read_back());
    EXPECT_TRUE(verify_image(flat, writers.reference.data(), region.pages()).pass);
    EXPECT_EQ(run.metrics.image.duplicate_pages, 0u);
  }
}

// A sink that throws mid-snapshot: the error comes out of snapshot(), and afterwards no page is
// protected, every page is writable, the writers run, and the strategy works again.
TEST(UffdWp, FailingSinkLeavesNothingProtected) {
  SKIP_WITHOUT_UFFD_WP();
  for (const char* wait : kFaultWaits) {
    if (!fault_wait_runs_here(wait)) continue;
    for (int variant = 0; variant < 3; ++variant) {
      // The release thread (with THP, to keep the test short) must not leave a queued chunk protected;
      // nor lazy release its saved pages, which it leaves protected until the end.
      const bool thp = variant == 1;
      const char* release_thread = thp ? "true" : "false";
      const char* release = variant == 2 ? "lazy" : "chunk";
      SCOPED_TRACE(std::string(wait) + (thp ? " thp" : " no-thp") + " release_thread=" + release_thread +
                   " release=" + release);
      Region region(RegionOptions{32ull << 20, 0.5, thp, -1, 11});
      snaptest::TestControl writers(region, 2, std::chrono::microseconds(2));
      auto failing = make_sink(SinkOptions{"fail:100000", false, 0, 0});
      DirectRun run = snapshot_directly(region, writers, *failing,
                                        {{"fault_wait", wait}, {"release_thread", release_thread}, {"release", release}});
      EXPECT_NE(run.error.find("injected"), std::string::npos) << run.error;
      EXPECT_FALSE(writers.paused);
      EXPECT_EQ(snaptest::pages_still_write_protected(region.base(), region.pages()), 0u);
      EXPECT_TRUE(every_page_writable_within(region, std::chrono::seconds(5)));
      // Waited for rather than slept on: under the sanitizers on a loaded machine 20 ms once passed
      // without a write; a writer left blocked in a fault never writes again.
      const uint64_t before = writers.writes();
      EXPECT_TRUE(snaptest::wait_until([&] { return writers.writes() > before; })) << "a writer was left blocked";

      VectorSink sink;
      DirectRun again = snapshot_directly(region, writers, sink,
                                          {{"fault_wait", wait}, {"release_thread", release_thread}, {"release", release}});
      writers.stop();
      ASSERT_EQ(again.error, "");
      EXPECT_TRUE(verify_image(flatten_image(sink.read_back()), writers.reference.data(), region.pages()).pass);
    }
  }
}

TEST(UffdWp, UnknownFaultWaitIsRejected) {
  // The declared choices reject a bad value before any snapshot starts: a usage error (exit 2).
  auto strategy = make_strategy("uffd-wp");
  for (const char* param : {"fault_wait", "fault_sched"}) {
    try {
      ParamValues values("uffd-wp", strategy->info().params, {{param, "sleep"}});
      ADD_FAILURE() << param << "=sleep accepted";
    } catch (const UsageError& e) {
      EXPECT_NE(std::string(e.what()).find(param), std::string::npos) << e.what();
    }
  }
  RunSpec spec;
  spec.strategy = "uffd-wp";
  spec.mem_bytes = 1ull << 20;
  spec.params["uffd-wp"]["fault_wait"] = "sleep";
  EXPECT_THROW(run_once(spec), UsageError);
}

// ---- through the harness ----

namespace {

RunSpec uffd_spec() { return snaptest::verified_spec("uffd-wp"); }

}  // namespace

TEST(UffdWp, EndToEndVerifiesAcrossPatternsPopulationAndThp) {
  SKIP_WITHOUT_UFFD_WP();
  struct Load {
    const char* pattern;
    const char* rate;
  } loads[] = {{"uniform", "0"}, {"uniform", "50MiB/s"}, {"uniform", "max"}, {"hotset:0.1:0.9", "400MiB/s"}};
  for (const char* wait : {"read", "sigbus"}) {
  if (!fault_wait_runs_here(wait)) continue;
  for (const auto& load : loads) {
    for (double populate : {1.0, 0.3}) {
      for (bool thp : {false, true}) {
        RunSpec s = uffd_spec();
        s.params["uffd-wp"]["fault_wait"] = wait;
        s.pattern = load.pattern;
        s.rate = load.rate;
        s.populate = populate;
        s.thp = thp;
        SCOPED_TRACE(std::string(wait) + " " + load.pattern + " " + load.rate + " populate=" +
                     std::to_string(populate) + (thp ? " thp" : ""));
        RunResult r = run_once(s);
        EXPECT_EQ(r.status, RunStatus::kOk) << r.reason;
        EXPECT_EQ(r.verified, "pass") << r.verify_detail;
        EXPECT_EQ(r.image.duplicate_pages, 0u);
        EXPECT_EQ(r.image.pages_saved, s.mem_bytes / kPageSize);
        EXPECT_EQ(r.passes, 1u);
        EXPECT_GT(r.freeze_s, 0.0);
        EXPECT_LE(r.downtime_s, r.completion_s);
        if (std::string(load.rate) == "0") {
          EXPECT_EQ(r.faults, 0u);
        }
      }
    }
  }
  }
}

// Every fault-servicing variant verifies, and the notes say which wait mode and scheduling policy
// were in force (a policy the process may not use falls back to normal).
TEST(UffdWp, EndToEndEveryFaultServicingVariant) {
  SKIP_WITHOUT_UFFD_WP();
  struct Case {
    const char* fault_wait;
    const char* fault_sched;
    const char* expected_sched;  // "fifo|normal": either, depending on permission
    const char* staging;
    const char* saver_serves_faults;
    const char* saver_yield;
  } cases[] = {
      {"read", "auto", "fifo|normal", "image", "true", "true"},  {"read", "normal", "normal", "none", "true", "false"},
      {"poll", "auto", "fifo|normal", "separate", "false", "true"}, {"poll", "idle", "idle|normal", "none", "true", "true"},
      {"spin", "auto", "normal", "image", "true", "true"},       {"spin", "fifo", "normal", "separate", "false", "false"},
      {"spin", "idle", "idle|normal", "none", "true", "true"},   {"saver", "auto", "none", "image", "true", "true"},
      {"sigbus", "auto", "none", "image", "true", "true"},      {"sigbus", "auto", "none", "none", "false", "false"},
  };
  for (const auto& c : cases) {
    if (!fault_wait_runs_here(c.fault_wait)) continue;
    RunSpec s = uffd_spec();
    s.rate = "200MiB/s";
    s.params["uffd-wp"] = {{"fault_wait", c.fault_wait},
                           {"fault_sched", c.fault_sched},
                           {"staging", c.staging},
                           {"saver_serves_faults", c.saver_serves_faults},
                           {"saver_yield", c.saver_yield}};
    SCOPED_TRACE(std::string(c.fault_wait) + " sched=" + c.fault_sched + " staging=" + c.staging +
                 " saver_serves_faults=" + c.saver_serves_faults + " saver_yield=" + c.saver_yield);
    RunResult r = run_once(s);
    EXPECT_EQ(r.status, RunStatus::kOk) << r.reason;
    EXPECT_EQ(r.verified, "pass") << r.verify_detail;
    EXPECT_EQ(r.image.duplicate_pages, 0u);
    EXPECT_TRUE(note_has(r.notes, std::string("fault_wait=") + c.fault_wait)) << r.notes;
    bool sched_ok = false;
    std::string expected = c.expected_sched;
    for (size_t from = 0; from <= expected.size();) {
      size_t bar = expected.find('|', from);
      if (bar == std::string::npos) bar = expected.size();
      sched_ok |= note_has(r.notes, "fault_sched=" + expected.substr(from, bar - from));
      from = bar + 1;
    }
    EXPECT_TRUE(sched_ok) << r.notes;
  }
}

// The saver un-protects each chunk once it is copied (or queues it to the release thread): when the
// first 1 MiB of the image reaches the sink the first chunks are writable again, long before the
// end (where unregistering would clear every protection anyway). No writers: their faults would put
// pages into the image ahead of the saver's walk, so the first sink write could come before the saver
// passed the chunks checked (under load it did). With each staging mode the image verifies with no
// duplicate and nothing is left protected; the release thread under writers is covered by
// FailingSinkLeavesNothingProtected.
TEST(UffdWp, ChunksAreReleasedBehindTheSaver) {
  SKIP_WITHOUT_UFFD_WP();
  struct Case {
    const char* staging;
    const char* release_thread;
    const char* fault_wait;
  } cases[] = {{"image", "false", "read"}, {"image", "true", "read"},   {"separate", "true", "read"},
               {"none", "true", "read"},   {"image", "false", "sigbus"}, {"none", "true", "sigbus"}};
  for (const auto& c : cases) {
    if (!fault_wait_runs_here(c.fault_wait)) continue;
    SCOPED_TRACE(std::string("staging=") + c.staging + " release_thread=" + c.release_thread + " fault_wait=" +
                 c.fault_wait);
    Region region(RegionOptions{(16ull << 20) + 3 * kPageSize, 0.7, false, -1, 13});
    snaptest::TestControl writers(region, 0, std::chrono::microseconds(0));
    constexpr size_t kEarlyPages = 128;  // four 32-page chunks; the first sink write comes >= 255 pages in
    bool early_released = false;
    VectorSink sink;
    sink.on_first_write = [&] {
      early_released = snaptest::wait_until(
          [&] { return snaptest::pages_still_write_protected(region.base(), kEarlyPages) == 0; },
          std::chrono::seconds(5));
    };
    DirectRun run = snapshot_directly(region, writers, sink,
                                      {{"release_thread", c.release_thread},
                                       {"staging", c.staging},
                                       {"chunk_pages", "32"},
                                       {"fault_wait", c.fault_wait}});
    writers.stop();
    ASSERT_EQ(run.error, "");
    EXPECT_TRUE(early_released) << "the first chunks were still write-protected when the image reached the sink";
    VerifyResult v = verify_image(flatten_image(sink.read_back()), writers.reference.data(), region.pages());
    EXPECT_TRUE(v.pass) << v.message;
    EXPECT_EQ(run.metrics.image.duplicate_pages, 0u);
    EXPECT_EQ(run.metrics.image.unique_pages, region.pages());
    EXPECT_EQ(snaptest::pages_still_write_protected(region.base(), region.pages()), 0u);
  }
}


// Lazy release (release=lazy) leaves every saved page protected while the saver walks on: when the
// first 1 MiB of the image reaches the sink the first chunks are still protected (the opposite of
// ChunksAreReleasedBehindTheSaver), and nothing is protected once the snapshot is over. No writers, so
// no fault releases a page early.
TEST(UffdWp, LazyReleaseKeepsSavedPagesProtectedUntilTheEnd) {
  SKIP_WITHOUT_UFFD_WP();
  Region region(RegionOptions{(16ull << 20) + 3 * kPageSize, 1.0, false, -1, 17});
  snaptest::TestControl writers(region, 0, std::chrono::microseconds(0));
  constexpr size_t kEarlyPages = 128;  // four 32-page chunks; the first sink write comes >= 255 pages in
  size_t early_protected = 0;
  VectorSink sink;
  sink.on_first_write = [&] { early_protected = snaptest::pages_still_write_protected(region.base(), kEarlyPages); };
  DirectRun run = snapshot_directly(region, writers, sink, {{"release", "lazy"}, {"chunk_pages", "32"}});
  writers.stop();
  ASSERT_EQ(run.error, "");
  EXPECT_EQ(early_protected, kEarlyPages) << "lazy release un-protected saved pages no writer touched";
  EXPECT_TRUE(note_has(run.metrics.notes, "release=lazy")) << run.metrics.notes;
  VerifyResult v = verify_image(flatten_image(sink.read_back()), writers.reference.data(), region.pages());
  EXPECT_TRUE(v.pass) << v.message;
  EXPECT_EQ(run.metrics.image.duplicate_pages, 0u);
  EXPECT_EQ(snaptest::pages_still_write_protected(region.base(), region.pages()), 0u);
}

// Under writers, every fault-servicing mode with lazy release: writes to pages the saver saved and
// left protected are released without a copy, each page is saved once, the image verifies and nothing
// stays protected. A write to a saved page is only un-protected: it never appears as a fault copy.
TEST(UffdWp, LazyReleaseVerifiesUnderWritersWithEveryFaultWait) {
  SKIP_WITHOUT_UFFD_WP();
  for (const char* wait : kFaultWaits) {
    if (!fault_wait_runs_here(wait)) continue;
    for (const char* staging : {"image", "none"}) {
      SCOPED_TRACE(std::string(wait) + " staging=" + staging);
      RunSpec s = uffd_spec();
      s.rate = "200MiB/s";
      s.populate = 0.6;
      s.params["uffd-wp"] = {{"fault_wait", wait}, {"release", "lazy"}, {"staging", staging}};
      RunResult r = run_once(s);
      EXPECT_EQ(r.status, RunStatus::kOk) << r.reason;
      EXPECT_EQ(r.verified, "pass") << r.verify_detail;
      EXPECT_EQ(r.image.duplicate_pages, 0u);
      EXPECT_EQ(r.image.pages_saved, s.mem_bytes / kPageSize);
      EXPECT_TRUE(note_has(r.notes, "release=lazy")) << r.notes;
    }
  }
}

TEST(UffdWp, LazyReleaseRefusesTheReleaseThread) {
  SKIP_WITHOUT_UFFD_WP();
  RunSpec s = uffd_spec();
  s.params["uffd-wp"] = {{"release", "lazy"}, {"release_thread", "true"}};
  // Refused when the snapshot starts (the strategy reads its parameters there): a failed run naming
  // the combination, before any page is protected.
  RunResult r = run_once(s);
  EXPECT_EQ(r.status, RunStatus::kFailed);
  EXPECT_NE(r.reason.find("release=chunk"), std::string::npos) << r.reason;
}
