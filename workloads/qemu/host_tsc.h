// The host's TSC frequency, measured: under TCG the guest's TSC is the host's (QEMU reads it for the
// guest's rdtsc), and QEMU's tsc-frequency property is 0 there, so the guest's clock is this one.
#pragma once

namespace snap::qemu {

// Ticks of the host TSC per second of CLOCK_MONOTONIC_RAW, over about 3 x 20 ms (the median of three
// bracketed readings, so one preemption cannot skew it). Throws std::runtime_error when the TSC does
// not advance (a host without one).
double measure_host_tsc_hz();

}  // namespace snap::qemu
