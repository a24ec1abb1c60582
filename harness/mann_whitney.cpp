// Mann-Whitney U: midranks, the exact null distribution by counting, the tie-corrected normal tail.
#include "harness/mann_whitney.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace snap {

namespace {

// How many orderings of n1 x-values and n2 y-values (all distinct) give each U = 0..n1*n2, as
// fractions of all C(n1+n2, n1) orderings. Built by adding one value at a time: the largest value of
// the pooled sample is either an x (it beats all n2 y-values: U grows by n2) or a y (U unchanged).
std::vector<double> exact_u_distribution(size_t n1, size_t n2) {
  // f[i][j] is the distribution for i x-values and j y-values, kept one row (i) at a time.
  const size_t umax = n1 * n2;
  std::vector<std::vector<double>> prev(n2 + 1, std::vector<double>(umax + 1, 0.0));
  for (size_t j = 0; j <= n2; ++j) prev[j][0] = 1;  // no x-values: U = 0 in the one ordering
  for (size_t i = 1; i <= n1; ++i) {
    std::vector<std::vector<double>> cur(n2 + 1, std::vector<double>(umax + 1, 0.0));
    cur[0][0] = 1;  // no y-values: U = 0
    for (size_t j = 1; j <= n2; ++j) {
      // Probability the largest is an x: i/(i+j); then U = U(i-1, j) + j. Else U = U(i, j-1).
      const double px = double(i) / double(i + j), py = double(j) / double(i + j);
      for (size_t u = 0; u <= i * j; ++u) {
        double v = py * cur[j - 1][u];
        if (u >= j) v += px * prev[j][u - j];
        cur[j][u] = v;
      }
    }
    prev = std::move(cur);
  }
  return prev[n2];
}

double normal_two_sided(double z) { return std::erfc(std::fabs(z) / std::sqrt(2.0)); }

}  // namespace

MannWhitney mann_whitney(const std::vector<double>& x, const std::vector<double>& y) {
  MannWhitney r;
  const size_t n1 = x.size(), n2 = y.size(), n = n1 + n2;
  if (n1 == 0 || n2 == 0) return r;

  // Midranks of the pooled sample; the tie term sum(t^3 - t) over groups of equal values.
  std::vector<std::pair<double, int>> pooled;
  for (double v : x) pooled.emplace_back(v, 0);
  for (double v : y) pooled.emplace_back(v, 1);
  std::sort(pooled.begin(), pooled.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  double rank_sum_x = 0, ties = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && pooled[j].first == pooled[i].first) ++j;
    const double t = double(j - i), midrank = (double(i + 1) + double(j)) / 2;
    for (size_t k = i; k < j; ++k)
      if (pooled[k].second == 0) rank_sum_x += midrank;
    ties += t * t * t - t;
    i = j;
  }
  r.u = rank_sum_x - double(n1) * double(n1 + 1) / 2;
  const double mean = double(n1) * double(n2) / 2;

  if (ties == 0 && n1 <= kMannWhitneyExactMax && n2 <= kMannWhitneyExactMax) {
    const auto dist = exact_u_distribution(n1, n2);
    const size_t u = size_t(std::llround(r.u));
    double lower = 0, upper = 0;  // P(U <= u), P(U >= u)
    for (size_t k = 0; k < dist.size(); ++k) {
      if (k <= u) lower += dist[k];
      if (k >= u) upper += dist[k];
    }
    r.p = std::min(1.0, 2 * std::min(lower, upper));
    r.exact = true;
    return r;
  }
  const double nn = double(n);
  const double var = double(n1) * double(n2) / 12 * ((nn + 1) - ties / (nn * (nn - 1)));
  if (var <= 0) return r;  // every value equal: no evidence of a difference
  const double d = std::fabs(r.u - mean);
  const double z = std::max(0.0, d - 0.5) / std::sqrt(var);
  r.p = std::min(1.0, normal_two_sided(z));
  return r;
}

double mann_whitney_min_p(size_t n1, size_t n2) {
  if (n1 == 0 || n2 == 0) return 1;
  std::vector<double> x(n1), y(n2);
  for (size_t i = 0; i < n1; ++i) x[i] = double(i);
  for (size_t j = 0; j < n2; ++j) y[j] = double(n1 + j);
  return mann_whitney(x, y).p;
}

}  // namespace snap
