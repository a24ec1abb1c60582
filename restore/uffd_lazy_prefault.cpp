// uffd-lazy-prefault: uffd-lazy plus a background thread that copies the rest of the image in large
// ranges while the handler serves faults first (Cloud Hypervisor's on-demand restore with prefault).
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "restore/restore.h"
#include "restore/uffd_pager.h"

namespace snap {

ParamSpec uffd_fail_after_param();

namespace {

class UffdLazyPrefaultRestore final : public Restorer {
 public:
  using Restorer::Restorer;
  Support probe() const override { return uffd_missing_support(); }
  void start(RestoreContext& ctx) override {
    pager_ = std::make_unique<UffdPager>(ctx, uint64_t(ctx.params.get_int("fail_after")), false);
    const uint64_t batch = uint64_t(ctx.params.get_int("batch_pages"));
    ctx.metrics.extra_bytes = pager_->bitmap_bytes() + ctx.pages * sizeof(uint64_t) + batch * 4096;
    // The copier never stops the handler: a fault meanwhile is served by the handler at once.
    background_ = std::thread([this, &ctx, batch] {
      try {
        pager_->copy_range(0, ctx.pages, batch);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mu_);
        background_failure_ = std::string("restore background copier died: ") + e.what();
      }
    });
  }
  std::string failure() const override {
    std::string f = pager_ ? pager_->failure() : "";
    std::lock_guard<std::mutex> lock(mu_);
    return f.empty() ? background_failure_ : f;
  }
  void complete(RestoreContext& ctx) override {
    if (background_.joinable()) background_.join();
    if (pager_) pager_->copy_range(0, ctx.pages, 512);  // after a failure the copier stopped early
  }
  void stop() override {
    if (pager_) pager_->stop();  // makes copy_range return, then the thread is joined
    if (background_.joinable()) background_.join();
  }
  ~UffdLazyPrefaultRestore() override { stop(); }

 private:
  std::unique_ptr<UffdPager> pager_;
  std::thread background_;
  mutable std::mutex mu_;
  std::string background_failure_;
};

}  // namespace

const RestoreEntry& uffd_lazy_prefault_restore() {
  static const RestoreEntry e{
      .name = "uffd-lazy-prefault",
      .help = "uffd-lazy plus a background thread copying the rest in large ranges while faults are served "
              "first (Cloud Hypervisor)",
      .params = {ParamSpec("batch_pages", ParamSpec::Type::kInt, "512", 1, 262144,
                           "pages per background copy (one read, one UFFDIO_COPY)"),
                 uffd_fail_after_param()},
      .factory = make_restorer_of<UffdLazyPrefaultRestore>,
  };
  return e;
}

}  // namespace snap
