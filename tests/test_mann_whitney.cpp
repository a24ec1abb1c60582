// The Mann-Whitney U test against values computed by hand (and, for the record, equal to
// scipy.stats.mannwhitneyu's): U, the exact two-sided p for small samples, the normal approximation
// with tie correction.
#include <gtest/gtest.h>

#include "harness/mann_whitney.h"

using namespace snap;

// Every x below every y: U = 0, and only 1 of the C(6,3) = 20 orderings is that extreme in each
// direction, so p = 2/20.
TEST(MannWhitney, SeparatedSamplesOfThreeGiveTheSmallestExactP) {
  auto r = mann_whitney({1, 2, 3}, {4, 5, 6});
  EXPECT_DOUBLE_EQ(r.u, 0);
  EXPECT_TRUE(r.exact);
  EXPECT_NEAR(r.p, 0.1, 1e-12);
  // The other way round U = n1*n2 and the same p.
  auto s = mann_whitney({4, 5, 6}, {1, 2, 3});
  EXPECT_DOUBLE_EQ(s.u, 9);
  EXPECT_NEAR(s.p, 0.1, 1e-12);
  EXPECT_NEAR(mann_whitney_min_p(3, 3), 0.1, 1e-12);
}

// x = {1,3,5}, y = {2,4,6}: x ranks 1,3,5 sum to 9, U = 9 - 6 = 3. For 3 and 3 values the number of
// orderings giving U = 0..9 is 1,1,2,3,3,3,3,2,1,1 (of 20), so P(U <= 3) = 7/20 and p = 2 * 7/20.
TEST(MannWhitney, InterleavedSamplesGiveTheExactTail) {
  auto r = mann_whitney({1, 3, 5}, {2, 4, 6});
  EXPECT_DOUBLE_EQ(r.u, 3);
  EXPECT_TRUE(r.exact);
  EXPECT_NEAR(r.p, 0.7, 1e-12);
}

// 5 against 5, separated: p = 2 / C(10,5) = 2/252.
TEST(MannWhitney, SeparatedSamplesOfFive) {
  auto r = mann_whitney({1, 2, 3, 4, 5}, {6, 7, 8, 9, 10});
  EXPECT_DOUBLE_EQ(r.u, 0);
  EXPECT_NEAR(r.p, 2.0 / 252, 1e-12);
  EXPECT_NEAR(mann_whitney_min_p(5, 5), 2.0 / 252, 1e-12);
  // A significance level of 0.05 needs at least 4 repetitions a side: 2/C(8,4) = 2/70 < 0.05 < 2/20.
  EXPECT_GT(mann_whitney_min_p(3, 3), 0.05);
  EXPECT_LT(mann_whitney_min_p(4, 4), 0.05);
}

// Larger samples, still without ties, use the exact distribution (p as scipy's method="exact" gives).
TEST(MannWhitney, ExactForTwelveAgainstTwelve) {
  std::vector<double> x, y;
  for (int i = 1; i <= 12; ++i) x.push_back(i);
  // y = 7.5, 8.5, ..., 12.5, 13, ..., 18: no ties with x. An x value k in 8..12 beats the y values
  // 7.5 .. k-0.5, i.e. k-7 of them: U = 1+2+3+4+5 = 15.
  for (int i = 7; i <= 12; ++i) y.push_back(i + 0.5);
  for (int i = 13; i <= 18; ++i) y.push_back(i);
  auto r = mann_whitney(x, y);
  EXPECT_TRUE(r.exact);
  EXPECT_DOUBLE_EQ(r.u, 15);
  EXPECT_NEAR(r.p, 0.000495533541703955, 1e-12);
}

// With ties: x = {1,2,2,3}, y = {2,4,5,5}. Pooled and sorted: 1x 2x 2x 2y 3x 4y 5y 5y; the three 2s
// share rank 3, the two 5s rank 7.5. x's ranks 1+3+3+5 = 12, U = 12 - 10 = 2, mean n1*n2/2 = 8.
// Tie term: (27-3) + (8-2) = 30. Variance = 16/12 * (9 - 30/(8*7)) = 11.2857142857.
// z = (|2-8| - 0.5) / sqrt(11.2857142857) = 1.637197; p = erfc(z / sqrt 2) = 0.10159149986.
TEST(MannWhitney, TiesUseTheCorrectedNormalApproximation) {
  auto r = mann_whitney({1, 2, 2, 3}, {2, 4, 5, 5});
  EXPECT_FALSE(r.exact);
  EXPECT_DOUBLE_EQ(r.u, 2);
  EXPECT_NEAR(r.p, 0.10159149986165274, 1e-9);
}

TEST(MannWhitney, AllEqualOrEmptyIsNoEvidence) {
  auto r = mann_whitney({1, 1, 1}, {1, 1, 1});
  EXPECT_DOUBLE_EQ(r.u, 4.5);
  EXPECT_DOUBLE_EQ(r.p, 1);
  EXPECT_DOUBLE_EQ(mann_whitney({}, {1, 2}).p, 1);
  EXPECT_DOUBLE_EQ(mann_whitney_min_p(0, 4), 1);
}

// The exact distribution sums to one and is symmetric: p of U and of n1*n2 - U agree, for unequal sizes.
TEST(MannWhitney, ExactIsSymmetricForUnequalSizes) {
  auto a = mann_whitney({1, 2, 5, 9}, {3, 4, 6, 7, 8, 10, 11});
  auto b = mann_whitney({3, 4, 6, 7, 8, 10, 11}, {1, 2, 5, 9});
  // x beats y in 0 + 0 + 2 (5 > 3,4) + 5 (9 > 3,4,6,7,8) pairs; P(U <= 7) = 38/330 of C(11,4) orderings.
  EXPECT_DOUBLE_EQ(a.u, 7);
  EXPECT_DOUBLE_EQ(a.u + b.u, 28);
  EXPECT_NEAR(a.p, 2 * 38.0 / 330, 1e-12);
  EXPECT_NEAR(a.p, b.p, 1e-12);
  EXPECT_LE(a.p, 1.0);
}
