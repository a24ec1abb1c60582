// `none`: takes no snapshot; the snapshot phase just lasts a set time, so the writers' throughput and
// latency are measured with the harness alone (its overhead, and the baseline the others disturb).
#include <chrono>
#include <thread>

#include "strategies/strategy.h"

namespace snap {

namespace {

class NoneStrategy final : public Strategy {
 public:
  std::string name() const override { return "none"; }
  std::string help() const override {
    return "no snapshot: the writers run alone for `duration_ms` (baseline throughput and latency)";
  }
  Support probe() const override { return Support::yes(); }
  std::vector<ParamSpec> params() const override {
    return {{"duration_ms", ParamSpec::Type::kInt, "1000", 0, 3600000,
             "how long the measured (snapshot) phase lasts"}};
  }
  ConsistencyPoint consistency() const override { return ConsistencyPoint::kStart; }
  bool produces_image() const override { return false; }
  void snapshot(SnapshotContext& ctx) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(ctx.params.get_int("duration_ms")));
    ctx.metrics.passes = 0;
  }
};

}  // namespace

std::unique_ptr<Strategy> make_none_strategy() { return std::make_unique<NoneStrategy>(); }

}  // namespace snap
