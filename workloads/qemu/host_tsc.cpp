// measure_host_tsc_hz: the host TSC against CLOCK_MONOTONIC_RAW (see host_tsc.h).
#include "workloads/qemu/host_tsc.h"

#include <time.h>
#include <x86intrin.h>

#include <algorithm>
#include <cstdint>
#include <chrono>
#include <stdexcept>
#include <thread>

namespace snap::qemu {

namespace {

struct Reading {
  double ns;
  double ticks;
};

// A clock reading between two TSC reads, taken at the middle of the pair with the narrowest gap
// of a few tries: a reading whose pair a preemption split is not used.
Reading read_pair() {
  Reading best{0, 0};
  double best_gap = 1e30;
  for (int i = 0; i < 5; ++i) {
    timespec ts;
    const uint64_t a = __rdtsc();
    clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
    const uint64_t b = __rdtsc();
    const double gap = double(b - a);
    if (gap < best_gap) {
      best_gap = gap;
      best = {double(ts.tv_sec) * 1e9 + double(ts.tv_nsec), double(a) + gap / 2};
    }
  }
  return best;
}

}  // namespace

double measure_host_tsc_hz() {
  double hz[3];
  for (double& h : hz) {
    const Reading a = read_pair();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const Reading b = read_pair();
    h = b.ns > a.ns ? (b.ticks - a.ticks) * 1e9 / (b.ns - a.ns) : 0;
  }
  std::sort(hz, hz + 3);
  if (!(hz[1] > 1e6)) throw std::runtime_error("the host TSC does not advance: no clock for a TCG guest");
  return hz[1];
}

}  // namespace snap::qemu
