// The `hotset:HOT_FRACTION:WRITE_SHARE` pattern: a fixed, scattered hot set takes a share of the writes.
#include <algorithm>
#include <cmath>

#include "workloads/pattern_kit.h"

namespace snap {

namespace {

// Logical slots [0, hot) are the hot set and [hot, pages) the cold rest; a permutation keyed by the
// seed alone (not the writer) maps slots to pages, so every writer shares one hot set and the hot
// pages are spread over the region rather than being its first pages.
class HotsetPattern final : public AccessPattern {
 public:
  HotsetPattern(uint64_t pages, double hot_fraction, double write_share, uint64_t seed, uint64_t stream_seed)
      : pages_(pages),
        hot_(std::clamp<uint64_t>(uint64_t(std::llround(hot_fraction * double(pages))), 1, pages)),
        // Compare raw 64-bit draws against a threshold: no float work on the hot path.
        hot_threshold_(write_share >= 1.0 ? ~uint64_t(0) : uint64_t(std::ldexp(write_share, 64))),
        slots_(pages, splitmix64(seed ^ 0x686f74736574ull)),
        rng_(stream_seed) {}

  uint64_t next() override {
    const bool hot = rng_.next() < hot_threshold_ || hot_ == pages_;
    const uint64_t slot = hot ? rng_.below(hot_) : hot_ + rng_.below(pages_ - hot_);
    return slots_(slot);
  }

 private:
  uint64_t pages_, hot_, hot_threshold_;
  PagePermutation slots_;
  Xoshiro256 rng_;
};

}  // namespace

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
      [](const std::vector<double>& args, const PatternContext& ctx) -> std::unique_ptr<AccessPattern> {
        return std::make_unique<HotsetPattern>(ctx.pages, args[0], args[1], ctx.seed,
                                               writer_stream_seed(ctx.seed, ctx.writer, 0x686f74736574ull));
      },
  };
}

}  // namespace snap
