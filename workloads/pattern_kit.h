// Shared pieces of the access patterns on the host: the registry entry and the adapter over the shared maths.
#pragma once
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "workloads/pattern_math.h"
#include "workloads/workload.h"

namespace snap {

// The host's maths for the patterns: the C library.
struct StdMath {
  static double exp(double x) { return std::exp(x); }
  static double log(double x) { return std::log(x); }
  static double log1p(double x) { return std::log1p(x); }
  static double expm1(double x) { return std::expm1(x); }
};
using HostZipfRankSampler = ZipfRankSampler<StdMath>;

// A host AccessPattern over the shared draw of one pattern kind.
template <uint32_t Kind>
class PlannedPattern final : public AccessPattern {
 public:
  explicit PlannedPattern(const PatternPlan& plan) : draw_(plan) {}
  uint64_t next() override { return draw_.next(); }

 private:
  PatternDraw<StdMath, Kind> draw_;
};

// What a pattern factory receives.
struct PatternContext {
  uint64_t pages;
  uint64_t seed;
  int writer, writers;
};

// One registry entry: the public info, the number of numeric arguments after the name, a range
// check (throws UsageError starting with "--pattern:"), the plan (every number the page sequence
// depends on: the host writers and the KVM guest both draw from it) and the host factory.
struct PatternKind {
  PatternInfo info;
  size_t arity;
  void (*check)(const std::vector<double>& args);
  PatternPlan (*plan)(const std::vector<double>& args, const PatternContext& ctx);
  std::unique_ptr<AccessPattern> (*make)(const PatternPlan& plan);
};

// The plan of writer `writer` of `writers` for a --pattern spec (throws UsageError if bad).
PatternPlan plan_pattern(const std::string& spec, uint64_t pages, uint64_t seed, int writer, int writers);

// Defined one per pattern file; listed in patterns.cpp's registry.
PatternKind uniform_pattern_kind();
PatternKind hotset_pattern_kind();
PatternKind zipf_pattern_kind();
PatternKind sequential_pattern_kind();

// "--pattern: NAME ARG must be in (0, 1], got V" when v is outside (0, hi].
void check_pattern_range(const char* pattern, const char* arg, double v, double hi);

}  // namespace snap
