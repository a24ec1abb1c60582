// Shared pieces of the access patterns: the fast PRNG, a keyed page permutation, and the registry entry.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "workloads/workload.h"

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
inline uint64_t writer_stream_seed(uint64_t seed, int writer, uint64_t salt) {
  return splitmix64(splitmix64(seed ^ salt) + uint64_t(writer) * 0xd1b54a32d192ed03ull);
}

// A keyed bijection of [0, n): scatters ranks (zipf) or the hot set (hotset) over the region so that
// the popular pages are spread out, not a contiguous block. Built from invertible steps on b-bit
// words (xor key, multiply by odd, xorshift) with cycle-walking for n < 2^b (< 2 steps on average).
class PagePermutation {
 public:
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
// (Hörmann & Derflinger 1996): O(1) set-up and an expected < 1.1 iterations per draw.
class ZipfRankSampler {
 public:
  ZipfRankSampler(uint64_t n, double theta);
  uint64_t draw(Xoshiro256& rng) const;

 private:
  double h_integral(double x) const;          // H(x) = ∫ t^-theta dt, normalised so H(1) = 0
  double h_integral_inverse(double y) const;  // H^-1
  double h(double x) const;                   // x^-theta
  uint64_t n_;
  double theta_;
  double h_integral_x1_, h_integral_n_, s_;
};

// What a pattern factory receives.
struct PatternContext {
  uint64_t pages;
  uint64_t seed;
  int writer, writers;
};

// One registry entry: the public info, the number of numeric arguments after the name, a range
// check (throws UsageError starting with "--pattern:") and the factory.
struct PatternKind {
  PatternInfo info;
  size_t arity;
  void (*check)(const std::vector<double>& args);
  std::unique_ptr<AccessPattern> (*make)(const std::vector<double>& args, const PatternContext& ctx);
};

// Defined one per pattern file; listed in patterns.cpp's registry.
PatternKind uniform_pattern_kind();
PatternKind hotset_pattern_kind();
PatternKind zipf_pattern_kind();
PatternKind sequential_pattern_kind();

// "--pattern: NAME ARG must be in (0, 1], got V" when v is outside (0, hi].
void check_pattern_range(const char* pattern, const char* arg, double v, double hi);

}  // namespace snap
