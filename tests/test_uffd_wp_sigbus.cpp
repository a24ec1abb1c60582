// Tests of uffd-wp's in-thread fault path (fault_wait=sigbus) at the level of its SIGBUS handler: a
// page the saver claimed is waited for, a full ring waits for the saver, a SIGBUS that is not a
// protected-page fault still kills the process, and the previous disposition comes back.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "core/linux_compat.h"
#include "core/region.h"
#include "core/uffd.h"
#include "strategies/uffd_wp/page_state.h"
#include "strategies/uffd_wp/sigbus.h"
#include "tests/test_support.h"

using namespace snap;
using namespace snap::uffd_wp;

namespace {

#define SKIP_WITHOUT_SIGBUS()                                             \
  do {                                                                    \
    const std::string why = sigbus_unsupported_reason();                  \
    if (!why.empty()) GTEST_SKIP() << why;                                \
    if (!uffd_features().has(UFFD_FEATURE_PAGEFAULT_FLAG_WP))             \
      GTEST_SKIP() << "userfaultfd lacks UFFD_FEATURE_PAGEFAULT_FLAG_WP"; \
  } while (0)

// A populated region write-protected through a SIGBUS-mode userfaultfd, with the state the handler
// shares with a saver; the test plays the saver.
struct Armed {
  Region region{RegionOptions{64 * kPageSize, 1.0, false, -1, 1}};
  Uffd uffd{UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_SIGBUS, true};
  ClaimBitmap claims{region.pages()};
  ClaimBitmap released{region.pages()};
  CopyAsideRing ring;
  explicit Armed(size_t ring_slots) : ring(ring_slots) {
    for (size_t p = 0; p < region.pages(); ++p) std::memset(region.page(p), int(p + 1), kPageSize);
    uffd.register_wp(region.base(), region.bytes());
    uffd.writeprotect(region.base(), region.bytes(), true);
  }
  ~Armed() {
    uffd.writeprotect(region.base(), region.bytes(), false);
    uffd.unregister(region.base(), region.bytes());
  }
};

// Starts a thread that stores one byte into `page`; `done` is set once the store went through.
std::thread store_into(Region& region, size_t page, std::atomic<bool>& done) {
  return std::thread([&region, page, &done] {
    region.page(page)[7] = 0xEE;
    done.store(true);
  });
}

}  // namespace

// A store into a page the saver has claimed waits (in the handler) until the saver un-protects it and
// marks it released; the handler neither copies the page nor un-protects it itself.
TEST(UffdWpSigbus, StoreIntoAClaimedPageWaitsForItsRelease) {
  SKIP_WITHOUT_SIGBUS();
  Armed a(4);
  SigbusFaultPath path(a.uffd.fd(), a.region, a.claims, a.released, a.ring);
  ASSERT_TRUE(a.claims.claim(5));  // the saver's chunk
  std::atomic<bool> done{false};
  std::thread writer = store_into(a.region, 5, done);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(done.load()) << "the store went through a page the saver holds";
  EXPECT_EQ(snaptest::pages_still_write_protected(a.region.page(5), 1), 1u);
  a.uffd.writeprotect(a.region.page(5), kPageSize, false);  // the saver's release
  a.released.mark_range(5, 1);
  writer.join();
  EXPECT_TRUE(done.load());
  EXPECT_EQ(a.region.page(5)[7], 0xEE);
  const SigbusCounters c = path.counters();
  EXPECT_EQ(c.faults, 1u);
  EXPECT_EQ(c.claimed_waits, 1u);
  EXPECT_EQ(c.copies, 0u);
  EXPECT_EQ(a.ring.drain([](uint64_t, const uint8_t*) {}), 0u);
}

// An unclaimed page is claimed, copied aside with its content before the store, un-protected and
// marked released by the handler, in the writer's own thread. With the one-slot ring full, a second
// fault waits until the saver drains it; nothing else is needed for it to finish.
TEST(UffdWpSigbus, HandlerCopiesAsideAndAFullRingWaitsForTheSaver) {
  SKIP_WITHOUT_SIGBUS();
  Armed a(1);
  SigbusFaultPath path(a.uffd.fd(), a.region, a.claims, a.released, a.ring);
  std::atomic<bool> first{false}, second{false};
  store_into(a.region, 10, first).join();  // fits the ring: completes by itself
  EXPECT_TRUE(a.released.test(10));
  EXPECT_FALSE(a.claims.claim(10));
  EXPECT_EQ(snaptest::pages_still_write_protected(a.region.page(10), 1), 0u);
  std::thread blocked = store_into(a.region, 20, second);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(second.load()) << "a fault went through a full ring";
  std::vector<std::pair<uint64_t, uint8_t>> saved;  // (page, first byte, which is the old content)
  auto save = [&saved](uint64_t page, const uint8_t* data) {
    saved.emplace_back(page, data[7]);
  };
  while (!second.load()) {
    a.ring.drain(save);
    std::this_thread::yield();
  }
  blocked.join();
  a.ring.drain(save);
  ASSERT_EQ(saved.size(), 2u);
  EXPECT_EQ(saved[0], std::make_pair(uint64_t(10), uint8_t(11)));
  EXPECT_EQ(saved[1], std::make_pair(uint64_t(20), uint8_t(21)));
  EXPECT_EQ(a.region.page(20)[7], 0xEE);
  const SigbusCounters c = path.counters();
  EXPECT_EQ(c.faults, 2u);
  EXPECT_EQ(c.copies, 2u);
  EXPECT_EQ(c.ring_full_waits, 1u);
  EXPECT_EQ(c.claimed_waits, 0u);
}

// The handler is installed only for the snapshot: the disposition before it comes back.
TEST(UffdWpSigbus, PreviousDispositionIsRestored) {
  SKIP_WITHOUT_SIGBUS();
  struct sigaction mine {}, before {}, after {};
  mine.sa_handler = SIG_IGN;
  sigemptyset(&mine.sa_mask);
  ASSERT_EQ(sigaction(SIGBUS, &mine, &before), 0);
  {
    Armed a(4);
    SigbusFaultPath path(a.uffd.fd(), a.region, a.claims, a.released, a.ring);
    struct sigaction during {};
    sigaction(SIGBUS, nullptr, &during);
    EXPECT_TRUE(during.sa_flags & SA_SIGINFO);
    EXPECT_THROW(SigbusFaultPath(a.uffd.fd(), a.region, a.claims, a.released, a.ring), std::runtime_error);
  }
  sigaction(SIGBUS, nullptr, &after);
  EXPECT_EQ(after.sa_handler, SIG_IGN);
  EXPECT_FALSE(after.sa_flags & SA_SIGINFO);
  sigaction(SIGBUS, &before, nullptr);
}

// A SIGBUS that is not a write to a protected page of the region kills the process as it would
// without the snapshot: a real bus error (a store past the end of a file mapping) and one sent with
// raise(). Each runs in a child process (gtest death test).
TEST(UffdWpSigbusDeathTest, OtherBusErrorsStillKill) {
  SKIP_WITHOUT_SIGBUS();
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto with_handler = [](auto&& act) {
    Armed a(4);
    SigbusFaultPath path(a.uffd.fd(), a.region, a.claims, a.released, a.ring);
    act();
  };
  EXPECT_EXIT(with_handler([] {
                char name[] = "/tmp/snapbench-sigbus-XXXXXX";
                const int fd = mkstemp(name);
                unlink(name);
                // Two pages mapped over a one-page file: the second page is past the end of the file.
                if (fd < 0 || ftruncate(fd, long(kPageSize)) != 0) _exit(3);
                void* p = mmap(nullptr, 2 * kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (p == MAP_FAILED) _exit(4);
                static_cast<volatile uint8_t*>(p)[kPageSize] = 1;
                _exit(0);
              }),
              testing::KilledBySignal(SIGBUS), "");
  EXPECT_EXIT(with_handler([] {
                raise(SIGBUS);
                _exit(0);
              }),
              testing::KilledBySignal(SIGBUS), "");
}

// The copy-aside ring takes the lowest free slot, so it grows only as far as the pages waiting at
// once, up to its budget (then it refuses), and every published page comes out once with its bytes.
TEST(UffdWpRing, GrowsOnDemandUpToItsBudgetAndStaysPacked) {
  CopyAsideRing ring(/*prefaulted=*/4, /*budget=*/100);
  const size_t at_start = ring.bytes();
  std::vector<uint64_t> slots;
  for (uint64_t page = 0; page < 100; ++page) {
    uint64_t slot = ~0ull;
    uint8_t* data = ring.reserve(slot);
    ASSERT_NE(data, nullptr) << "refused below the budget at " << page;
    EXPECT_EQ(slot, page);  // lowest free slot first
    std::memset(data, int(page), kPageSize);
    ring.publish(slot, 1000 + page);
    slots.push_back(slot);
  }
  uint64_t none = 0;
  EXPECT_EQ(ring.reserve(none), nullptr) << "the budget is 100 slots";
  EXPECT_EQ(ring.high_water(), 100u);
  EXPECT_GT(ring.bytes(), at_start);
  std::vector<bool> seen(100, false);
  EXPECT_EQ(ring.drain([&](uint64_t page, const uint8_t* data) {
    ASSERT_GE(page, 1000u);
    ASSERT_LT(page, 1100u);
    EXPECT_FALSE(seen[page - 1000]);
    seen[page - 1000] = true;
    EXPECT_EQ(data[kPageSize - 1], uint8_t(page - 1000));
  }), 100u);
  EXPECT_EQ(ring.drain([](uint64_t, const uint8_t*) { ADD_FAILURE() << "drained twice"; }), 0u);
  uint64_t slot = ~0ull;
  ASSERT_NE(ring.reserve(slot), nullptr);
  EXPECT_EQ(slot, 0u) << "a drained ring starts again at its lowest slot";
  CopyAsideRing small(4, 4);
  for (int i = 0; i < 4; ++i) ASSERT_NE(small.reserve(slot), nullptr);
  EXPECT_EQ(small.reserve(slot), nullptr) << "a budget equal to the prefaulted slots does not grow";
  EXPECT_EQ(small.high_water(), 4u);
}
