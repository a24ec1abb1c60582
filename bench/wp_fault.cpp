// A synchronous userfaultfd write-protect fault round trip as the writer sees it, for several ways
// of servicing it: a poll() thread, a blocking read() thread, a busy-polling thread, each with and
// without copying the page aside before un-protecting it (mode 0 un-protect also wakes the writer).
#include <linux/userfaultfd.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_support.h"
#include "core/clock.h"
#include "core/error.h"
#include "core/histogram.h"
#include "core/units.h"

namespace snapbench_micro {

namespace {

using snap::kPageSize;

constexpr uint64_t kRegionBytes = 256 * kMiB;
constexpr size_t kCopyRingPages = 64;

enum class Service { kPoll, kRead, kBusyPoll };

inline void store_word(uint8_t* page, uint64_t value) {
  asm volatile("" ::: "memory");
  *reinterpret_cast<volatile uint64_t*>(page) = value;
  asm volatile("" ::: "memory");
}

// The fault-servicing thread. It serves one fault at a time until it has served a fault on the
// spare page: the writer ends it with one write there. (A stop flag checked after each fault would
// race: the woken writer may set it before the server looks, and the server would leave too early.)
class FaultServer {
 public:
  FaultServer(WpRange& wp, void* base, size_t len, void* spare, Service service, bool copy_aside)
      : wp_(wp), base_(base), len_(len), spare_(spare), service_(service), copy_aside_(copy_aside) {
    if (copy_aside_) ring_.assign(kCopyRingPages * kPageSize, 1);  // touched: no first-touch faults
    thread_ = std::thread([this] { run(); });
  }
  // Ends the server even when the benchmark leaves early (an exception): the spare page stays
  // protected until this write, and if the server already died the write simply succeeds.
  ~FaultServer() { finish(); }
  void finish() {
    if (!thread_.joinable()) return;
    store_word(static_cast<uint8_t*>(spare_), 1);
    thread_.join();
  }
  uint64_t served() const { return served_.load(std::memory_order_relaxed); }
  const std::string& error() const { return error_; }  // read after finish() or failed()
  bool failed() const { return failed_.load(std::memory_order_acquire); }

 private:
  // Returns the next message; throws on an unexpected error.
  uffd_msg receive() {
    const int fd = wp_.uffd().fd();
    uffd_msg msg;
    for (;;) {
      if (service_ == Service::kPoll) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, -1) < 0) {
          if (errno == EINTR) continue;
          snap::throw_errno("poll on the userfaultfd");
        }
      }
      const ssize_t n = read(fd, &msg, sizeof msg);
      if (n == ssize_t(sizeof msg)) return msg;
      if (n < 0 && errno == EAGAIN) {  // non-blocking fd with nothing queued
        if (service_ == Service::kBusyPoll) cpu_relax();
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      snap::throw_errno("read from the userfaultfd");
    }
  }

  void run() {
    size_t slot = 0;
    try {
      for (;;) {
        const uffd_msg msg = receive();
        if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
        void* page = reinterpret_cast<void*>(msg.arg.pagefault.address & ~uint64_t(kPageSize - 1));
        if (copy_aside_) {
          std::memcpy(ring_.data() + slot * kPageSize, page, kPageSize);
          slot = (slot + 1) % kCopyRingPages;
        }
        wp_.uffd().writeprotect(page, kPageSize, false, true);
        served_.fetch_add(1, std::memory_order_relaxed);
        if (page == spare_) return;
      }
    } catch (const std::exception& e) {
      error_ = e.what();
      failed_.store(true, std::memory_order_release);
      try {
        wp_.uffd().writeprotect(base_, len_, false, true);  // never leave the writer blocked
      } catch (...) {
      }
    }
  }

  WpRange& wp_;
  void* base_;
  size_t len_;
  void* spare_;
  Service service_;
  bool copy_aside_;
  std::vector<uint8_t> ring_;
  std::atomic<bool> failed_{false};
  std::atomic<uint64_t> served_{0};
  std::string error_;
  std::thread thread_;
};

// Each iteration is one write to the next protected page, timed around the store; the region is
// protected again (untimed) when the walk reaches its last page, which is kept as the spare.
void BM_WpFaultRoundTrip(benchmark::State& state, Service service, bool copy_aside) try {
  if (!require_uffd(state, UFFD_FEATURE_PAGEFAULT_FLAG_WP, "PAGEFAULT_FLAG_WP")) return;
  snap::Region& region = cached_region(kRegionBytes);
  const size_t spare = region.pages() - 1;
  WpRange wp(region.base(), region.bytes(), 0, service != Service::kRead);
  wp.protect_all();
  snap::Histogram latency;
  {
    FaultServer server(wp, region.base(), region.bytes(), region.page(spare), service, copy_aside);
    size_t next = 0;
    for (auto _ : state) {
      if (next == spare) {
        if (server.failed()) {  // nobody would serve the re-protected pages
          state.SkipWithError(server.error().c_str());
          break;
        }
        wp.protect_all();
        next = 0;
      }
      const uint64_t t0 = snap::now_ns();
      store_word(region.page(next), t0);
      const uint64_t t1 = snap::now_ns();
      state.SetIterationTime(snap::ns_to_s(t1 - t0));
      latency.record(t1 - t0);
      ++next;
    }
    server.finish();  // the last fault, on the spare page, ends the server
    if (!server.error().empty()) {
      state.SkipWithError(server.error().c_str());
      return;
    }
    if (server.served() < uint64_t(state.iterations())) {
      const std::string why = "only " + std::to_string(server.served()) + " faults served for " +
                              std::to_string(state.iterations()) + " writes: the pages were not write-protected";
      state.SkipWithError(why.c_str());
      return;
    }
  }
  set_fault_latency_counters(state, latency);
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK_CAPTURE(BM_WpFaultRoundTrip, poll, Service::kPoll, false)->UseManualTime();
BENCHMARK_CAPTURE(BM_WpFaultRoundTrip, read, Service::kRead, false)->UseManualTime();
BENCHMARK_CAPTURE(BM_WpFaultRoundTrip, busy_poll, Service::kBusyPoll, false)->UseManualTime();
BENCHMARK_CAPTURE(BM_WpFaultRoundTrip, poll_copy_aside, Service::kPoll, true)->UseManualTime();
BENCHMARK_CAPTURE(BM_WpFaultRoundTrip, read_copy_aside, Service::kRead, true)->UseManualTime();
BENCHMARK_CAPTURE(BM_WpFaultRoundTrip, busy_poll_copy_aside, Service::kBusyPoll, true)->UseManualTime();

}  // namespace

}  // namespace snapbench_micro
