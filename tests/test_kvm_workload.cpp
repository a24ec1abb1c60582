// The kvm workload: the guest boots and writes stamped pages, pause parks every vCPU (also a spinning
// guest), phases and statistics, the same page sequence as the host patterns, and clean-up.
#include <gtest/gtest.h>
#include <dirent.h>

#include <chrono>
#include <cstring>
#include <set>
#include <thread>

#include "core/error.h"
#include "core/region.h"
#include "core/units.h"
#include "workloads/kvm/kvm_workload.h"
#include "workloads/kvm/vm.h"
#include "tests/kvm_test_support.h"
#include "tests/test_support.h"
#include "workloads/pattern_kit.h"

using namespace snap;
using namespace std::chrono_literals;

namespace {

WorkloadOptions options(int vcpus, double rate, const std::string& pattern = "uniform") {
  WorkloadOptions w;
  w.writers = vcpus;
  w.rate_pages = rate;
  w.pattern = pattern;
  w.seed = 5;
  return w;
}

}  // namespace

TEST(KvmWorkload, GuestWritesStampedPagesAtMaxRate) {
  SKIP_WITHOUT_KVM();
  Region region(snaptest::small_region());
  KvmWorkload w(region, options(2, kRateMax));
  // Bounded wait, not a speed check: a guest's first touch of each page costs a KVM fault, slow on
  // a loaded nested machine.
  for (int i = 0; i < 500 && w.total_writes() <= 1000; ++i) std::this_thread::sleep_for(10ms);
  w.stop();
  const PhaseStats warm = w.stats(Phase::kWarmup);
  EXPECT_GT(warm.writes, 1000u);
  EXPECT_GT(warm.latency.count(), 0u) << "the guest timed none of its writes";
  EXPECT_EQ(w.total_writes(), warm.writes);
  EXPECT_GT(snaptest::check_stamps(region, 2), 0u);
  EXPECT_EQ(w.failure(), "");
  EXPECT_NE(w.notes().find("exits_intr="), std::string::npos) << w.notes();
}

// The guest's page sequence is the host pattern's: the last stamp of vCPU i is on the page the
// host's pattern draws as its count-th page.
TEST(KvmWorkload, GuestDrawsTheHostPatternsPages) {
  SKIP_WITHOUT_KVM();
  for (const std::string pattern : {"uniform", "hotset:0.1:0.9", "zipf:0.99", "sequential"}) {
    SCOPED_TRACE(pattern);
    Region region(snaptest::small_region());
    KvmWorkload w(region, options(2, 20000, pattern));
    std::this_thread::sleep_for(50ms);
    w.pause();
    // Replay each vCPU's sequence on the host and find every stamp where the host says it must be.
    for (int vcpu = 0; vcpu < 2; ++vcpu) {
      auto host = make_pattern(pattern, region.pages(), 5, vcpu, 2);
      uint64_t checked = 0, n = 0;
      const uint64_t total = w.total_writes();
      for (n = 1; n <= total && checked < 200; ++n) {
        const uint64_t page = host->next();
        const uint64_t seq = (n << 8) | uint64_t(vcpu);
        uint64_t stamp[2];
        std::memcpy(stamp, region.page(page) + stamp_offset(seq), 16);
        // A later write may have overwritten this slot of the page (same seq % 255); skip those.
        if (stamp[0] != seq) continue;
        EXPECT_EQ(stamp[1], page);
        ++checked;
      }
      EXPECT_GT(checked, 20u) << "vCPU " << vcpu << ": too few of the host's pages carry the guest's stamps";
    }
    w.resume();
    w.stop();
    EXPECT_EQ(w.failure(), "");
  }
}

// A guest that never exits by itself (unpaced writes) is kicked out of KVM_RUN: no write happens
// while paused, writes continue after resume.
TEST(KvmWorkload, PauseParksASpinningGuest) {
  SKIP_WITHOUT_KVM();
  Region region(snaptest::small_region());
  KvmWorkload w(region, options(2, kRateMax));
  std::this_thread::sleep_for(30ms);
  for (int round = 0; round < 5; ++round) {
    w.pause();
    EXPECT_TRUE(w.paused());
    const uint64_t before = w.total_writes();
    std::vector<uint8_t> copy(region.base(), region.base() + region.bytes());
    std::this_thread::sleep_for(20ms);
    EXPECT_EQ(w.total_writes(), before) << "a vCPU wrote while paused";
    EXPECT_EQ(std::memcmp(copy.data(), region.base(), region.bytes()), 0) << "memory changed while paused";
    w.resume();
    const uint64_t deadline_writes = before + 1000;
    for (int i = 0; i < 200 && w.total_writes() < deadline_writes; ++i) std::this_thread::sleep_for(5ms);
    EXPECT_GE(w.total_writes(), deadline_writes) << "no writes after resume";
  }
  w.stop();
  EXPECT_EQ(w.failure(), "");
}

TEST(KvmWorkload, IdleAndPacedGuestsPauseAndCount) {
  SKIP_WITHOUT_KVM();
  for (double rate : {0.0, 5000.0}) {
    SCOPED_TRACE(rate);
    Region region(snaptest::small_region());
    KvmWorkload w(region, options(2, rate));
    std::this_thread::sleep_for(50ms);
    w.set_phase(Phase::kSnapshot);
    w.pause();
    w.resume();
    std::this_thread::sleep_for(100ms);
    w.stop();
    const PhaseStats during = w.stats(Phase::kSnapshot);
    if (rate == 0) {
      EXPECT_EQ(w.total_writes(), 0u);
      EXPECT_EQ(region.count_nonzero_pages(), 0u);
    } else {
      EXPECT_GT(during.writes, 0u);
      // Never above the target (the burst allowance is 2 ms).
      EXPECT_LE(double(during.writes), rate * (during.seconds + 0.004) + 2);
      EXPECT_EQ(during.latency.count(), during.writes) << "paced writes are all timed";
    }
    EXPECT_EQ(w.failure(), "");
  }
}

// Every fd, thread and mapping goes with the workload.
TEST(KvmWorkload, CleanUpLeavesNothingBehind) {
  SKIP_WITHOUT_KVM();
  const int fds = snaptest::count_open_fds();
  {
    Region region(snaptest::small_region());
    KvmWorkload w(region, options(2, 10000));
    std::this_thread::sleep_for(20ms);
    EXPECT_EQ(snaptest::count_threads_named("snap-vcpu-"), 2);
  }
  EXPECT_EQ(snaptest::count_threads_named("snap-vcpu-"), 0);
  EXPECT_EQ(snaptest::count_open_fds(), fds);
}

TEST(KvmWorkload, BadOptionsAreUsageErrors) {
  SKIP_WITHOUT_KVM();
  Region region(snaptest::small_region());
  EXPECT_THROW({ KvmWorkload w(region, options(0, 0)); }, UsageError);
  EXPECT_THROW({ KvmWorkload w(region, options(65, 0)); }, UsageError);
  EXPECT_THROW({ KvmWorkload w(region, options(1, 0, "nope")); }, UsageError);
}

namespace {

// Pages whose bytes differ between `before` and the region now.
std::set<uint64_t> changed_pages(const std::vector<uint8_t>& before, const Region& region) {
  std::set<uint64_t> out;
  for (size_t i = 0; i < region.pages(); ++i)
    if (std::memcmp(before.data() + i * kPageSize, region.page(i), kPageSize) != 0) out.insert(i);
  return out;
}

kvm::VmOptions vm_options(Region& region, int vcpus, double rate, uint32_t ring = 0) {
  kvm::VmOptions o;
  o.data = region.base();
  o.data_bytes = region.bytes();
  for (int i = 0; i < vcpus; ++i) o.plans.push_back(plan_pattern("uniform", region.pages(), 9, i, vcpus));
  o.rate_pages = rate;
  o.dirty_ring_entries = ring;
  return o;
}

}  // namespace

// Every page a vCPU changed after the log was cleared is in the next KVM_GET_DIRTY_LOG; a page not
// written since is not.
TEST(KvmVm, DirtyLogReportsEveryPageTheGuestChanged) {
  SKIP_WITHOUT_KVM();
  if (!kvm::kvm_manual_dirty_log_available()) GTEST_SKIP() << "no KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2";
  Region region(snaptest::small_region());
  kvm::Vm vm(vm_options(region, 2, 20000));
  ASSERT_TRUE(vm.manual_dirty_log());
  vm.set_dirty_logging(true);
  std::vector<uint64_t> bitmap;
  for (int round = 0; round < 3; ++round) {
    vm.pause();
    vm.get_dirty_log(bitmap);  // initially all set, then what was written since the last clear
    vm.clear_dirty_log(0, vm.data_pages(), bitmap.data());
    const std::vector<uint8_t> before(region.base(), region.base() + region.bytes());
    vm.resume();
    std::this_thread::sleep_for(30ms);
    vm.pause();
    vm.get_dirty_log(bitmap);
    std::set<uint64_t> dirty;
    for (size_t w = 0; w < bitmap.size(); ++w)
      for (uint64_t bits = bitmap[w]; bits; bits &= bits - 1) dirty.insert(w * 64 + uint64_t(__builtin_ctzll(bits)));
    const std::set<uint64_t> changed = changed_pages(before, region);
    EXPECT_GT(changed.size(), 10u);
    for (uint64_t p : changed) EXPECT_TRUE(dirty.count(p)) << "page " << p << " changed but is not in the dirty log";
    // A guest write always changes its page (a new seq), so the log holds nothing else, except a
    // page per vCPU whose write fault KVM had logged when the kick took the vCPU out before the
    // store retired (it completes after resume and is reported again then).
    EXPECT_LE(dirty.size(), changed.size() + 2);
    vm.resume();
  }
  vm.set_dirty_logging(false);
  vm.stop();
  EXPECT_EQ(vm.failure(), "");
}

// The same through the dirty rings, with rings small enough to fill: full-ring exits are harvested
// by the vCPU threads and nothing is lost.
TEST(KvmVm, DirtyRingReportsEveryPageTheGuestChangedThroughFullRings) {
  SKIP_WITHOUT_KVM();
  if (kvm::kvm_dirty_ring_max_entries() == 0) GTEST_SKIP() << "no KVM_CAP_DIRTY_LOG_RING";
  Region region(snaptest::small_region());
  kvm::Vm vm(vm_options(region, 2, kRateMax, 512));
  EXPECT_FALSE(vm.manual_dirty_log());
  std::vector<uint64_t> pages;
  vm.pause();
  vm.set_dirty_logging(true);
  const std::vector<uint8_t> before(region.base(), region.base() + region.bytes());
  vm.resume();
  // Until a ring has filled at least once (bounded: each first write to a page costs a KVM write
  // fault, slow under nesting).
  for (int i = 0; i < 300 && vm.dirty_ring_full_exits() == 0; ++i) std::this_thread::sleep_for(10ms);
  std::this_thread::sleep_for(20ms);
  vm.pause();
  vm.harvest_dirty_rings(pages);
  const std::set<uint64_t> dirty(pages.begin(), pages.end());
  EXPECT_EQ(dirty.size(), pages.size()) << "a page was reported twice in one harvest";
  const std::set<uint64_t> changed = changed_pages(before, region);
  EXPECT_GT(changed.size(), 512u);
  for (uint64_t p : changed) EXPECT_TRUE(dirty.count(p)) << "page " << p << " changed but is not in the rings";
  EXPECT_GT(vm.dirty_ring_full_exits(), 0u);
  vm.set_dirty_logging(false);
  vm.stop();
  EXPECT_EQ(vm.failure(), "");
}

// The guest's own way into long mode (its multiboot entry, what QEMU's -kernel calls) reaches the
// same write loop.
TEST(KvmVm, GuestBootsFromItsMultibootEntry) {
  SKIP_WITHOUT_KVM();
  Region region(snaptest::small_region());
  kvm::VmOptions o = vm_options(region, 1, kRateMax);
  o.boot32 = true;
  kvm::Vm vm(o);
  for (int i = 0; i < 100 && vm.total_writes() < 1000; ++i) std::this_thread::sleep_for(10ms);
  vm.stop();
  EXPECT_EQ(vm.failure(), "");
  EXPECT_GE(vm.total_writes(), 1000u);
  EXPECT_GT(snaptest::check_stamps(region, 1), 0u);
}

// Stopping an idle guest right after it parked (and while it parks) never hangs: the vCPU thread
// must not wait for a control change that has already happened.
TEST(KvmWorkload, StopRacingAnIdleGuestReturns) {
  SKIP_WITHOUT_KVM();
  Region region(snaptest::small_region(1ull << 20));
  for (int i = 0; i < 20; ++i) {
    KvmWorkload w(region, options(2, 0));
    if (i % 2) w.pause();
    w.stop();  // a hang here fails the test by the ctest timeout
    EXPECT_EQ(w.failure(), "");
  }
}
