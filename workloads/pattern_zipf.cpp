// The `zipf:THETA` pattern: page popularity follows a Zipf law over ranks scattered across the region.
#include "workloads/pattern_kit.h"

namespace snap {

// Ranks come from ZipfRankSampler (pattern_math.h); a permutation keyed by the seed alone maps them
// to pages, so all writers agree on the hot pages.
PatternKind zipf_pattern_kind() {
  return {
      {"zipf", "zipf:THETA",
       "page of popularity rank k is written with probability ~ k^-THETA, THETA in (0, 5] (1 allowed); "
       "ranks are scattered over the region"},
      1,
      [](const std::vector<double>& args) { check_pattern_range("zipf", "THETA", args[0], 5.0); },
      [](const std::vector<double>& args, const PatternContext& ctx) {
        PatternPlan plan;
        plan.kind = PatternPlan::kZipf;
        plan.pages = ctx.pages;
        plan.theta = args[0];
        plan.permutation_key = splitmix64(ctx.seed ^ 0x7a697066ull);
        plan.stream_seed = writer_stream_seed(ctx.seed, ctx.writer, 0x7a697066ull);
        return plan;
      },
      [](const PatternPlan& plan) -> std::unique_ptr<AccessPattern> {
        return std::make_unique<PlannedPattern<PatternPlan::kZipf>>(plan);
      },
  };
}

}  // namespace snap
