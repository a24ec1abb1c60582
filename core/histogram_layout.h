// The latency histogram's bucket layout, freestanding, so the KVM guest fills buckets the host reads.
#pragma once
#include <stdint.h>

namespace snap {

// Values are bucketed by their power of two and 32 linear sub-buckets within it (≈3 % precision).
struct HistogramLayout {
  static constexpr int kSubBits = 5;
  static constexpr int kSub = 1 << kSubBits;
  static constexpr int kBuckets = (64 - kSubBits + 1) * kSub;

  static int index(uint64_t v) {
    if (v < uint64_t(kSub)) return int(v);
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - kSubBits;
    return (shift + 1) * kSub + int((v >> shift) & (kSub - 1));
  }
};

}  // namespace snap
