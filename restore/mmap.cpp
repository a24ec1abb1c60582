// mmap: maps a flat memory file MAP_PRIVATE over the region and lets pages fault in from the page
// cache (Firecracker's file backend). The flat file is made from the image before the restore, by
// the harness and outside the timed phase.
#include <sys/mman.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <unistd.h>

#include <vector>

#include "core/clock.h"
#include "core/error.h"
#include "core/pagemap.h"
#include "core/scoped.h"
#include "core/units.h"
#include "restore/restore.h"

namespace snap {

namespace {

uint64_t process_faults() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return uint64_t(ru.ru_minflt) + uint64_t(ru.ru_majflt);
}

class MmapRestore final : public Restorer {
 public:
  using Restorer::Restorer;
  Support probe() const override { return Support::yes(); }

  void start(RestoreContext& ctx) override {
    void* p = ::mmap(ctx.base, ctx.pages * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, ctx.flat_fd, 0);
    if (p == MAP_FAILED) throw_errno("mmap of the flat memory file");
    madvise(ctx.base, ctx.pages * kPageSize, MADV_NOHUGEPAGE);
    faults_at_start_ = process_faults();
  }

  void measure(RestoreContext& ctx) override {
    // What the window brought in: the process's page faults (every fault of the process, the
    // workload's being nearly all of them) and the pages now mapped.
    ctx.metrics.faults.store(process_faults() - faults_at_start_);
    std::vector<uint64_t> entries(ctx.pages);
    UniqueFd pm(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
    uint64_t mapped = 0;
    if (pm && read_pagemap(pm.get(), ctx.base, ctx.pages, entries.data()))
      for (uint64_t e : entries) mapped += pagemap_has_memory(e);
    ctx.metrics.bytes_read.store(mapped * kPageSize);
    ctx.metrics.note("bytes_read_from", "pages_mapped");
  }

  void complete(RestoreContext& ctx) override {
    // Every page read once, so the harness's checks and the resident baseline see memory.
    volatile const uint8_t* b = ctx.base;
    uint8_t sink = 0;
    for (uint64_t i = 0; i < ctx.pages; ++i) sink ^= b[i * kPageSize];
    (void)sink;
  }
  void stop() override {}

 private:
  uint64_t faults_at_start_ = 0;
};

}  // namespace

const RestoreEntry& mmap_restore() {
  static const RestoreEntry e{
      .name = "mmap",
      .help = "map a flat memory file MAP_PRIVATE, pages fault in from the page cache (Firecracker's file "
              "backend; the flat file is made first, not timed)",
      .needs_flat_file = true,
      .factory = make_restorer_of<MmapRestore>,
  };
  return e;
}

}  // namespace snap
