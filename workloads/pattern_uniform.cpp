// The `uniform` access pattern: every page of the region is equally likely on every write.
#include "workloads/pattern_kit.h"

namespace snap {

PatternKind uniform_pattern_kind() {
  return {
      {"uniform", "uniform", "every page equally likely"},
      0,
      [](const std::vector<double>&) {},
      [](const std::vector<double>&, const PatternContext& ctx) {
        PatternPlan plan;
        plan.kind = PatternPlan::kUniform;
        plan.pages = ctx.pages;
        plan.stream_seed = writer_stream_seed(ctx.seed, ctx.writer, 0x756e69666f726dull);
        return plan;
      },
      [](const PatternPlan& plan) -> std::unique_ptr<AccessPattern> {
        return std::make_unique<PlannedPattern<PatternPlan::kUniform>>(plan);
      },
  };
}

}  // namespace snap
