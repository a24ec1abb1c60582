// uffd-lazy: the region registered with userfaultfd MISSING; a handler serves each first-touched
// page from the image with UFFDIO_COPY, zero pages with UFFDIO_ZEROPAGE (Firecracker's UFFD backend,
// CRIU lazy-pages). Nothing is read before the workload runs.
#include <memory>

#include "restore/restore.h"
#include "restore/uffd_pager.h"

namespace snap {

namespace {

class UffdLazyRestore final : public Restorer {
 public:
  using Restorer::Restorer;
  Support probe() const override { return uffd_missing_support(); }
  void start(RestoreContext& ctx) override {
    pager_ = std::make_unique<UffdPager>(ctx, uint64_t(ctx.params.get_int("fail_after")), false);
    ctx.metrics.extra_bytes = pager_->bitmap_bytes() + ctx.pages * sizeof(uint64_t) /* index */;
  }
  std::string failure() const override { return pager_ ? pager_->failure() : ""; }
  void complete(RestoreContext& ctx) override {
    if (pager_) pager_->copy_range(0, ctx.pages, 512);
  }
  void stop() override {
    if (pager_) pager_->stop();
  }
  ~UffdLazyRestore() override { stop(); }

 private:
  std::unique_ptr<UffdPager> pager_;
};

}  // namespace

// The test hook of every uffd strategy: a handler that dies after N faults.
ParamSpec uffd_fail_after_param() {
  return ParamSpec("fail_after", ParamSpec::Type::kInt, "0", 0, 1e15,
                   "test hook: the fault handler dies after serving this many faults (0: never)");
}

const RestoreEntry& uffd_lazy_restore() {
  static const RestoreEntry e{
      .name = "uffd-lazy",
      .help = "userfaultfd MISSING: a handler serves each first-touched page from the image (UFFDIO_COPY, "
              "UFFDIO_ZEROPAGE for zero pages; Firecracker's UFFD backend, CRIU lazy-pages)",
      .params = {uffd_fail_after_param()},
      .factory = make_restorer_of<UffdLazyRestore>,
  };
  return e;
}

}  // namespace snap
