// The `hotset:HOT_FRACTION:WRITE_SHARE` pattern: a fixed, scattered hot set takes a share of the writes.
#include <algorithm>
#include <cmath>

#include "workloads/pattern_kit.h"

namespace snap {

// Logical slots [0, hot) are the hot set and [hot, pages) the cold rest; a permutation keyed by the
// seed alone (not the writer) maps slots to pages, so every writer shares one hot set and the hot
// pages are spread over the region rather than being its first pages. A raw 64-bit draw is compared
// against a threshold: no float work on the hot path.
PatternKind hotset_pattern_kind() {
  return {
      {"hotset", "hotset:HOT_FRACTION:WRITE_SHARE",
       "WRITE_SHARE of the writes go to a fixed hot HOT_FRACTION of the pages (scattered, chosen from "
       "the seed); both in (0, 1], e.g. hotset:0.1:0.9"},
      2,
      [](const std::vector<double>& args) {
        check_pattern_range("hotset", "HOT_FRACTION", args[0], 1.0);
        check_pattern_range("hotset", "WRITE_SHARE", args[1], 1.0);
      },
      [](const std::vector<double>& args, const PatternContext& ctx) {
        PatternPlan plan;
        plan.kind = PatternPlan::kHotset;
        plan.pages = ctx.pages;
        plan.hot = std::clamp<uint64_t>(uint64_t(std::llround(args[0] * double(ctx.pages))), 1, ctx.pages);
        plan.hot_threshold = args[1] >= 1.0 ? ~uint64_t(0) : uint64_t(std::ldexp(args[1], 64));
        plan.permutation_key = splitmix64(ctx.seed ^ 0x686f74736574ull);
        plan.stream_seed = writer_stream_seed(ctx.seed, ctx.writer, 0x686f74736574ull);
        return plan;
      },
      [](const PatternPlan& plan) -> std::unique_ptr<AccessPattern> {
        return std::make_unique<PlannedPattern<PatternPlan::kHotset>>(plan);
      },
  };
}

}  // namespace snap
