// A log-bucketed (HDR-style) latency histogram in nanoseconds: cheap to record, mergeable.
#pragma once
#include <array>
#include <cstdint>

#include "core/histogram_layout.h"

namespace snap {

// Values are bucketed by their power of two and 32 linear sub-buckets within it (≈3 % precision).
class Histogram {
 public:
  static constexpr int kSubBits = HistogramLayout::kSubBits;
  static constexpr int kSub = HistogramLayout::kSub;
  static constexpr int kBuckets = HistogramLayout::kBuckets;

  void record(uint64_t ns) {
    ++counts_[index(ns)];
    ++total_;
    if (ns > max_) max_ = ns;
    sum_ += ns;
  }
  void merge(const Histogram& other);
  // Adds counts kept elsewhere in this layout (the KVM guest's histograms): kBuckets counts.
  void merge_raw(const uint64_t* counts, uint64_t total, uint64_t max, uint64_t sum);
  void clear();
  uint64_t count() const { return total_; }
  uint64_t max() const { return max_; }
  double mean() const { return total_ ? double(sum_) / double(total_) : 0.0; }
  // Value at quantile q in [0,1] (upper edge of its bucket, capped at max). 0 when empty.
  uint64_t percentile(double q) const;

  static int index(uint64_t v) { return HistogramLayout::index(v); }
  static uint64_t bucket_upper(int idx);

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t total_ = 0;
  uint64_t max_ = 0;
  uint64_t sum_ = 0;
};

}  // namespace snap
