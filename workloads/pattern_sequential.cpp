// The `sequential` pattern: each writer sweeps its own contiguous slice of the region in order, wrapping.
#include "workloads/pattern_kit.h"

namespace snap {

namespace {

class SequentialPattern final : public AccessPattern {
 public:
  SequentialPattern(uint64_t first, uint64_t end) : first_(first), end_(end), next_(first) {}
  uint64_t next() override {
    const uint64_t page = next_;
    next_ = next_ + 1 == end_ ? first_ : next_ + 1;
    return page;
  }

 private:
  uint64_t first_, end_, next_;
};

}  // namespace

PatternKind sequential_pattern_kind() {
  return {
      {"sequential", "sequential",
       "each writer sweeps its own contiguous slice (pages / writers) in order, wrapping"},
      0,
      [](const std::vector<double>&) {},
      [](const std::vector<double>&, const PatternContext& ctx) -> std::unique_ptr<AccessPattern> {
        const uint64_t w = uint64_t(ctx.writer), n = uint64_t(ctx.writers);
        uint64_t first = ctx.pages * w / n, end = ctx.pages * (w + 1) / n;
        // More writers than pages: slices would be empty, so such a writer keeps to one page.
        if (first == end) {
          first = w % ctx.pages;
          end = first + 1;
        }
        return std::make_unique<SequentialPattern>(first, end);
      },
  };
}

}  // namespace snap
