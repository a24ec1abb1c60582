// KVM primitives behind the kvm workload: a vCPU's first write after the dirty log is cleared, a
// userfaultfd write-protect fault raised by a vCPU, dirty-ring harvest per page, GET+CLEAR dirty log
// per GiB, and the guest's unpaced write throughput (against BM_BareWriterLoop's host threads).
#include <linux/userfaultfd.h>
#include <poll.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include "bench/bench_support.h"
#include "core/clock.h"
#include "core/histogram.h"
#include "core/units.h"
#include "workloads/kvm/vm.h"
#include "workloads/pattern_kit.h"

namespace snapbench_micro {

namespace {

using snap::kPageSize;

bool require_kvm(benchmark::State& state) {
  if (const std::string why = snap::kvm::kvm_unavailable_reason(); !why.empty()) {
    state.SkipWithError(("no usable /dev/kvm: " + why).c_str());
    return false;
  }
  return true;
}

snap::kvm::VmOptions vm_options(snap::Region& region, int vcpus, double rate, uint32_t ring = 0) {
  snap::kvm::VmOptions o;
  o.data = region.base();
  o.data_bytes = region.bytes();
  for (int i = 0; i < vcpus; ++i) o.plans.push_back(snap::plan_pattern("uniform", region.pages(), 1, i, vcpus));
  o.rate_pages = rate;
  o.dirty_ring_entries = ring;
  return o;
}

// The guest's latency histogram of one phase, merged over vCPUs.
snap::Histogram guest_latency(const snap::kvm::Vm& vm, int phase) {
  std::vector<uint64_t> counts;
  uint64_t total, max, sum;
  vm.latency(phase, counts, total, max, sum);
  snap::Histogram h;
  h.merge_raw(counts.data(), total, max, sum);
  return h;
}

void set_latency_counters(benchmark::State& state, const char* prefix, const snap::Histogram& h) {
  const std::string p(prefix);
  set_counter(state, (p + "_p50_us").c_str(), double(h.percentile(0.5)) / 1e3);
  set_counter(state, (p + "_p99_us").c_str(), double(h.percentile(0.99)) / 1e3);
  set_counter(state, (p + "_writes").c_str(), double(h.count()));
}

// One paced vCPU (every write timed by the guest) over 16 MiB. KVM maps guest pages lazily, and the
// first touch of a page is slow here (nested), so 1 s of writes first maps (nearly) every page;
// then phase 0 times untracked writes for 200 ms, and phase 1 the writes right after
// KVM_CLEAR_DIRTY_LOG re-protected every page (each first write to a page then takes KVM's write
// fault): at 20000 writes/s for 50 ms per iteration, ~88 % of them are first writes since the clear.
void BM_KvmFirstWriteAfterDirtyLogClear(benchmark::State& state) try {
  if (!require_kvm(state)) return;
  if (!snap::kvm::kvm_manual_dirty_log_available()) {
    state.SkipWithError("KVM lacks KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");
    return;
  }
  snap::Region& region = cached_region(16 * kMiB);
  snap::kvm::Vm vm(vm_options(region, 1, 20000));
  vm.set_phase(2);
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // maps the pages
  vm.set_phase(0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // untracked writes
  vm.pause();
  vm.set_phase(1);
  vm.set_dirty_logging(true);
  std::vector<uint64_t> bitmap;
  for (auto _ : state) {
    vm.get_dirty_log(bitmap);
    vm.clear_dirty_log(0, vm.data_pages(), bitmap.data());
    vm.resume();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    vm.pause();
  }
  vm.set_dirty_logging(false);
  vm.stop();
  set_latency_counters(state, "plain", guest_latency(vm, 0));
  set_latency_counters(state, "after_clear", guest_latency(vm, 1));
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK(BM_KvmFirstWriteAfterDirtyLogClear)->Iterations(10)->Unit(benchmark::kMillisecond);

// A synchronous userfaultfd write-protect fault raised by a vCPU: KVM's get_user_pages meets the
// protection and blocks the vCPU thread in KVM_RUN until a fault thread (blocking read()) un-protects
// the page. The guest times the write: its p50 is the round trip as the guest sees it. Compare
// BM_WpFaultRoundTrip/read (the same service raised by a host thread's store).
void BM_KvmUffdWpFaultRoundTrip(benchmark::State& state) try {
  if (!require_kvm(state)) return;
  if (!require_uffd(state, UFFD_FEATURE_PAGEFAULT_FLAG_WP, "write-protect faults")) return;
  snap::Region& region = cached_region(64 * kMiB);
  snap::kvm::Vm vm(vm_options(region, 1, 2000));
  vm.pause();
  vm.set_phase(1);
  std::atomic<uint64_t> served{0};
  std::atomic<bool> stop{false};
  {
    WpRange wp(region.base(), region.bytes(), UFFD_FEATURE_PAGEFAULT_FLAG_WP, /*nonblocking=*/true);
    std::thread server([&] {
      pollfd pfd{wp.uffd().fd(), POLLIN, 0};
      while (!stop.load()) {
        if (poll(&pfd, 1, 20) <= 0) continue;
        uffd_msg msg;
        if (read(wp.uffd().fd(), &msg, sizeof msg) != sizeof msg || msg.event != UFFD_EVENT_PAGEFAULT) continue;
        const uint64_t page = msg.arg.pagefault.address & ~uint64_t(kPageSize - 1);
        wp.uffd().writeprotect(reinterpret_cast<void*>(page), kPageSize, false);
        served.fetch_add(1);
      }
    });
    for (auto _ : state) {
      wp.protect_all();
      vm.resume();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      vm.pause();
    }
    stop.store(true);
    server.join();
  }
  vm.stop();
  set_latency_counters(state, "vcpu_fault", guest_latency(vm, 1));
  set_counter(state, "faults_served", double(served.load()));
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK(BM_KvmUffdWpFaultRoundTrip)->Iterations(5)->Unit(benchmark::kMillisecond);

// Harvesting the dirty rings: two unpaced vCPUs dirty pages with logging on (rings of 65536
// entries, so few fill), then the time of one harvest (read, mark reset, KVM_RESET_DIRTY_RINGS)
// per page harvested.
void BM_KvmDirtyRingHarvest(benchmark::State& state) try {
  if (!require_kvm(state)) return;
  if (snap::kvm::kvm_dirty_ring_max_entries() < 65536) {
    state.SkipWithError("KVM's dirty ring is missing or smaller than 65536 entries");
    return;
  }
  snap::Region& region = cached_region(256 * kMiB);
  snap::kvm::Vm vm(vm_options(region, 2, snap::kRateMax, 65536));
  vm.pause();
  vm.set_dirty_logging(true);
  std::vector<uint64_t> pages;
  uint64_t timed_ns = 0, harvested = 0;
  for (auto _ : state) {
    vm.resume();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    vm.pause();
    pages.clear();
    const uint64_t before = vm.dirty_ring_harvested();
    const uint64_t t0 = snap::now_ns();
    vm.harvest_dirty_rings(pages);
    const uint64_t t1 = snap::now_ns();
    timed_ns += t1 - t0;
    harvested += vm.dirty_ring_harvested() - before;
    state.SetIterationTime(double(t1 - t0) * 1e-9);
  }
  set_counter(state, "ring_full_exits", double(vm.dirty_ring_full_exits()));
  set_counter(state, "entries_per_harvest", double(harvested) / double(state.iterations()));
  if (harvested) set_counter(state, "ns_per_entry", double(timed_ns) / double(harvested));
  vm.set_dirty_logging(false);
  vm.stop();
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK(BM_KvmDirtyRingHarvest)->Iterations(10)->Unit(benchmark::kMicrosecond)->UseManualTime();

// KVM_GET_DIRTY_LOG then KVM_CLEAR_DIRTY_LOG (1 GiB chunks) over the whole data memslot, every page
// dirty (the guest wrote each since the last clear): the collect of the kvm-dirty-log tracker.
void BM_KvmGetClearDirtyLog(benchmark::State& state) try {
  if (!require_kvm(state)) return;
  if (!snap::kvm::kvm_manual_dirty_log_available()) {
    state.SkipWithError("KVM lacks KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");
    return;
  }
  const uint64_t bytes = uint64_t(state.range(0)) * kMiB;
  snap::Region& region = cached_region(bytes);
  snap::kvm::Vm vm(vm_options(region, 1, 0));
  vm.pause();
  vm.set_dirty_logging(true);  // initially all set: every page dirty, none protected
  std::vector<uint64_t> bitmap;
  uint64_t timed_ns = 0;
  for (auto _ : state) {
    const uint64_t t0 = snap::now_ns();
    vm.get_dirty_log(bitmap);
    for (uint64_t first = 0; first < vm.data_pages(); first += 262144)
      vm.clear_dirty_log(first, std::min<uint64_t>(262144, vm.data_pages() - first), bitmap.data() + first / 64);
    const uint64_t t1 = snap::now_ns();
    timed_ns += t1 - t0;
    state.SetIterationTime(double(t1 - t0) * 1e-9);
    // Dirty every page again from the host side is not logged (KVM logs guest writes only); the
    // next iteration clears bits that are now zero except for the first: a bitmap of all ones is
    // restored by toggling logging off and on (initially-set), outside the timing.
    state.PauseTiming();
    vm.set_dirty_logging(false);
    vm.set_dirty_logging(true);
    state.ResumeTiming();
  }
  set_ms_per_gib(state, timed_ns / state.iterations(), bytes);
  vm.set_dirty_logging(false);
  vm.stop();
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK(BM_KvmGetClearDirtyLog)->ArgName("MiB")->Arg(1024)->Iterations(5)->Unit(benchmark::kMillisecond)->UseManualTime();

// The guest's unpaced write throughput (`none --rate max` on the kvm workload) over 256 MiB, vCPUs
// as BM_BareWriterLoop/MiB:256's threads (the host's writer loop over the same size): items_per_second are pages written per second once KVM has mapped
// the pages; cold_pages_per_s is the first 200 ms, while the first touches of pages (each a KVM
// mapping fault) dominate.
void BM_KvmGuestWriteThroughput(benchmark::State& state) try {
  if (!require_kvm(state)) return;
  snap::Region& region = cached_region(256 * kMiB);
  snap::kvm::Vm vm(vm_options(region, int(state.range(0)), snap::kRateMax));
  const uint64_t cold_start = snap::now_ns();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  set_counter(state, "cold_pages_per_s", double(vm.total_writes()) / (double(snap::now_ns() - cold_start) * 1e-9));
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  uint64_t writes = 0;
  for (auto _ : state) {
    const uint64_t before = vm.total_writes();
    const uint64_t t0 = snap::now_ns();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    writes += vm.total_writes() - before;
    state.SetIterationTime(double(snap::now_ns() - t0) * 1e-9);
  }
  vm.stop();
  state.SetItemsProcessed(int64_t(writes));
  state.counters["pages_per_s"] = benchmark::Counter(double(writes), benchmark::Counter::kIsRate);
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK(BM_KvmGuestWriteThroughput)->ArgName("vcpus")->Arg(1)->Arg(2)->Iterations(5)->UseManualTime();


}  // namespace

}  // namespace snapbench_micro
