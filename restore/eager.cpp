// eager: reads the whole image into the region before the workload starts (QEMU's loadvm): the
// baseline every lazy strategy is measured against.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/clock.h"
#include "core/error.h"
#include "core/image_format.h"
#include "core/units.h"
#include "restore/restore.h"

namespace snap {

namespace {

class EagerRestore final : public Restorer {
 public:
  using Restorer::Restorer;
  Support probe() const override { return Support::yes(); }

  void start(RestoreContext& ctx) override {
    // The data records in file order (a stop-copy image is already in page order): the image is
    // read front to back in large chunks and each page's last record is copied to its place.
    std::vector<std::pair<uint64_t, uint64_t>> order;  // (file offset, page)
    order.reserve(ctx.index.data_pages);
    for (uint64_t p = 0; p < ctx.pages; ++p)
      if (ctx.index.has_data(p)) order.emplace_back(ctx.index.where[p], p);
    std::sort(order.begin(), order.end());
    const uint64_t chunk = uint64_t(ctx.params.get_int("chunk_mib")) << 20;
    std::vector<uint8_t> buf(chunk);
    ctx.metrics.extra_bytes = buf.size() + order.capacity() * sizeof(order[0]);
    uint64_t buf_start = 0, buf_len = 0;
    for (const auto& [off, page] : order) {
      if (off < buf_start || off + kPageSize > buf_start + buf_len) {
        buf_start = off;
        buf_len = 0;
        while (buf_len < kPageSize) {  // a full chunk when the file has it, at least the page
          ssize_t r = ::pread(ctx.image_fd, buf.data() + buf_len, chunk - buf_len, off_t(buf_start + buf_len));
          if (r < 0 && errno == EINTR) continue;
          if (r < 0) throw_errno("reading the image");
          if (r == 0) throw std::runtime_error("the image ended at byte " + std::to_string(buf_start + buf_len));
          buf_len += uint64_t(r);
        }
        ctx.metrics.bytes_read.fetch_add(buf_len, std::memory_order_relaxed);
      }
      std::memcpy(ctx.base + page * kPageSize, buf.data() + (off - buf_start), kPageSize);
    }
    // Zero and absent pages stay the fresh region's zeros: not touched, as in the snapshot's region.
    ctx.metrics.resident_at_ns.store(now_ns(), std::memory_order_release);
  }
  void complete(RestoreContext&) override {}
  void stop() override {}
};

}  // namespace

const RestoreEntry& eager_restore() {
  static const RestoreEntry e{
      .name = "eager",
      .help = "read the whole image into the region, then start the workload (QEMU loadvm; the baseline)",
      .params = {ParamSpec("chunk_mib", ParamSpec::Type::kInt, "8", 1, 1024, "bytes of the image read per pread, MiB")},
      .factory = make_restorer_of<EagerRestore>,
  };
  return e;
}

}  // namespace snap
