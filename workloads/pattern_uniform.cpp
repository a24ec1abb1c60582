// The `uniform` access pattern: every page of the region is equally likely on every write.
#include "workloads/pattern_kit.h"

namespace snap {

namespace {

class UniformPattern final : public AccessPattern {
 public:
  UniformPattern(uint64_t pages, uint64_t stream_seed) : pages_(pages), rng_(stream_seed) {}
  uint64_t next() override { return rng_.below(pages_); }

 private:
  uint64_t pages_;
  Xoshiro256 rng_;
};

}  // namespace

PatternKind uniform_pattern_kind() {
  return {
      {"uniform", "uniform", "every page equally likely"},
      0,
      [](const std::vector<double>&) {},
      [](const std::vector<double>&, const PatternContext& ctx) -> std::unique_ptr<AccessPattern> {
        return std::make_unique<UniformPattern>(ctx.pages,
                                                writer_stream_seed(ctx.seed, ctx.writer, 0x756e69666f726dull));
      },
  };
}

}  // namespace snap
