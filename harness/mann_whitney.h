// The Mann-Whitney U (Wilcoxon rank-sum) test of two independent samples: compare's decision over
// the repetitions of a case, as Google Benchmark's tools/compare.py makes it (two-sided).
#pragma once
#include <cstddef>
#include <vector>

namespace snap {

struct MannWhitney {
  double u = 0;          // U of the first sample: pairs (x, y) with x > y, ties counting one half
  double p = 1;          // two-sided p-value: how likely a difference at least this large is by chance
  bool exact = false;    // p from the exact distribution (no ties, small samples), else normal approximation
};

// Exact p when there are no ties and both samples have at most kMannWhitneyExactMax values; otherwise
// the normal approximation with the tie correction and a continuity correction of 1/2. Empty samples
// give p = 1.
constexpr size_t kMannWhitneyExactMax = 50;
MannWhitney mann_whitney(const std::vector<double>& x, const std::vector<double>& y);

// The smallest two-sided p-value samples of these sizes can reach (all of one below all of the other,
// no ties): a test at a significance level at or below it can never reject, whatever the data.
double mann_whitney_min_p(size_t n1, size_t n2);

}  // namespace snap
