// The `threads` workload: paced writer threads that dirty the region, their per-phase statistics,
// and pause/resume.
#include "workloads/threads.h"

#include <linux/futex.h>
#include <numa.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <cmath>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "core/clock.h"
#include "core/error.h"
#include "workloads/pattern_kit.h"

#if defined(__x86_64__)
#include <cpuid.h>
#include <x86intrin.h>
#endif

namespace snap {

namespace {

// ---- The latency clock ------------------------------------------------------------------------
// Write latency is taken with rdtsc (~8 ns here, against ~17 ns for the vDSO clock_gettime) when
// the TSC is invariant, converted to ns with a factor calibrated once against CLOCK_MONOTONIC.
// Otherwise the ticks are CLOCK_MONOTONIC nanoseconds. Pacing always uses CLOCK_MONOTONIC.
struct TickClock {
  bool tsc = false;
  uint64_t ns_per_tick_q32 = uint64_t(1) << 32;  // 32.32 fixed point

  uint64_t to_ns(uint64_t ticks) const { return uint64_t((unsigned __int128)ticks * ns_per_tick_q32 >> 32); }
};

bool invariant_tsc() {
#if defined(__x86_64__)
  unsigned a, b, c, d;
  return __get_cpuid(0x80000007, &a, &b, &c, &d) && (d & (1u << 8));
#else
  return false;
#endif
}

TickClock calibrate_tick_clock() {
  TickClock clock;
#if defined(__x86_64__)
  if (!invariant_tsc()) return clock;
  const uint64_t ns0 = now_ns(), tsc0 = __rdtsc();
  uint64_t ns1;
  while ((ns1 = now_ns()) - ns0 < 2000000) {
  }
  const uint64_t tsc1 = __rdtsc();
  if (tsc1 <= tsc0) return clock;
  clock.tsc = true;
  clock.ns_per_tick_q32 = uint64_t(std::ldexp(double(ns1 - ns0) / double(tsc1 - tsc0), 32));
#endif
  return clock;
}

const TickClock& tick_clock() {
  static const TickClock clock = calibrate_tick_clock();
  return clock;
}

inline uint64_t read_ticks(bool tsc) {
#if defined(__x86_64__)
  // The compiler barriers keep the stores between the two readings. A store that faults squashes
  // the (possibly early-executed) rdtsc after it, so the second reading comes after the stall.
  asm volatile("" ::: "memory");
  const uint64_t t = tsc ? __rdtsc() : now_ns();
  asm volatile("" ::: "memory");
  return t;
#else
  (void)tsc;
  return now_ns();
#endif
}

// ---- futex ------------------------------------------------------------------------------------
uint32_t* futex_word(std::atomic<uint32_t>& a) {
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) && std::atomic<uint32_t>::is_always_lock_free);
  return reinterpret_cast<uint32_t*>(&a);
}

// Sleeps while `a` == expected, until woken or the absolute CLOCK_MONOTONIC time `deadline_ns`
// (0 = no deadline). Spurious returns are fine: every caller re-checks its condition.
void futex_wait(std::atomic<uint32_t>& a, uint32_t expected, uint64_t deadline_ns = 0) {
  if (deadline_ns == 0) {
    syscall(SYS_futex, futex_word(a), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
    return;
  }
  timespec ts{time_t(deadline_ns / 1000000000ull), long(deadline_ns % 1000000000ull)};
  syscall(SYS_futex, futex_word(a), FUTEX_WAIT_BITSET_PRIVATE, expected, &ts, nullptr, FUTEX_BITSET_MATCH_ANY);
}

void futex_wake_all(std::atomic<uint32_t>& a) {
  syscall(SYS_futex, futex_word(a), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

// ---- The control word -------------------------------------------------------------------------
// One 32-bit word that writers compare against their last-seen value before every write (a plain
// load, no fence on x86). Any change (pause, stop, phase) bumps the generation in the high bits, so
// a single comparison catches all of them and the futex sleeps of paced and idle writers end.
constexpr uint32_t kPausedBit = 1, kStopBit = 2, kGenerationStep = 4;

constexpr uint64_t kParkTimeoutNs = 5000000000ull;
constexpr uint64_t kPauseSpinNs = 20000;       // spin this long before sleeping in pause()
constexpr double kBurstNs = 2e6;               // a paced writer may run at most 2 ms behind schedule
constexpr uint64_t kMaxSleepSliceNs = 1000000;  // paced sleeps are cut into ≤1 ms slices

// At unlimited rate a write costs ~12-100 ns here (pattern-dependent) and one rdtsc ~8 ns, so
// timing every write would cut throughput by up to 40 %, and even one timed write in 64 costs ~5 %
// (the two rdtsc and a histogram whose lines the write stream keeps evicting). So one write in a
// random gap of 128..383 (mean 256; measured: within noise for the random patterns, 3-5 % for the
// ~90 M writes/s sequential sweep; still ~10^5 samples/s per writer) is timed exactly and
// recorded; the random gap keeps the percentiles unbiased (it cannot lock onto a periodic pattern
// such as one fault per huge page). The stretch between two timed writes is watched as well: when it
// took clearly longer than its writes normally do, an untimed write stalled, and its estimated
// latency (stretch minus the usual cost) is recorded if it exceeds the current maximum, so the
// largest stall is never missed while the extra samples stay O(log n). Paced writers have time to
// spare and time every write.
constexpr uint32_t kSampleGapMin = 128, kSampleGapMask = 255;
constexpr uint64_t kStallMinNs = 2000;
constexpr auto kInverseQ32 = [] {  // 2^32 / n for every possible count of untimed writes
  std::array<uint64_t, kSampleGapMin + kSampleGapMask + 1> inv{};
  for (size_t n = 1; n < inv.size(); ++n) inv[n] = (uint64_t(1) << 32) / n;
  return inv;
}();

}  // namespace

struct ThreadWorkload::Impl {
  struct alignas(64) Writer {
    int id = 0;
    std::unique_ptr<AccessPattern> pattern;
    std::thread thread;
    alignas(64) std::atomic<uint64_t> published{0};  // writes so far, for total_writes()
    alignas(64) Histogram latency[3];                 // per phase, owned by the writer thread
    uint64_t writes[3] = {};
  };

  Region& region;
  WorkloadOptions opts;
  TickClock clock;
  std::vector<std::unique_ptr<Writer>> writers;

  alignas(64) std::atomic<uint32_t> control{0};
  std::atomic<int> phase{int(Phase::kWarmup)};
  alignas(64) std::atomic<uint32_t> parked{0};
  std::atomic<uint32_t> started{0};  // writers that finished their set-up
  std::atomic<bool> bind_failed{false};
  // The CPUs of opts.numa_node, read once by the constructing thread: libnuma's node-to-CPU cache is
  // not thread-safe (writers calling numa_run_on_node at once raced inside it, found by TSan), so the
  // writers bind with sched_setaffinity and never call into libnuma.
  cpu_set_t node_cpus;

  std::mutex control_mutex;  // serialises the controlling calls (never taken by writers)
  bool stopped = false;
  uint64_t phase_started_ns = 0;
  double phase_seconds[3] = {};

  Impl(Region& r, const WorkloadOptions& o) : region(r), opts(o), clock(tick_clock()) {}

  // Control word updates, under control_mutex.
  void publish_control(uint32_t flags) {
    const uint32_t generation = (control.load() & ~(kPausedBit | kStopBit)) + kGenerationStep;
    control.store(generation | flags);
    futex_wake_all(control);
  }
  uint32_t current_flags() const { return control.load() & (kPausedBit | kStopBit); }

  void close_phase(uint64_t now) {
    phase_seconds[phase.load()] += ns_to_s(now - phase_started_ns);
    phase_started_ns = now;
  }

  void pause_locked();
  void resume_locked() {
    if (current_flags() & kPausedBit) publish_control(current_flags() & ~kPausedBit);
  }
  void stop_locked();

  // Writer side.
  class WriterLoop;
  void run_writer(Writer& w);
};

// One writer thread's loop. It touches only its own Writer and reads the shared control word.
class ThreadWorkload::Impl::WriterLoop {
 public:
  WriterLoop(Impl& impl, Writer& w)
      : impl_(impl),
        w_(w),
        base_(impl.region.base()),
        pattern_(*w.pattern),
        tsc_(impl.clock.tsc),
        seq_(uint64_t(w.id)),
        gap_rng_(writer_stream_seed(impl.opts.seed, w.id, 0x676170ull)) {}

  void run() {
    if (impl_.opts.rate_pages == 0)
      run_idle();
    else if (impl_.opts.rate_pages > 0)
      run_paced();
    else
      run_unlimited();
    // The writes of the last phase, and the final count.
    w_.writes[phase_] += count() - phase_base_count_;
    w_.published.store(count(), std::memory_order_relaxed);
  }

 private:
  // Write n of this writer carries seq (n << 8) | id: adding 256 counts one write.
  uint64_t count() const { return seq_ >> 8; }
  uint64_t next_seq() { return seq_ += 256; }

  static void write_stamp(uint8_t* base, uint64_t page, uint64_t seq) {
    uint8_t* p = base + page * kPageSize + stamp_offset(seq);
    __atomic_store_n(reinterpret_cast<uint64_t*>(p), seq, __ATOMIC_RELAXED);
    __atomic_store_n(reinterpret_cast<uint64_t*>(p + 8), page, __ATOMIC_RELAXED);
  }

  // Returns the write's latency in ticks.
  uint64_t timed_write(uint64_t page, uint64_t seq) {
    const uint64_t t0 = read_ticks(tsc_);
    write_stamp(base_, page, seq);
    const uint64_t t1 = read_ticks(tsc_);
    return t1 > t0 ? t1 - t0 : 0;
  }

  // Slow path when the control word differs from the last one seen: parks while paused, returns
  // false on stop, and otherwise takes up the (maybe new) phase. `seen_` never holds a paused or
  // stopping value, so the fast-path comparison cannot let a write through a pause.
  bool sync_control() {
    for (;;) {
      const uint32_t c = impl_.control.load();
      if (c & kStopBit) return false;
      if (c & kPausedBit) {
        park();
        continue;  // look again: it may have been paused again or stopped meanwhile
      }
      seen_ = c;
      const int p = impl_.phase.load();
      if (p != phase_) {
        w_.writes[phase_] += count() - phase_base_count_;
        phase_base_count_ = count();
        phase_ = p;
      }
      last_timed_end_ = 0;  // the stretch since the last timed write spans the interruption
      return true;
    }
  }

  // Counts itself parked, tells the pauser, then sleeps until the pause bit clears (or stop).
  void park() {
    parked_since_sync_ = true;
    w_.published.store(count(), std::memory_order_relaxed);  // exact while paused
    impl_.parked.fetch_add(1);
    futex_wake_all(impl_.parked);
    uint32_t c;
    while (((c = impl_.control.load()) & kPausedBit) && !(c & kStopBit)) futex_wait(impl_.control, c);
    impl_.parked.fetch_sub(1);
  }

  bool control_changed() const { return impl_.control.load() != seen_; }

  // Rate 0: the thread exists, never writes, and still obeys pause and stop.
  void run_idle() {
    while (sync_control()) futex_wait(impl_.control, seen_);
  }

  // A token bucket on absolute time: the schedule advances one interval per write and may lag at
  // most kBurstNs behind now, so a stall or a pause is not followed by a long catch-up burst. Sleeps
  // are futex waits on the control word, so a pause, phase change or stop ends them at once.
  void run_paced() {
    const double interval_ns = 1e9 * double(impl_.writers.size()) / impl_.opts.rate_pages;
    double next_write_ns = double(now_ns());
    while (sync_control()) {
      // After a pause the debt is forgiven entirely: the writers resume at their rate, not in a burst.
      next_write_ns = std::max(next_write_ns, double(now_ns()) - (parked_since_sync_ ? 0.0 : kBurstNs));
      parked_since_sync_ = false;
      while (!control_changed()) {
        const uint64_t now = now_ns();
        if (double(now) < next_write_ns) {
          futex_wait(impl_.control, seen_, std::min(uint64_t(next_write_ns), now + kMaxSleepSliceNs));
          continue;
        }
        next_write_ns = std::max(next_write_ns, double(now) - kBurstNs) + interval_ns;
        const uint64_t page = pattern_.next();
        const uint64_t seq = next_seq();
        w_.latency[phase_].record(impl_.clock.to_ns(timed_write(page, seq)));
        w_.published.store(count(), std::memory_order_relaxed);
      }
    }
  }

  // Unlimited rate: see kSampleGapMin for why only some writes are timed.
  // The hot loop keeps its state in locals: members would be reloaded from memory after every
  // (opaque, virtual) next() call.
  void run_unlimited() {
    uint32_t until_timed = 1;
    while (sync_control()) {
      const std::atomic<uint32_t>& control = impl_.control;
      const uint32_t seen = seen_;
      AccessPattern& pattern = pattern_;
      uint8_t* const base = base_;
      uint64_t seq = seq_;
      while (control.load() == seen) {
        const uint64_t page = pattern.next();
        seq += 256;
        if (--until_timed != 0) [[likely]] {
          write_stamp(base, page, seq);
          continue;
        }
        seq_ = seq;
        sampled_write(page, seq);
        until_timed = gap_;
      }
      seq_ = seq;
    }
  }

  // The timed write of a stretch, and the stall watch over the untimed writes before it.
  void sampled_write(uint64_t page, uint64_t seq) {
    const uint64_t start = read_ticks(tsc_);
    write_stamp(base_, page, seq);
    const uint64_t end = read_ticks(tsc_);
    w_.published.store(count(), std::memory_order_relaxed);
    Histogram& latency = w_.latency[phase_];
    latency.record(impl_.clock.to_ns(end > start ? end - start : 0));
    if (last_timed_end_ != 0 && gap_ > 1 && start > last_timed_end_) {
      const uint64_t untimed = gap_ - 1;
      const uint64_t stretch = start - last_timed_end_;
      const uint64_t expected = (typical_write_q8_ * untimed) >> 8;
      if (typical_write_q8_ != 0 && stretch > expected + expected / 2 &&
          impl_.clock.to_ns(stretch - expected) > kStallMinNs) {
        const uint64_t stall_ns = impl_.clock.to_ns(stretch - expected);
        if (stall_ns > latency.max()) latency.record(stall_ns);
      } else {
        const uint64_t per_write_q8 = (stretch * kInverseQ32[untimed]) >> 24;  // no 40-cycle divide
        typical_write_q8_ = typical_write_q8_ == 0 ? per_write_q8
                                                   : typical_write_q8_ - (typical_write_q8_ >> 4) + (per_write_q8 >> 4);
      }
    }
    last_timed_end_ = end;
    gap_ = kSampleGapMin + uint32_t(gap_rng_.next() & kSampleGapMask);
  }

  Impl& impl_;
  Writer& w_;
  uint8_t* const base_;
  AccessPattern& pattern_;
  const bool tsc_;
  uint64_t seq_;                  // the last seq written (its count is seq_ >> 8)
  uint32_t seen_ = ~uint32_t(0);  // never a real control value: the first check takes the slow path
  int phase_ = int(Phase::kWarmup);
  bool parked_since_sync_ = false;
  uint64_t phase_base_count_ = 0;  // count() when the current phase began
  // Sampled timing (unlimited rate).
  Xoshiro256 gap_rng_;
  uint32_t gap_ = 0;               // writes from the previous timed write to the next, inclusive
  uint64_t last_timed_end_ = 0;    // ticks; 0 = no reference (start, pause, phase change)
  uint64_t typical_write_q8_ = 0;  // EMA of an untimed write's ticks, 24.8 fixed point
};

void ThreadWorkload::Impl::run_writer(Writer& w) {
  const std::string name = "snap-writer-" + std::to_string(w.id);
  pthread_setname_np(pthread_self(), name.c_str());
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);  // paced sleeps end on time, not 50 µs late
  if (opts.numa_node >= 0 && sched_setaffinity(0, sizeof node_cpus, &node_cpus) != 0) bind_failed.store(true);
  started.fetch_add(1);
  futex_wake_all(started);
  WriterLoop(*this, w).run();
}

void ThreadWorkload::Impl::pause_locked() {
  if (stopped || (current_flags() & kPausedBit)) return;
  publish_control(kPausedBit);
  const uint32_t want = uint32_t(writers.size());
  const uint64_t start = now_ns();
  uint64_t now = start;
  // Running writers notice within one write, so a short spin usually suffices and costs µs; then
  // sleep, woken by each writer that parks (or by the deadline).
  while (parked.load() < want && (now = now_ns()) - start < kPauseSpinNs) {
#if defined(__x86_64__)
    _mm_pause();
#endif
  }
  for (;;) {
    const uint32_t p = parked.load();
    if (p >= want) return;
    now = now_ns();
    if (now - start >= kParkTimeoutNs) break;
    futex_wait(parked, p, start + kParkTimeoutNs);
  }
  resume_locked();
  throw std::runtime_error("writers did not park within 5 s");
}

void ThreadWorkload::Impl::stop_locked() {
  if (stopped) return;
  publish_control(kStopBit);  // also clears the pause bit: no writer is left parked
  for (auto& w : writers)
    if (w->thread.joinable()) w->thread.join();
  close_phase(now_ns());
  stopped = true;
}

ThreadWorkload::ThreadWorkload(Region& region, const WorkloadOptions& opts) : impl_(std::make_unique<Impl>(region, opts)) {
  if (opts.writers < 0 || opts.writers > 256)
    throw UsageError("--writers: must be between 0 and 256 (got " + std::to_string(opts.writers) + ")");
  if (!(opts.rate_pages >= 0 || opts.rate_pages == kRateMax))
    throw UsageError("--rate: must be 0 (idle), a positive rate or max");
  if (opts.numa_node >= 0 && (numa_available() < 0 || opts.numa_node > numa_max_node()))
    throw UsageError("--numa-node: node " + std::to_string(opts.numa_node) + " is not available");
  check_pattern_spec(opts.pattern);
  for (int i = 0; i < opts.writers; ++i) {
    auto w = std::make_unique<Impl::Writer>();
    w->id = i;
    w->pattern = make_pattern(opts.pattern, region.pages(), opts.seed, i, opts.writers);
    impl_->writers.push_back(std::move(w));
  }
  if (opts.numa_node >= 0) {
    CPU_ZERO(&impl_->node_cpus);
    struct bitmask* cpus = numa_allocate_cpumask();
    const bool read = numa_node_to_cpus(opts.numa_node, cpus) == 0;
    for (unsigned c = 0; read && c < cpus->size && c < CPU_SETSIZE; ++c)
      if (numa_bitmask_isbitset(cpus, c)) CPU_SET(c, &impl_->node_cpus);
    numa_free_cpumask(cpus);
    if (!read || CPU_COUNT(&impl_->node_cpus) == 0)
      throw std::runtime_error("writers could not be bound to NUMA node " + std::to_string(opts.numa_node) +
                               ": its CPUs are unknown");
  }
  impl_->phase_started_ns = now_ns();
  try {
    for (auto& w : impl_->writers) w->thread = std::thread([this, wp = w.get()] { impl_->run_writer(*wp); });
  } catch (...) {
    std::lock_guard lock(impl_->control_mutex);
    impl_->stop_locked();
    throw;
  }
  // Wait for every writer's set-up, so a NUMA binding failure is reported here.
  for (uint32_t s; (s = impl_->started.load()) < uint32_t(opts.writers);) futex_wait(impl_->started, s);
  if (impl_->bind_failed.load()) {
    stop();
    throw std::runtime_error("writers could not be bound to NUMA node " + std::to_string(opts.numa_node));
  }
}

ThreadWorkload::~ThreadWorkload() { stop(); }

void ThreadWorkload::set_phase(Phase p) {
  std::lock_guard lock(impl_->control_mutex);
  if (impl_->stopped || impl_->phase.load() == int(p)) return;
  impl_->close_phase(now_ns());
  impl_->phase.store(int(p));
  impl_->publish_control(impl_->current_flags());
}

void ThreadWorkload::pause() {
  std::lock_guard lock(impl_->control_mutex);
  impl_->pause_locked();
}

void ThreadWorkload::resume() {
  std::lock_guard lock(impl_->control_mutex);
  if (!impl_->stopped) impl_->resume_locked();
}

bool ThreadWorkload::paused() const { return impl_->current_flags() & kPausedBit; }

void ThreadWorkload::stop() {
  std::lock_guard lock(impl_->control_mutex);
  impl_->stop_locked();
}

PhaseStats ThreadWorkload::stats(Phase p) const {
  std::lock_guard lock(impl_->control_mutex);
  // The histograms belong to the writer threads until they are joined.
  if (!impl_->stopped) throw std::logic_error("ThreadWorkload::stats() before stop()");
  PhaseStats out;
  for (const auto& w : impl_->writers) {
    out.latency.merge(w->latency[int(p)]);
    out.writes += w->writes[int(p)];
  }
  out.seconds = impl_->phase_seconds[int(p)];
  return out;
}

uint64_t ThreadWorkload::total_writes() const {
  uint64_t sum = 0;
  for (const auto& w : impl_->writers) sum += w->published.load(std::memory_order_relaxed);
  return sum;
}

}  // namespace snap

namespace snap {

const WorkloadEntry& threads_workload() {
  static const WorkloadEntry entry{
      "threads",
      "paced writer threads in this process (--writers, --rate, --pattern)",
      {},
      [] { return Support::yes(); },
      [](Region& region, const WorkloadOptions& opts, const ParamValues&) -> std::unique_ptr<Workload> {
        return std::make_unique<ThreadWorkload>(region, opts);
      },
  };
  return entry;
}

}  // namespace snap
