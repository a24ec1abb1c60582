// The guest writer program (freestanding, 64-bit): each vCPU reads its plan from the control block and
// writes stamped pages of the data area like a host writer thread, timing its own stores with rdtsc.
#include "workloads/kvm/guest_abi.h"

using namespace snap;
using namespace snap::guest;

// The compiler may emit calls to these for struct copies and zeroing.
extern "C" void* memset(void* dst, int c, unsigned long n) {
  auto* d = static_cast<unsigned char*>(dst);
  for (unsigned long i = 0; i < n; ++i) d[i] = static_cast<unsigned char>(c);
  return dst;
}
extern "C" void* memcpy(void* dst, const void* src, unsigned long n) {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  for (unsigned long i = 0; i < n; ++i) d[i] = s[i];
  return dst;
}

namespace {

// exp/log for the zipf sampler from x87 instructions (no libm here). fyl2xp1 and f2xm1 are exact
// near 0, which is what log1p and expm1 are for; outside their domains the plain forms are used.
struct X87Math {
  static double log(double x) {
    double r;
    asm("fldln2\n\tfxch\n\tfyl2x" : "=t"(r) : "0"(x));
    return r;
  }
  static double exp(double x) {
    double r;
    asm("fldl2e\n\tfmulp\n\tfld %%st(0)\n\tfrndint\n\tfxch\n\tfsub %%st(1), %%st\n\tf2xm1\n\tfld1\n\t"
        "faddp\n\tfscale\n\tfstp %%st(1)"
        : "=t"(r)
        : "0"(x));
    return r;
  }
  static double log1p(double x) {
    if (x > -0.29 && x < 0.29) {
      double r;
      asm("fldln2\n\tfxch\n\tfyl2xp1" : "=t"(r) : "0"(x));
      return r;
    }
    return log(1.0 + x);
  }
  static double expm1(double x) {
    if (x > -0.5 && x < 0.5) {
      double r;
      asm("fldl2e\n\tfmulp\n\tf2xm1" : "=t"(r) : "0"(x));
      return r;
    }
    return exp(x) - 1.0;
  }
};

inline uint64_t rdtsc() {
  uint32_t lo, hi;
  // The memory clobber keeps the stores between two readings (as the host writers' barriers do).
  asm volatile("rdtsc" : "=a"(lo), "=d"(hi)::"memory");
  return (uint64_t(hi) << 32) | lo;
}
inline void out32(uint16_t port, uint32_t value) { asm volatile("outl %0, %1" ::"a"(value), "Nd"(port) : "memory"); }
inline void cpu_relax() { asm volatile("pause" ::: "memory"); }
// The loop runs at CPL 3 (entry.S), so it parks through the VMM rather than with hlt.
[[noreturn]] void idle_forever() {
  for (;;) out32(kPortIdle, 0);
}
[[noreturn]] void panic(PanicCode code) {
  for (;;) out32(kPortPanic, code);  // a VMM stops here; one that ignores the port spins
}

// Counters the host reads whenever the vCPU is out of KVM_RUN: plain stores, never kept in registers.
template <class T>
inline T load(const T& x) {
  return __atomic_load_n(&x, __ATOMIC_RELAXED);
}
template <class T>
inline void store(T& x, T v) {
  __atomic_store_n(&x, v, __ATOMIC_RELAXED);
}
inline void bump(uint64_t& x, uint64_t by = 1) { store(x, load(x) + by); }

inline void record(Hist& h, uint64_t ns) {
  bump(h.counts[HistogramLayout::index(ns)]);
  bump(h.total);
  bump(h.sum, ns);
  if (ns > load(h.max)) store(h.max, ns);
}

// The stamp of workloads/workload.h (stamp_offset): seq then page index at a moving offset.
inline void write_stamp(uint64_t page_gpa, uint64_t page, uint64_t seq) {
  auto* p = reinterpret_cast<uint64_t*>(page_gpa + uint64_t(seq % 255) * 16);
  __atomic_store_n(p, seq, __ATOMIC_RELAXED);
  __atomic_store_n(p + 1, page, __ATOMIC_RELAXED);
}

// Unpaced writers time one write in a random gap of 128..383 and watch the stretch in between for
// stalls, as the host writers do (workloads/workload.cpp explains the numbers).
constexpr uint32_t kSampleGapMin = 128, kSampleGapMask = 255;

template <uint32_t Kind>
class Writer {
 public:
  Writer(uint32_t id, ControlHeader& h, VcpuBlock& me)
      : id_(id), h_(h), me_(me), draw_(me.plan), seq_(id), gap_rng_(writer_stream_seed(h.sample_seed, int(id), 0x676170ull)) {}

  [[noreturn]] void run() {
    store(me_.ready, 1u);
    out32(kPortReady, id_);
    if (h_.idle) idle_forever();  // the VMM keeps an idle vCPU's thread asleep
    sync();
    if (h_.unpaced) run_unpaced();
    run_paced();
  }

 private:
  uint64_t to_ns(uint64_t ticks) const { return uint64_t((unsigned __int128)ticks * h_.ns_per_tick_q32 >> 32); }
  uint64_t page_gpa(uint64_t page) const { return h_.data_gpa + page * kPageBytes; }

  // Takes up the control word: its phase, and a fresh reference for the stall watch.
  void sync() {
    seen_ = load(h_.control);
    phase_ = seen_ & kPhaseMask;
    last_timed_end_ = 0;
  }

  void count_write() {
    bump(me_.writes[phase_]);
    bump(me_.count);
  }

  // A token bucket on the TSC: the schedule advances one interval per write and may lag at most
  // burst_ticks behind (as the host writers: a writer stalled longer, by a fault, a pause or a
  // preempted vCPU, loses those writes instead of catching up at full speed afterwards, so a stall
  // shows as a lower achieved rate and no unpaced burst follows it). With the VMM's ports, waiting
  // is a sleep request, never a spin (the vCPUs share the host's CPUs with the saver): a wait
  // shorter than min_sleep_ticks sleeps that long and the writes owed are made up right after,
  // within the burst allowance. Without them (QEMU, where every OUT is a round trip through QEMU's
  // global lock that sleeps nothing) the vCPU spins on the TSC as a real guest's busy wait would.
  [[noreturn]] void run_paced() {
    const uint64_t interval = h_.interval_ticks, burst = h_.burst_ticks, min_sleep = h_.min_sleep_ticks;
    const bool ports = h_.vmm_ports != 0;
    uint64_t next = rdtsc();
    for (;;) {
      uint64_t now = rdtsc();
      if (load(h_.control) != seen_) {
        sync();
        if (next < now) next = now;  // a pause or phase change forgives the debt: no catch-up burst
      }
      if (now < next) {
        if (!ports) {
          cpu_relax();
          continue;
        }
        const uint64_t wait = next - now;
        store(me_.sleep_ticks, wait > min_sleep ? wait : min_sleep);
        bump(me_.sleeps);
        out32(kPortSleep, 0);
        continue;
      }
      next = (next + burst < now ? now - burst : next) + interval;
      const uint64_t page = draw_.next();
      seq_ += 256;
      const uint64_t t0 = rdtsc();
      write_stamp(page_gpa(page), page, seq_);
      const uint64_t t1 = rdtsc();
      // A write interrupted by a pause (the control word moved meanwhile) is not timed: the time
      // parked is downtime, not write latency.
      if (load(h_.control) == seen_) record(me_.hist[phase_], to_ns(t1 > t0 ? t1 - t0 : 0));
      count_write();
    }
  }

  [[noreturn]] void run_unpaced() {
    uint64_t inverse_q32[kSampleGapMin + kSampleGapMask + 1];
    for (uint32_t n = 1; n < kSampleGapMin + kSampleGapMask + 1; ++n) inverse_q32[n] = (uint64_t(1) << 32) / n;
    uint32_t until_timed = 1, gap = 0;
    uint64_t typical_q8 = 0;
    for (;;) {
      if (load(h_.control) != seen_) sync();
      const uint64_t page = draw_.next();
      seq_ += 256;
      if (--until_timed != 0) [[likely]] {
        write_stamp(page_gpa(page), page, seq_);
        count_write();
        continue;
      }
      const uint64_t start = rdtsc();
      write_stamp(page_gpa(page), page, seq_);
      const uint64_t end = rdtsc();
      count_write();
      if (load(h_.control) == seen_) {
        Hist& latency = me_.hist[phase_];
        record(latency, to_ns(end > start ? end - start : 0));
        if (last_timed_end_ != 0 && gap > 1 && start > last_timed_end_) {
          const uint64_t untimed = gap - 1;
          const uint64_t stretch = start - last_timed_end_;
          const uint64_t expected = (typical_q8 * untimed) >> 8;
          if (typical_q8 != 0 && stretch > expected + expected / 2 && stretch - expected > h_.stall_min_ticks) {
            const uint64_t stall_ns = to_ns(stretch - expected);
            if (stall_ns > load(latency.max)) record(latency, stall_ns);
          } else {
            const uint64_t per_write_q8 = (stretch * inverse_q32[untimed]) >> 24;
            typical_q8 = typical_q8 == 0 ? per_write_q8 : typical_q8 - (typical_q8 >> 4) + (per_write_q8 >> 4);
          }
        }
        last_timed_end_ = end;
      }
      gap = kSampleGapMin + uint32_t(gap_rng_.next() & kSampleGapMask);
      until_timed = gap;
    }
  }

  const uint32_t id_;
  ControlHeader& h_;
  VcpuBlock& me_;
  PatternDraw<X87Math, Kind> draw_;
  uint64_t seq_;  // the last seq written: (count << 8) | id
  Xoshiro256 gap_rng_;
  uint32_t seen_ = 0, phase_ = 0;
  uint64_t last_timed_end_ = 0;
};

template <uint32_t Kind>
[[noreturn]] void run_writer(uint32_t id, ControlHeader& h, VcpuBlock& me) {
  Writer<Kind>(id, h, me).run();
}

}  // namespace

// Called at CPL 0 just before the drop to CPL 3 (entry.S): without the VMM's ports there is no way to
// park from CPL 3 without exits, so an idle guest (rate 0: it never writes) reports ready and halts
// here for good, with interrupts off; QEMU's stop and cont leave a halted vCPU halted. Returns in
// every other case, and on a bad control block, which guest_main then reports.
extern "C" void guest_halt_if_idle(uint32_t vcpu) {
  ControlHeader& h = *reinterpret_cast<ControlHeader*>(kControlGpa);
  if (load(h.magic) != kControlMagic || h.version != kControlVersion) return;
  if (h.vmm_ports || !h.idle || vcpu >= h.vcpus || vcpu >= kMaxVcpus) return;
  store(reinterpret_cast<VcpuBlock*>(vcpu_block_gpa(vcpu))->ready, 1u);
  for (;;) asm volatile("cli\n\thlt" ::: "memory");
}

extern "C" [[noreturn]] void guest_main(uint32_t vcpu) {
  ControlHeader& h = *reinterpret_cast<ControlHeader*>(kControlGpa);
  if (load(h.magic) != kControlMagic || h.version != kControlVersion) panic(kPanicBadControl);
  if (vcpu >= h.vcpus || vcpu >= kMaxVcpus) panic(kPanicBadVcpu);
  VcpuBlock& me = *reinterpret_cast<VcpuBlock*>(vcpu_block_gpa(vcpu));
  switch (me.plan.kind) {
    case PatternPlan::kUniform: run_writer<PatternPlan::kUniform>(vcpu, h, me);
    case PatternPlan::kHotset: run_writer<PatternPlan::kHotset>(vcpu, h, me);
    case PatternPlan::kZipf: run_writer<PatternPlan::kZipf>(vcpu, h, me);
    case PatternPlan::kSequential: run_writer<PatternPlan::kSequential>(vcpu, h, me);
  }
  panic(kPanicBadPattern);
}
