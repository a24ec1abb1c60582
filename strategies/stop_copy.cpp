// `stop-copy`: the baseline. Pause the writers, save every page, resume. Downtime = the whole save.
#include "core/scoped.h"
#include "strategies/strategy.h"

namespace snap {

namespace {

class StopCopyStrategy final : public Strategy {
 public:
  using Strategy::Strategy;
  Support probe() const override { return Support::yes(); }

  void snapshot(SnapshotContext& ctx) override {
    Region& region = ctx.region;
    ImageWriter writer(ctx.sink, image_header(region.pages()));
    const size_t chunk = size_t(ctx.params.get_int("chunk_pages"));
    PauseScope paused(ctx.control);  // resumed on every exit path, including a throwing sink
    ctx.control.consistency_point();
    for (size_t i = 0; i < region.pages(); i += chunk)
      writer.save_pages(i, region.page(i), std::min(chunk, region.pages() - i));
    writer.finish();
    ctx.metrics.image = writer.stats();
    ctx.metrics.passes = 1;
    paused.resume();
  }
};

}  // namespace

const StrategyEntry& stop_copy_strategy() {
  static const StrategyEntry entry{
      .name = "stop-copy",
      .help = "pause the writers, save every page, resume (downtime = whole save)",
      .params = {{"chunk_pages", ParamSpec::Type::kInt, "256", 1, 1 << 20, "pages handed to the image writer per call"}},
      .consistency = ConsistencyPoint::kStart,
      .factory = make_strategy_of<StopCopyStrategy>,
  };
  return entry;
}

}  // namespace snap
