// Access patterns: distribution shapes, determinism per seed and writer, and --pattern spec checking.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <set>

#include "core/error.h"
#include "workloads/pattern_kit.h"
#include "workloads/workload.h"

using namespace snap;

namespace {

// One valid example per registered pattern; the registry test fails if a pattern lacks one.
const std::map<std::string, std::string> kExampleSpecs = {
    {"uniform", "uniform"}, {"hotset", "hotset:0.1:0.9"}, {"zipf", "zipf:0.99"}, {"sequential", "sequential"}};

std::vector<uint64_t> draws(const std::string& spec, uint64_t pages, size_t n, uint64_t seed = 7, int writer = 0,
                            int writers = 1) {
  auto pattern = make_pattern(spec, pages, seed, writer, writers);
  std::vector<uint64_t> out(n);
  for (auto& page : out) page = pattern->next();
  return out;
}

std::vector<uint64_t> histogram_of(const std::vector<uint64_t>& pages, uint64_t n_pages) {
  std::vector<uint64_t> counts(n_pages);
  for (uint64_t p : pages) ++counts.at(p);
  return counts;
}

// Indices of the `k` most drawn pages.
std::vector<uint64_t> top_pages(const std::vector<uint64_t>& counts, size_t k) {
  std::vector<uint64_t> idx(counts.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + long(k), idx.end(),
                    [&](uint64_t a, uint64_t b) { return counts[a] > counts[b]; });
  idx.resize(k);
  return idx;
}

}  // namespace

TEST(PatternRegistry, EveryKindHasAnExampleAndStaysInRange) {
  ASSERT_FALSE(pattern_kinds().empty());
  for (const auto& kind : pattern_kinds()) {
    SCOPED_TRACE(kind.name);
    EXPECT_FALSE(kind.syntax.empty());
    EXPECT_FALSE(kind.help.empty());
    ASSERT_TRUE(kExampleSpecs.count(kind.name)) << "add an example spec for " << kind.name;
    const std::string& spec = kExampleSpecs.at(kind.name);
    EXPECT_NO_THROW(check_pattern_spec(spec));
    for (uint64_t pages : {1ull, 2ull, 7ull, 1000ull, 1ull << 21}) {
      for (int writers : {1, 3}) {
        for (int writer = 0; writer < writers; ++writer) {
          for (uint64_t page : draws(spec, pages, 20000, 3, writer, writers)) {
            ASSERT_LT(page, pages) << "pages=" << pages << " writer " << writer << "/" << writers;
          }
        }
      }
    }
  }
  EXPECT_EQ(kExampleSpecs.size(), pattern_kinds().size());
}

TEST(PatternUniform, ChiSquareWithinTolerance) {
  const uint64_t pages = 1000;
  const size_t n = 1000000;
  const auto counts = histogram_of(draws("uniform", pages, n), pages);
  const double expected = double(n) / double(pages);
  double chi2 = 0;
  for (uint64_t c : counts) chi2 += (double(c) - expected) * (double(c) - expected) / expected;
  // 999 degrees of freedom: mean 999, sd ~45. Too good a fit (a sweep) fails as well as a skew.
  EXPECT_GT(chi2, 999 - 6 * 45);
  EXPECT_LT(chi2, 999 + 6 * 45);
}

TEST(PatternHotset, HotPagesGetTheirShareAndAreScattered) {
  struct Case {
    double hot_fraction, write_share;
  } cases[] = {{0.1, 0.9}, {0.2, 0.5}, {0.05, 1.0}, {0.01, 0.99}};
  const uint64_t pages = 10000;
  const size_t n = 1000000;
  for (const auto& c : cases) {
    const std::string spec = "hotset:" + std::to_string(c.hot_fraction) + ":" + std::to_string(c.write_share);
    SCOPED_TRACE(spec);
    const size_t hot = size_t(std::llround(c.hot_fraction * double(pages)));
    const auto counts = histogram_of(draws(spec, pages, n), pages);
    const auto hot_pages = top_pages(counts, hot);
    uint64_t hot_writes = 0;
    for (uint64_t p : hot_pages) hot_writes += counts[p];
    EXPECT_NEAR(double(hot_writes) / double(n), c.write_share, 0.02);
    // Scattered: a contiguous hot set at the start would put all of them below `hot`.
    const size_t in_first = size_t(std::count_if(hot_pages.begin(), hot_pages.end(), [&](uint64_t p) { return p < hot; }));
    EXPECT_LT(double(in_first), 0.3 * double(hot));
    // The hot set is the seed's, shared by every writer.
    const auto other_writer = histogram_of(draws(spec, pages, n, 7, 1, 2), pages);
    const auto other_hot = top_pages(other_writer, hot);
    EXPECT_EQ(std::set<uint64_t>(hot_pages.begin(), hot_pages.end()),
              std::set<uint64_t>(other_hot.begin(), other_hot.end()));
  }
}

TEST(PatternZipf, TopRanksGetTheExpectedShare) {
  const uint64_t n_ranks = 100000;
  const size_t n = 1000000;
  for (double theta : {0.2, 0.5, 0.99, 1.0, 1.01, 1.2, 2.0, 5.0}) {
    SCOPED_TRACE("theta " + std::to_string(theta));
    double total = 0, top = 0;
    for (uint64_t k = 1; k <= n_ranks; ++k) {
      const double w = std::pow(double(k), -theta);
      total += w;
      if (k <= n_ranks / 100) top += w;
    }
    const double p_top = top / total, p_first = 1.0 / total;
    HostZipfRankSampler sampler(n_ranks, theta);
    Xoshiro256 rng(11);
    size_t got_top = 0, got_first = 0;
    for (size_t i = 0; i < n; ++i) {
      const uint64_t k = sampler.draw(rng);
      ASSERT_GE(k, 1u);
      ASSERT_LE(k, n_ranks);
      got_top += k <= n_ranks / 100;
      got_first += k == 1;
    }
    // Binomial tolerance from the theta's expected share: 6 standard deviations (+ rounding slack).
    const auto tolerance = [&](double p) { return 6 * std::sqrt(p * (1 - p) / double(n)) + 1e-4; };
    EXPECT_NEAR(double(got_top) / double(n), p_top, tolerance(p_top));
    EXPECT_NEAR(double(got_first) / double(n), p_first, tolerance(p_first));
  }
}

TEST(PatternZipf, PagesAreScatteredAndSetUpIsFast) {
  const uint64_t pages = 2ull << 20;  // 8 GiB worth of pages
  const auto t0 = std::chrono::steady_clock::now();
  auto pattern = make_pattern("zipf:0.99", pages, 5, 0, 1);
  const auto setup = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(setup, std::chrono::milliseconds(50));
  std::map<uint64_t, uint64_t> counts;
  for (int i = 0; i < 200000; ++i) ++counts[pattern->next()];
  std::vector<std::pair<uint64_t, uint64_t>> by_count(counts.begin(), counts.end());
  std::sort(by_count.begin(), by_count.end(), [](auto& a, auto& b) { return a.second > b.second; });
  // The 20 hottest pages (ranks 1..20) lie all over the region, not in one block.
  uint64_t lo = pages, hi = 0;
  for (size_t i = 0; i < 20; ++i) {
    lo = std::min(lo, by_count[i].first);
    hi = std::max(hi, by_count[i].first);
  }
  EXPECT_GT(hi - lo, pages / 4);
}

TEST(PatternSequential, EachWriterSweepsItsOwnSliceInOrder) {
  const uint64_t pages = 1000;
  const int writers = 3;
  std::vector<int> owner(pages, -1);
  for (int w = 0; w < writers; ++w) {
    const uint64_t first = pages * uint64_t(w) / writers, end = pages * uint64_t(w + 1) / writers;
    const auto seq = draws("sequential", pages, 2 * (end - first) + 5, 9, w, writers);
    for (size_t i = 0; i < seq.size(); ++i) ASSERT_EQ(seq[i], first + i % (end - first)) << "writer " << w << " draw " << i;
    for (uint64_t p : seq) {
      ASSERT_TRUE(owner[p] == -1 || owner[p] == w) << "page " << p << " in two slices";
      owner[p] = w;
    }
  }
  EXPECT_EQ(std::count(owner.begin(), owner.end(), -1), 0) << "slices do not cover the region";
}

TEST(PatternDeterminism, SameSeedSameSequenceOtherwiseDifferent) {
  for (const auto& [name, spec] : kExampleSpecs) {
    SCOPED_TRACE(spec);
    const uint64_t pages = 100000;
    const auto a = draws(spec, pages, 1000, 42, 0, 2);
    EXPECT_EQ(a, draws(spec, pages, 1000, 42, 0, 2));
    EXPECT_NE(a, draws(spec, pages, 1000, 42, 1, 2)) << "writers share a sequence";
    if (name != "sequential") {
      EXPECT_NE(a, draws(spec, pages, 1000, 43, 0, 2)) << "seed ignored";
    }
  }
}

TEST(PatternSpec, BadSpecsThrowUsageErrorNamingTheFlag) {
  for (const char* bad : {"", ":", "nope", "Uniform", "uniform:1", "hotset", "hotset:0.1", "hotset:0.1:0.9:3",
                          "hotset:0:0.5", "hotset:1.5:0.5", "hotset:-0.1:0.5", "hotset:0.1:0", "hotset:0.1:1.01",
                          "hotset:x:0.5", "hotset:0.1:", "hotset:0.1:0.5x", "zipf", "zipf:0", "zipf:-1", "zipf:5.01",
                          "zipf:nan", "zipf:inf", "zipf:1e400", "zipf:1:2", "sequential:2"}) {
    SCOPED_TRACE(bad);
    try {
      check_pattern_spec(bad);
      ADD_FAILURE() << "accepted";
    } catch (const UsageError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("--pattern:", 0), 0u) << e.what();
    }
    EXPECT_THROW(make_pattern(bad, 100, 1, 0, 1), UsageError);
  }
  for (const char* good : {"uniform", "hotset:1:1", "hotset:0.001:0.5", "zipf:5", "zipf:1", "zipf:0.01", "sequential"})
    EXPECT_NO_THROW(check_pattern_spec(good)) << good;
}
