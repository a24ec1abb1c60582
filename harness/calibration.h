// The same-run calibration: how fast this machine saves pages right now, measured on the run's own
// region just before the snapshot, so compare can judge times relative to the machine's current speed.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/region.h"

namespace snap {

// At most this many bytes are copied (the whole region when it is smaller): ~10 ms on the
// development machine, short next to a snapshot, long enough to span several scheduler ticks.
constexpr uint64_t kCalibrationMaxBytes = 64ull << 20;

// Saves the region's resident pages (up to max_bytes; never-touched pages are skipped so that the
// calibration maps nothing new and the strategy finds the region as the writers left it) through an
// ImageWriter into an uncapped null sink — the save path every strategy uses, without its tracking —
// and returns the rate in bytes/s, or 0 when no page is resident. Writers may run meanwhile: they
// compete for the CPU with the calibration as they will with the snapshot.
double calibrate_save_rate(const Region& region, uint64_t max_bytes = kCalibrationMaxBytes);

}  // namespace snap
