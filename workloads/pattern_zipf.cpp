// The `zipf:THETA` pattern: page popularity follows a Zipf law over ranks scattered across the region.
#include <cmath>

#include "workloads/pattern_kit.h"

namespace snap {

namespace {

// log1p(x) / x and expm1(x) / x, continuous through x = 0 (where theta = 1 makes H a logarithm).
double log1p_over_x(double x) {
  return std::fabs(x) > 1e-8 ? std::log1p(x) / x : 1.0 - x * (0.5 - x / 3.0);
}
double expm1_over_x(double x) {
  return std::fabs(x) > 1e-8 ? std::expm1(x) / x : 1.0 + x * (0.5 + x / 6.0);
}

}  // namespace

// Rejection-inversion: invert the integral H of the continuous hat x^-theta, round to the nearest
// rank k and accept when u falls in the part of k's cell whose length is exactly h(k). Rank 1's cell
// is [H(1.5) - 1, H(1.5)], so it is always accepted. s_ is the width below k + 0.5 where acceptance
// is certain (it holds for k = 2 by construction and widens for larger k), skipping an exp/log pair.
ZipfRankSampler::ZipfRankSampler(uint64_t n, double theta) : n_(n), theta_(theta) {
  h_integral_x1_ = h_integral(1.5) - 1.0;
  h_integral_n_ = h_integral(double(n) + 0.5);
  s_ = 2.0 - h_integral_inverse(h_integral(2.5) - h(2.0));
}

double ZipfRankSampler::h(double x) const { return std::exp(-theta_ * std::log(x)); }

double ZipfRankSampler::h_integral(double x) const {
  const double log_x = std::log(x);
  return expm1_over_x((1.0 - theta_) * log_x) * log_x;
}

double ZipfRankSampler::h_integral_inverse(double y) const {
  return std::exp(log1p_over_x((1.0 - theta_) * y) * y);
}

uint64_t ZipfRankSampler::draw(Xoshiro256& rng) const {
  for (;;) {
    const double u = h_integral_n_ + rng.unit() * (h_integral_x1_ - h_integral_n_);
    const double x = h_integral_inverse(u);
    uint64_t k = uint64_t(x + 0.5);
    if (k < 1) k = 1;
    if (k > n_) k = n_;
    const double kd = double(k);
    if (kd - x <= s_ || u >= h_integral(kd + 0.5) - h(kd)) return k;
  }
}

namespace {

class ZipfPattern final : public AccessPattern {
 public:
  ZipfPattern(uint64_t pages, double theta, uint64_t seed, uint64_t stream_seed)
      : ranks_(pages, theta), rank_to_page_(pages, splitmix64(seed ^ 0x7a697066ull)), rng_(stream_seed) {}
  uint64_t next() override { return rank_to_page_(ranks_.draw(rng_) - 1); }

 private:
  ZipfRankSampler ranks_;
  PagePermutation rank_to_page_;  // keyed by the seed alone: all writers agree on the hot pages
  Xoshiro256 rng_;
};

}  // namespace

PatternKind zipf_pattern_kind() {
  return {
      {"zipf", "zipf:THETA",
       "page of popularity rank k is written with probability ~ k^-THETA, THETA in (0, 5] (1 allowed); "
       "ranks are scattered over the region"},
      1,
      [](const std::vector<double>& args) { check_pattern_range("zipf", "THETA", args[0], 5.0); },
      [](const std::vector<double>& args, const PatternContext& ctx) -> std::unique_ptr<AccessPattern> {
        return std::make_unique<ZipfPattern>(ctx.pages, args[0], ctx.seed,
                                             writer_stream_seed(ctx.seed, ctx.writer, 0x7a697066ull));
      },
  };
}

}  // namespace snap
