// The latency histogram: percentiles on known data, bucket bounds, merge and clear.
#include <gtest/gtest.h>

#include <cmath>

#include "core/histogram.h"

using namespace snap;

TEST(Histogram, EmptyIsAllZero) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.mean(), 0.0);
  for (double q : {0.0, 0.5, 0.99, 1.0}) EXPECT_EQ(h.percentile(q), 0u) << q;
}

TEST(Histogram, SingleValueIsExactEverywhere) {
  for (uint64_t v : {0ull, 1ull, 31ull, 32ull, 1000ull, 123456789ull}) {
    Histogram h;
    h.record(v);
    for (double q : {0.0, 0.5, 0.999, 1.0}) EXPECT_EQ(h.percentile(q), v) << v << " q=" << q;
    EXPECT_EQ(h.max(), v);
  }
}

TEST(Histogram, UniformPercentilesWithinBucketPrecision) {
  Histogram h;
  for (uint64_t v = 1; v <= 1000000; ++v) h.record(v);
  struct Case {
    double q, exact;
  } cases[] = {{0.50, 500000}, {0.90, 900000}, {0.99, 990000}, {0.999, 999000}, {0.01, 10000}};
  for (const auto& c : cases) {
    const double got = double(h.percentile(c.q));
    EXPECT_LE(std::abs(got - c.exact) / c.exact, 0.04) << "q=" << c.q << " got " << got;
    EXPECT_GE(got, c.exact) << "the upper edge of the bucket never under-reports";
  }
  EXPECT_EQ(h.percentile(1.0), 1000000u);
  EXPECT_EQ(h.max(), 1000000u);
  EXPECT_DOUBLE_EQ(h.mean(), 500000.5);
}

TEST(Histogram, SmallValuesHaveExactBuckets) {
  Histogram h;
  for (uint64_t v = 1; v <= 10; ++v) h.record(v);
  EXPECT_EQ(h.percentile(0.5), 5u);  // nearest rank: ceil(0.5 * 10) = 5th value
  EXPECT_EQ(h.percentile(0.51), 6u);
  EXPECT_EQ(h.percentile(0.0), 1u);
}

TEST(Histogram, BucketUpperBoundsContainTheirValues) {
  for (uint64_t v : {0ull, 31ull, 32ull, 33ull, 63ull, 64ull, 65ull, 1000ull, 4095ull, 4096ull, 1ull << 40,
                     (1ull << 63) + 12345, ~0ull}) {
    const int idx = Histogram::index(v);
    ASSERT_LT(idx, Histogram::kBuckets);
    EXPECT_GE(Histogram::bucket_upper(idx), v) << v;
    if (idx > 0) {
      EXPECT_LT(Histogram::bucket_upper(idx - 1), v) << v;
    }
    EXPECT_EQ(Histogram::index(Histogram::bucket_upper(idx)), idx) << v;
  }
  EXPECT_EQ(Histogram::bucket_upper(Histogram::kBuckets - 1), ~0ull);
}

TEST(Histogram, MergeEqualsRecordingEverything) {
  Histogram a, b, all;
  for (uint64_t v = 1; v <= 5000; ++v) {
    (v % 3 ? a : b).record(v * 7);
    all.record(v * 7);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.max(), all.max());
  EXPECT_DOUBLE_EQ(a.mean(), all.mean());
  for (double q : {0.1, 0.5, 0.9, 0.99, 1.0}) EXPECT_EQ(a.percentile(q), all.percentile(q)) << q;
  a.clear();
  EXPECT_EQ(a.count(), 0u);
  EXPECT_EQ(a.max(), 0u);
  EXPECT_EQ(a.percentile(0.5), 0u);
}
