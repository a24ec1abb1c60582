// The writer threads: rate pacing, pause/resume/stop, idle writers, phases and the stamps in the pages.
#include <gtest/gtest.h>
#include <numa.h>
#include <numaif.h>
#include <sched.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <future>
#include <set>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/error.h"
#include "core/region.h"
#include "tests/test_support.h"
#include "workloads/threads.h"

using namespace snap;
using namespace std::chrono_literals;

namespace {

WorkloadOptions workload(int writers, double rate, const std::string& pattern = "uniform") {
  WorkloadOptions w;
  w.writers = writers;
  w.rate_pages = rate;
  w.pattern = pattern;
  w.seed = 3;
  return w;
}

// Runs `fn` on another thread; a hang fails the test at once instead of at the ctest timeout.
void must_finish_within(std::chrono::milliseconds limit, const std::function<void()>& fn, const char* what) {
  auto done = std::async(std::launch::async, fn);
  if (done.wait_for(limit) != std::future_status::ready) {
    ADD_FAILURE() << what << " did not return within " << limit.count() << " ms";
    std::_Exit(1);  // the stuck thread cannot be joined
  }
  done.get();
}

double load_average() {
  std::ifstream in("/proc/loadavg");
  double one_minute = 0;
  in >> one_minute;
  return one_minute;
}

std::string load_text() {
  return "load average " + std::to_string(load_average()) + " on " +
         std::to_string(std::thread::hardware_concurrency()) + " CPUs";
}

// More runnable threads than twice the CPUs: wake-ups are then often late by milliseconds.
bool overloaded() { return load_average() > 2.0 * std::thread::hardware_concurrency(); }

}  // namespace

TEST(WorkloadRate, AchievedRateIsNearTarget) {
  struct Case {
    int writers;
    double rate_pages;
  } cases[] = {{2, 20000}, {2, (50 << 20) / 4096.0}, {1, 1000}};
  for (const auto& c : cases) {
    SCOPED_TRACE(std::to_string(c.writers) + " writers at " + std::to_string(c.rate_pages) + " pages/s");
    // Exceeding the target is always a pacing bug. Falling short can also mean the writers were not
    // scheduled in time (the 2 ms burst cap forgets older debt), as on a CI box busy with builds, so
    // a short run is retried before it counts as a failure.
    std::string attempts;
    bool near = false;
    for (int attempt = 0; attempt < 3 && !near; ++attempt) {
      Region region(snaptest::small_region());
      ThreadWorkload wl(region, workload(c.writers, c.rate_pages));
      const uint64_t t0 = now_ns(), w0 = wl.total_writes();
      std::this_thread::sleep_for(1s);
      const uint64_t w1 = wl.total_writes(), t1 = now_ns();
      wl.stop();
      const double achieved = double(w1 - w0) / ns_to_s(t1 - t0);
      attempts += std::to_string(achieved) + " ";
      EXPECT_LT(achieved, 1.05 * c.rate_pages);
      const PhaseStats s = wl.stats(Phase::kWarmup);
      EXPECT_EQ(s.writes, wl.total_writes());
      EXPECT_EQ(s.latency.count(), s.writes) << "paced writers time every write";
      EXPECT_LT(s.rate_pages(), 1.05 * c.rate_pages);
      near = std::abs(achieved - c.rate_pages) < 0.10 * c.rate_pages &&
             std::abs(s.rate_pages() - c.rate_pages) < 0.10 * c.rate_pages;
    }
    if (!near && overloaded()) {
      std::cout << "[ SKIPPED  ] rate lower bound not checkable: machine overloaded (" << load_text()
                << "); achieved pages/s per attempt: " << attempts << "\n";
      continue;
    }
    EXPECT_TRUE(near) << "achieved pages/s per attempt: " << attempts << " (" << load_text() << ")";
  }
}

TEST(WorkloadPause, ParksAllWritersAndResumeContinues) {
  for (double rate : {kRateMax, 100000.0, 50.0}) {
    for (const char* pattern : {"uniform", "sequential"}) {
      SCOPED_TRACE(std::string(pattern) + " at rate " + std::to_string(rate));
      Region region(snaptest::small_region());
      ThreadWorkload wl(region, workload(2, rate, pattern));
      std::this_thread::sleep_for(20ms);
      for (int round = 0; round < 3; ++round) {
        const uint64_t t0 = now_ns();
        wl.pause();
        const uint64_t pause_ns = now_ns() - t0;
        // Catches a pause that waits on a writer that never parks, not a slow one: the speed of a
        // pause is a benchmark's business (50 ms failed here once on a loaded 2-core machine).
        EXPECT_LT(pause_ns, 5'000'000'000u) << "pause took " << pause_ns << " ns";
        EXPECT_TRUE(wl.paused());
        const uint64_t parked_writes = wl.total_writes();
        std::vector<uint8_t> before(region.base(), region.base() + region.bytes());
        std::this_thread::sleep_for(50ms);
        EXPECT_EQ(wl.total_writes(), parked_writes) << "a writer wrote while paused";
        EXPECT_EQ(std::memcmp(before.data(), region.base(), region.bytes()), 0) << "memory changed while paused";
        wl.resume();
        EXPECT_FALSE(wl.paused());
        const uint64_t deadline = now_ns() + 2'000'000'000u;
        while (wl.total_writes() == parked_writes && now_ns() < deadline) std::this_thread::sleep_for(1ms);
        EXPECT_GT(wl.total_writes(), parked_writes) << "writers did not continue after resume";
      }
    }
  }
}

TEST(WorkloadPause, StopOrDestroyWhilePausedDoesNotHang) {
  for (bool destroy : {false, true}) {
    Region region(snaptest::small_region());
    auto wl = std::make_unique<ThreadWorkload>(region, workload(2, kRateMax));
    std::this_thread::sleep_for(10ms);
    wl->pause();
    must_finish_within(5000ms, [&] { destroy ? wl.reset() : wl->stop(); }, destroy ? "~Workload" : "stop()");
    if (!destroy) {
      EXPECT_NO_THROW(wl->stop());  // idempotent
      EXPECT_FALSE(wl->paused());
    }
  }
}

TEST(WorkloadIdle, IdleWritersWriteNothingButObeyPauseAndStop) {
  Region region(snaptest::small_region());
  ThreadWorkload wl(region, workload(2, 0));
  std::this_thread::sleep_for(50ms);
  wl.pause();
  EXPECT_TRUE(wl.paused());
  wl.resume();
  std::this_thread::sleep_for(20ms);
  wl.pause();
  must_finish_within(5000ms, [&] { wl.stop(); }, "stop() of idle writers");
  EXPECT_EQ(wl.total_writes(), 0u);
  EXPECT_EQ(region.count_nonzero_pages(), 0u);
  EXPECT_EQ(wl.stats(Phase::kWarmup).writes, 0u);
}

TEST(WorkloadStamps, EveryWrittenPageCarriesValidStamps) {
  for (const char* pattern : {"uniform", "hotset:0.1:0.9", "zipf:1.2", "sequential"}) {
    for (double rate : {kRateMax, 200000.0}) {
      SCOPED_TRACE(std::string(pattern) + " at rate " + std::to_string(rate));
      Region region(snaptest::small_region());
      const int writers = 3;
      ThreadWorkload wl(region, workload(writers, rate, pattern));
      std::this_thread::sleep_for(50ms);
      wl.stop();
      const size_t stamps = snaptest::check_stamps(region, writers);
      EXPECT_LE(stamps, wl.total_writes());
      EXPECT_GT(stamps, 0u);
    }
  }
}

TEST(WorkloadPhases, WritesAndTimeAreSplitByPhase) {
  for (double rate : {kRateMax, 20000.0}) {
    SCOPED_TRACE("rate " + std::to_string(rate));
    Region region(snaptest::small_region());
    ThreadWorkload wl(region, workload(2, rate));
    std::this_thread::sleep_for(100ms);
    wl.set_phase(Phase::kSnapshot);
    std::this_thread::sleep_for(100ms);
    wl.set_phase(Phase::kAfter);
    std::this_thread::sleep_for(100ms);
    wl.stop();
    uint64_t sum = 0;
    for (Phase p : {Phase::kWarmup, Phase::kSnapshot, Phase::kAfter}) {
      const PhaseStats s = wl.stats(p);
      SCOPED_TRACE("phase " + std::to_string(int(p)));
      // Each phase lasted at least the 100 ms slept in it; the upper bound only catches a phase
      // clock that never stopped (0.1 +- 0.05 s failed on a loaded 2-core machine: 0.165 s).
      EXPECT_GE(s.seconds, 0.099);
      EXPECT_LT(s.seconds, 5.0);
      EXPECT_GT(s.writes, 0u);
      if (rate == kRateMax) {
        // One write in ~256 is timed (plus the rare stall sample).
        EXPECT_GT(s.latency.count(), s.writes / 512);
        EXPECT_LT(s.latency.count(), s.writes / 128 + 10);
      } else {
        EXPECT_EQ(s.latency.count(), s.writes);
        EXPECT_LT(s.rate_pages(), 1.1 * rate) << "a paced writer ran ahead of its schedule";
      }
      EXPECT_GT(s.latency.percentile(0.5), 0u);
      sum += s.writes;
    }
    EXPECT_EQ(sum, wl.total_writes());
  }
}

TEST(WorkloadOptionsCheck, BadOptionsThrowUsageError) {
  Region region(snaptest::small_region(1 << 20));
  EXPECT_THROW(ThreadWorkload(region, workload(-1, 100)), UsageError);
  EXPECT_THROW(ThreadWorkload(region, workload(257, 100)), UsageError);
  EXPECT_THROW(ThreadWorkload(region, workload(1, -5)), UsageError);
  EXPECT_THROW(ThreadWorkload(region, workload(1, 100, "zipf:9")), UsageError);
  WorkloadOptions bad_node = workload(1, 100);
  bad_node.numa_node = 4096;
  EXPECT_THROW(ThreadWorkload(region, bad_node), UsageError);
  ThreadWorkload wl(region, workload(1, 100));
  EXPECT_THROW(wl.stats(Phase::kWarmup), std::logic_error) << "stats() while writers run is a data race";
}

// What --numa-node promises: the writer threads run only on the node's CPUs (ThreadWorkload sets
// their affinity) and the region's pages are bound to the node (Region: numa_tonode_memory, MPOL_BIND).
// The constructing thread is first narrowed to one CPU, so writers that merely inherited its affinity
// would fail the check whenever the node has more than one CPU.
TEST(WorkloadNuma, WritersBoundToNodeZeroStillWrite) {
  if (numa_available() < 0) GTEST_SKIP() << "libnuma reports NUMA unavailable here";
  cpu_set_t node_cpus;
  CPU_ZERO(&node_cpus);
  {
    struct bitmask* cpus = numa_allocate_cpumask();
    ASSERT_EQ(numa_node_to_cpus(0, cpus), 0);
    for (unsigned c = 0; c < cpus->size && c < CPU_SETSIZE; ++c)
      if (numa_bitmask_isbitset(cpus, c)) CPU_SET(c, &node_cpus);
    numa_free_cpumask(cpus);
  }
  ASSERT_GT(CPU_COUNT(&node_cpus), 0) << "node 0 has no CPU";
  cpu_set_t mine;
  ASSERT_EQ(sched_getaffinity(0, sizeof mine, &mine), 0);
  cpu_set_t narrowed;  // the node's last CPU alone
  CPU_ZERO(&narrowed);
  for (int c = CPU_SETSIZE - 1; c >= 0; --c)
    if (CPU_ISSET(c, &node_cpus)) {
      CPU_SET(c, &narrowed);
      break;
    }
  ASSERT_EQ(sched_setaffinity(0, sizeof narrowed, &narrowed), 0);

  RegionOptions ro = snaptest::small_region();
  ro.numa_node = 0;
  ro.populate = 0.5;  // populated after the policy is set: these pages must be on node 0 too
  Region region(ro);
  WorkloadOptions opts = workload(2, kRateMax);
  opts.numa_node = 0;
  std::vector<pid_t> writer_tids;
  {
    ThreadWorkload wl(region, opts);
    sched_setaffinity(0, sizeof mine, &mine);  // the test thread's own affinity back
    writer_tids = snaptest::threads_named("snap-writer");
    EXPECT_EQ(writer_tids.size(), 2u);
    for (pid_t tid : writer_tids) {
      cpu_set_t theirs;
      ASSERT_EQ(sched_getaffinity(tid, sizeof theirs, &theirs), 0) << "writer " << tid;
      EXPECT_TRUE(CPU_EQUAL(&theirs, &node_cpus))
          << "writer " << tid << " may run on " << CPU_COUNT(&theirs) << " CPUs, node 0 has " << CPU_COUNT(&node_cpus);
    }
    std::this_thread::sleep_for(20ms);
    wl.stop();
    EXPECT_GT(wl.total_writes(), 0u);
  }
  sched_setaffinity(0, sizeof mine, &mine);

  // The region's policy: bound to node 0 alone, checked at its first, middle and last page.
  for (size_t p : {size_t(0), region.pages() / 2, region.pages() - 1}) {
    int mode = -1;
    unsigned long mask[16] = {};
    ASSERT_EQ(get_mempolicy(&mode, mask, sizeof mask * 8, region.page(p), MPOL_F_ADDR), 0) << strerror(errno);
    EXPECT_EQ(mode, MPOL_BIND) << "page " << p;
    EXPECT_EQ(mask[0], 1ul) << "page " << p << ": nodemask";
    // And where the page actually is, for a page the writers or the populate step touched.
    if (page_is_zero(region.page(p))) continue;
    int node = -1;
    ASSERT_EQ(get_mempolicy(&node, nullptr, 0, region.page(p), MPOL_F_NODE | MPOL_F_ADDR), 0) << strerror(errno);
    EXPECT_EQ(node, 0) << "page " << p;
  }
}
