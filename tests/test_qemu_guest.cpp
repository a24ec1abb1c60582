// Tests of the guest writer program under QEMU: boot, pacing and stamps, and one snapshot per
// strategy QEMU has a mechanism for, parsed and verified; skipped with the reason without QEMU/KVM.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "core/region.h"
#include "core/sink.h"
#include "workloads/qemu/qemu_guest.h"
#include "workloads/qemu/qemu_snapshot.h"
#include "workloads/qemu/stamp_check.h"
#include "tests/qemu_test_support.h"

namespace {

using namespace snap::qemu;

snap::RegionOptions small_region() {
  snap::RegionOptions ro;
  ro.bytes = 32ull << 20;
  ro.populate = 0.5;
  ro.seed = 5;
  ro.shared = true;
  return ro;
}

// Every page of the region is its set-up content or carries this page's own stamps.
size_t pages_failing_stamps(const snap::Region& region) {
  std::vector<uint8_t> initial(snap::kPageSize);
  size_t bad = 0;
  for (size_t i = 0; i < region.pages(); ++i) {
    snap::region_initial_page(region.options(), i, initial.data());
    bad += !check_page_stamps(region.page(i), i, initial.data()).empty();
  }
  return bad;
}

TEST(QemuGuest, BootsWritesStampsAndCountsPerPhase) {
  SKIP_WITHOUT_QEMU();
  snap::Region region(small_region());
  QemuGuestOptions o;
  o.rate_pages = 20000;
  QemuGuest g(region, o);
  EXPECT_GT(g.tsc_hz(), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  g.set_phase(1);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  g.pause();
  const uint64_t w0 = g.writes(0), w1 = g.writes(1);
  EXPECT_GT(w0, 0u);
  EXPECT_GT(w1, 0u);
  EXPECT_EQ(g.latency(1).count(), w1);  // paced writes are all timed
  EXPECT_EQ(pages_failing_stamps(region), 0u);
  EXPECT_EQ(g.guest_failure(), "");
  // Paused means no write at all.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(g.writes(1), w1);
  g.resume();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_GT(g.writes(1), w1);
}

TEST(QemuGuest, OneSnapshotPerMappedStrategyParsedAndVerified) {
  SKIP_WITHOUT_QEMU();
  EXPECT_NE(qemu_strategy_unsupported("fork-cow"), "");
  snap::Region region(small_region());
  QemuGuestOptions o;
  o.rate_pages = 20000;
  QemuGuest g(region, o);
  g.set_phase(1);
  for (const char* strategy : {"stop-copy", "precopy", "uffd-wp"}) {
    SCOPED_TRACE(strategy);
    QemuSnapshotRequest req;
    req.strategy = strategy;
    req.bandwidth = 256ull << 20;
    req.verify = true;
    req.max_passes = 30;
    auto sink = snap::make_sink({"null", false, 0, 0});
    const uint64_t before = g.writes(1);
    QemuSnapshotResult r = qemu_snapshot(g, req, *sink);
    EXPECT_EQ(r.data.unique_pages, region.pages());
    if (std::string(strategy) == "precopy") {
      expect_precopy_verified(r.verified, r.verify_detail, g.accel());
    } else {
      EXPECT_EQ(r.verified, std::string(strategy) == "uffd-wp" ? "stamps" : "pass") << r.verify_detail;
    }
    if (std::string(strategy) != "precopy") {
      EXPECT_EQ(r.data.duplicate_pages(), 0u);
    }
    EXPECT_EQ(r.bytes.total, sink->bytes_written());
    EXPECT_GT(r.completion_s, 0);
    EXPECT_FALSE(g.paused());
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_GT(g.writes(1), before);  // the guest runs on after every snapshot
  }
}

}  // namespace
