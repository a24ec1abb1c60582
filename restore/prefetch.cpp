// prefetch: REAP's record-and-prefetch (ASPLOS 2022). A first restore (uffd-lazy) records the pages
// the workload touches in its first window; the timed restore loads that set first, in large
// batches, before the workload resumes, and serves the rest lazily through the fault handler.
#include <algorithm>
#include <memory>

#include "restore/restore.h"
#include "restore/uffd_pager.h"

namespace snap {

ParamSpec uffd_fail_after_param();

namespace {

class PrefetchRestore final : public Restorer {
 public:
  using Restorer::Restorer;
  Support probe() const override { return uffd_missing_support(); }
  void start(RestoreContext& ctx) override {
    pager_ = std::make_unique<UffdPager>(ctx, uint64_t(ctx.params.get_int("fail_after")), ctx.record);
    ctx.metrics.extra_bytes = pager_->bitmap_bytes() + ctx.pages * sizeof(uint64_t);
    if (!ctx.working_set) return;  // the recording restore: lazy only
    // The set sorted, so neighbouring pages go in one read and one UFFDIO_COPY per run.
    std::vector<uint64_t> set(*ctx.working_set);
    std::sort(set.begin(), set.end());
    set.erase(std::unique(set.begin(), set.end()), set.end());
    ctx.metrics.extra_bytes += set.capacity() * sizeof(uint64_t);
    const uint64_t batch = uint64_t(ctx.params.get_int("batch_pages"));
    for (size_t i = 0; i < set.size();) {
      size_t j = i + 1;
      while (j < set.size() && set[j] == set[j - 1] + 1 && j - i < batch) ++j;
      if (!pager_->copy_range(set[i], set[j - 1] - set[i] + 1, batch)) break;
      i = j;
    }
    ctx.metrics.note("prefetched_pages", std::to_string(set.size()));
  }
  std::string failure() const override { return pager_ ? pager_->failure() : ""; }
  void complete(RestoreContext& ctx) override {
    if (pager_) pager_->copy_range(0, ctx.pages, 512);
  }
  void stop() override {
    if (pager_) pager_->stop();
  }
  std::vector<uint64_t> recorded() const override { return pager_ ? pager_->recorded() : std::vector<uint64_t>{}; }
  ~PrefetchRestore() override { stop(); }

 private:
  std::unique_ptr<UffdPager> pager_;
};

}  // namespace

const RestoreEntry& prefetch_restore() {
  static const RestoreEntry e{
      .name = "prefetch",
      .help = "REAP record-and-prefetch: a first restore records the pages touched in its first window; the "
              "timed one loads that set first in batches, then serves the rest lazily",
      .params = {ParamSpec("record_s", ParamSpec::Type::kDouble, "0.25", 0.001, 3600,
                           "seconds of the recording restore's window (its faults are the working set)"),
                 ParamSpec("batch_pages", ParamSpec::Type::kInt, "512", 1, 262144,
                           "most pages per prefetch copy (one read, one UFFDIO_COPY)"),
                 uffd_fail_after_param()},
      .records_working_set = true,
      .factory = make_restorer_of<PrefetchRestore>,
  };
  return e;
}

}  // namespace snap
