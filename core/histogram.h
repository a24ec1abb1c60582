// A log-bucketed (HDR-style) latency histogram in nanoseconds: cheap to record, mergeable.
#pragma once
#include <array>
#include <cstdint>

namespace snap {

// Values are bucketed by their power of two and 32 linear sub-buckets within it (≈3 % precision).
class Histogram {
 public:
  static constexpr int kSubBits = 5;
  static constexpr int kSub = 1 << kSubBits;
  static constexpr int kBuckets = (64 - kSubBits + 1) * kSub;

  void record(uint64_t ns) {
    ++counts_[index(ns)];
    ++total_;
    if (ns > max_) max_ = ns;
    sum_ += ns;
  }
  void merge(const Histogram& other);
  void clear();
  uint64_t count() const { return total_; }
  uint64_t max() const { return max_; }
  double mean() const { return total_ ? double(sum_) / double(total_) : 0.0; }
  // Value at quantile q in [0,1] (upper edge of its bucket, capped at max). 0 when empty.
  uint64_t percentile(double q) const;

  static int index(uint64_t v) {
    if (v < uint64_t(kSub)) return int(v);
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - kSubBits;
    return (shift + 1) * kSub + int((v >> shift) & (kSub - 1));
  }
  static uint64_t bucket_upper(int idx);

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t total_ = 0;
  uint64_t max_ = 0;
  uint64_t sum_ = 0;
};

}  // namespace snap
