// Histogram operations that are not on the recording hot path: merge, clear, percentiles.
#include "core/histogram.h"

#include <algorithm>
#include <cmath>

namespace snap {

void Histogram::merge(const Histogram& other) {
  for (int i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  total_ += other.total_;
  sum_ += other.sum_;
  max_ = std::max(max_, other.max_);
}

void Histogram::merge_raw(const uint64_t* counts, uint64_t total, uint64_t max, uint64_t sum) {
  for (int i = 0; i < kBuckets; ++i) counts_[i] += counts[i];
  total_ += total;
  sum_ += sum;
  max_ = std::max(max_, max);
}

void Histogram::clear() { *this = Histogram(); }

uint64_t Histogram::bucket_upper(int idx) {
  if (idx < kSub) return uint64_t(idx);  // the first kSub values have a bucket each
  const int shift = idx / kSub - 1;
  const uint64_t sub = uint64_t(idx % kSub);
  // Values with (v >> shift) == kSub + sub; the top bucket's bound wraps to UINT64_MAX on purpose.
  return ((uint64_t(kSub) + sub + 1) << shift) - 1;
}

uint64_t Histogram::percentile(double q) const {
  if (total_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // Nearest rank: the smallest value with at least ceil(q * N) samples at or below it.
  uint64_t rank = uint64_t(std::ceil(q * double(total_)));
  rank = std::clamp<uint64_t>(rank, 1, total_);
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(bucket_upper(i), max_);
  }
  return max_;
}

}  // namespace snap
