// PageSource: index lookups turned into coalesced preads.
#include "restore/page_source.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "core/error.h"
#include "core/image_format.h"
#include "core/units.h"

namespace snap {

namespace {

void pread_all(int fd, uint8_t* dst, uint64_t n, uint64_t off) {
  uint64_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, dst + done, n - done, off_t(off + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw_errno("reading a page of the image");
    if (r == 0) throw std::runtime_error("the image ended at byte " + std::to_string(off + done) + " while a page was read");
    done += uint64_t(r);
  }
}

}  // namespace

void PageSource::read(uint64_t first, uint64_t count, uint8_t* dst) {
  constexpr uint64_t kStride = image_detail::kRecordHeaderBytes + kPageSize;  // one data record
  for (uint64_t i = 0; i < count;) {
    const uint64_t page = first + i;
    if (!index_.has_data(page)) {
      std::memset(dst + i * kPageSize, 0, kPageSize);
      ++i;
      continue;
    }
    // The run of following pages whose records follow each other in the file (a stop-copy image is
    // one such run): read in one pread, then the record headers are stepped over.
    uint64_t k = 1;
    while (i + k < count && index_.has_data(page + k) && index_.where[page + k] == index_.where[page] + k * kStride) ++k;
    if (k == 1) {
      pread_all(fd_, dst + i * kPageSize, kPageSize, index_.where[page]);
      metrics_.bytes_read.fetch_add(kPageSize, std::memory_order_relaxed);
    } else {
      const uint64_t span = (k - 1) * kStride + kPageSize;
      if (scratch_.size() < span) scratch_.resize(span);
      pread_all(fd_, scratch_.data(), span, index_.where[page]);
      for (uint64_t j = 0; j < k; ++j) std::memcpy(dst + (i + j) * kPageSize, scratch_.data() + j * kStride, kPageSize);
      metrics_.bytes_read.fetch_add(span, std::memory_order_relaxed);
    }
    i += k;
  }
}

}  // namespace snap
