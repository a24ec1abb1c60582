// The access patterns' maths, freestanding (no libc, no allocation), shared by the host writers and
// the KVM guest program so both draw the same page sequence from the same plan.
#pragma once
#include <stdint.h>

namespace snap {

constexpr uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// xoshiro256** (Blackman & Vigna): ~1 ns per draw, 256 bits of state, good enough for page choice.
class Xoshiro256 {
 public:
  Xoshiro256() : Xoshiro256(0) {}
  // The state is filled from a splitmix64 stream, so any seed (even 0) gives a non-zero state.
  explicit Xoshiro256(uint64_t seed) {
    for (auto& word : s_) {
      seed += 0x9e3779b97f4a7c15ull;
      word = splitmix64(seed);
    }
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Integer in [0, n) by multiply-high (Lemire); the bias is below n / 2^64, far under noise.
  uint64_t below(uint64_t n) { return uint64_t((unsigned __int128)next() * n >> 64); }
  // Double in [0, 1) with 53 random bits.
  double unit() { return double(next() >> 11) * 0x1.0p-53; }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

// The stream of writer `writer` under `seed`; `salt` keeps two patterns' streams apart.
constexpr uint64_t writer_stream_seed(uint64_t seed, int writer, uint64_t salt) {
  return splitmix64(splitmix64(seed ^ salt) + uint64_t(writer) * 0xd1b54a32d192ed03ull);
}

// A keyed bijection of [0, n): scatters ranks (zipf) or the hot set (hotset) over the region so that
// the popular pages are spread out, not a contiguous block. Built from invertible steps on b-bit
// words (xor key, multiply by odd, xorshift) with cycle-walking for n < 2^b (< 2 steps on average).
class PagePermutation {
 public:
  PagePermutation() : PagePermutation(1, 0) {}
  PagePermutation(uint64_t n, uint64_t key) : n_(n) {
    int bits = 1;
    while (bits < 64 && (uint64_t(1) << bits) < n) ++bits;
    mask_ = bits == 64 ? ~uint64_t(0) : (uint64_t(1) << bits) - 1;
    shift_ = (bits + 1) / 2;
    for (int r = 0; r < 3; ++r) {
      key = splitmix64(key);
      keys_[r] = key;
      mults_[r] = splitmix64(key ^ 0x5851f42d4c957f2dull) | 1;  // odd: invertible modulo 2^bits
    }
  }
  uint64_t operator()(uint64_t i) const {
    uint64_t x = i;
    do x = scramble(x);
    while (x >= n_);
    return x;
  }

 private:
  uint64_t scramble(uint64_t x) const {
    for (int r = 0; r < 3; ++r) {
      x = (x ^ keys_[r]) & mask_;
      x = (x * mults_[r]) & mask_;
      x ^= x >> shift_;
    }
    return x;
  }
  uint64_t n_, mask_;
  int shift_;
  uint64_t keys_[3], mults_[3];
};

// Zipf ranks in [1, n] with P(k) proportional to k^-theta, theta > 0, by rejection-inversion
// (Hörmann & Derflinger 1996): O(1) set-up and an expected < 1.1 iterations per draw. `Math`
// supplies exp, log, log1p and expm1 (the C library on the host, x87 instructions in the guest).
template <class Math>
class ZipfRankSampler {
 public:
  ZipfRankSampler() = default;
  ZipfRankSampler(uint64_t n, double theta) : n_(n), theta_(theta) {
    h_integral_x1_ = h_integral(1.5) - 1.0;
    h_integral_n_ = h_integral(double(n) + 0.5);
    s_ = 2.0 - h_integral_inverse(h_integral(2.5) - h(2.0));
  }
  // Rejection-inversion: invert the integral H of the continuous hat x^-theta, round to the nearest
  // rank k and accept when u falls in the part of k's cell whose length is exactly h(k). Rank 1's
  // cell is [H(1.5) - 1, H(1.5)], so it is always accepted. s_ is the width below k + 0.5 where
  // acceptance is certain (it holds for k = 2 by construction and widens for larger k).
  uint64_t draw(Xoshiro256& rng) const {
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

 private:
  static double abs(double x) { return x < 0 ? -x : x; }
  // log1p(x) / x and expm1(x) / x, continuous through x = 0 (where theta = 1 makes H a logarithm).
  static double log1p_over_x(double x) { return abs(x) > 1e-8 ? Math::log1p(x) / x : 1.0 - x * (0.5 - x / 3.0); }
  static double expm1_over_x(double x) { return abs(x) > 1e-8 ? Math::expm1(x) / x : 1.0 + x * (0.5 + x / 6.0); }
  double h(double x) const { return Math::exp(-theta_ * Math::log(x)); }  // x^-theta
  double h_integral(double x) const {  // H(x) = ∫ t^-theta dt, normalised so H(1) = 0
    const double log_x = Math::log(x);
    return expm1_over_x((1.0 - theta_) * log_x) * log_x;
  }
  double h_integral_inverse(double y) const { return Math::exp(log1p_over_x((1.0 - theta_) * y) * y); }

  uint64_t n_ = 1;
  double theta_ = 1;
  double h_integral_x1_ = 0, h_integral_n_ = 0, s_ = 0;
};

// Everything a writer's page sequence depends on, as plain numbers: built on the host by the
// pattern's registry entry (patterns.cpp, one per pattern file), carried to the KVM guest in its
// control block, and turned into the same draw on both sides by PatternDraw.
struct PatternPlan {
  enum Kind : uint32_t { kUniform = 0, kHotset = 1, kZipf = 2, kSequential = 3 };
  uint32_t kind = kUniform;
  uint32_t reserved = 0;
  uint64_t pages = 1;          // region pages
  uint64_t stream_seed = 0;    // this writer's random stream
  uint64_t permutation_key = 0;  // hotset / zipf: key of the page permutation (shared by writers)
  uint64_t hot = 0;            // hotset: hot slots
  uint64_t hot_threshold = 0;  // hotset: a draw below this goes to the hot set (write share × 2^64)
  double theta = 0;            // zipf
  uint64_t first = 0, end = 0;  // sequential: this writer's slice [first, end)
};

// The page sequence of one plan, for one pattern kind fixed at compile time (no per-draw branch on
// the kind). The host's AccessPattern classes wrap it; the guest picks the kind once and runs its
// write loop on the matching instance.
template <class Math, uint32_t Kind>
class PatternDraw {
 public:
  explicit PatternDraw(const PatternPlan& plan)
      : plan_(plan), rng_(plan.stream_seed), slots_(plan.pages, plan.permutation_key), next_seq_(plan.first) {
    if constexpr (Kind == PatternPlan::kZipf) zipf_ = ZipfRankSampler<Math>(plan.pages, plan.theta);
  }
  uint64_t next() {
    if constexpr (Kind == PatternPlan::kHotset) {
      const bool hot = rng_.next() < plan_.hot_threshold || plan_.hot == plan_.pages;
      const uint64_t slot = hot ? rng_.below(plan_.hot) : plan_.hot + rng_.below(plan_.pages - plan_.hot);
      return slots_(slot);
    } else if constexpr (Kind == PatternPlan::kZipf) {
      return slots_(zipf_.draw(rng_) - 1);
    } else if constexpr (Kind == PatternPlan::kSequential) {
      const uint64_t page = next_seq_;
      next_seq_ = next_seq_ + 1 == plan_.end ? plan_.first : next_seq_ + 1;
      return page;
    } else {
      return rng_.below(plan_.pages);
    }
  }

 private:
  PatternPlan plan_;
  Xoshiro256 rng_;
  PagePermutation slots_;
  ZipfRankSampler<Math> zipf_;
  uint64_t next_seq_ = 0;
};

}  // namespace snap
