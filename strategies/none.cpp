// `none`: takes no snapshot; the snapshot phase just lasts a set time, so the writers' throughput and
// latency are measured with the harness alone (its overhead, and the baseline the others disturb).
#include <chrono>
#include <thread>

#include "strategies/strategy.h"

namespace snap {

namespace {

class NoneStrategy final : public Strategy {
 public:
  using Strategy::Strategy;
  Support probe() const override { return Support::yes(); }
  void snapshot(SnapshotContext& ctx) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(ctx.params.get_int("duration_ms")));
    ctx.metrics.passes = 0;
  }
};

}  // namespace

const StrategyEntry& none_strategy() {
  static const StrategyEntry entry{
      .name = "none",
      .help = "no snapshot: the writers run alone for `duration_ms` (baseline throughput and latency)",
      .params = {{"duration_ms", ParamSpec::Type::kInt, "1000", 0, 3600000, "how long the measured (snapshot) phase lasts"}},
      .consistency = ConsistencyPoint::kStart,
      .produces_image = false,
      .factory = make_strategy_of<NoneStrategy>,
  };
  return entry;
}

}  // namespace snap
