// The `sequential` pattern: each writer sweeps its own contiguous slice of the region in order, wrapping.
#include "workloads/pattern_kit.h"

namespace snap {

PatternKind sequential_pattern_kind() {
  return {
      {"sequential", "sequential",
       "each writer sweeps its own contiguous slice (pages / writers) in order, wrapping"},
      0,
      [](const std::vector<double>&) {},
      [](const std::vector<double>&, const PatternContext& ctx) {
        const uint64_t w = uint64_t(ctx.writer), n = uint64_t(ctx.writers);
        PatternPlan plan;
        plan.kind = PatternPlan::kSequential;
        plan.pages = ctx.pages;
        plan.first = ctx.pages * w / n;
        plan.end = ctx.pages * (w + 1) / n;
        // More writers than pages: slices would be empty, so such a writer keeps to one page.
        if (plan.first == plan.end) {
          plan.first = w % ctx.pages;
          plan.end = plan.first + 1;
        }
        return plan;
      },
      [](const PatternPlan& plan) -> std::unique_ptr<AccessPattern> {
        return std::make_unique<PlannedPattern<PatternPlan::kSequential>>(plan);
      },
  };
}

}  // namespace snap
