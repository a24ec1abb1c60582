// The image index of the restore strategies: one sequential pass over an image file that checks it
// as the reader does and notes, per page, where its last record's data is.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "core/image_checksum.h"
#include "core/image_format.h"
#include "core/units.h"
#include "restore/restore.h"

namespace snap {

using namespace image_detail;

namespace {

std::string hex(uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%016" PRIx64, v);
  return b;
}

// A window over the file read ahead in large chunks, so the pass is sequential I/O and never holds
// more than a few MiB, whatever the image's size.
class FileWindow {
 public:
  FileWindow(int fd, uint64_t size) : fd_(fd), size_(size) {}
  uint64_t size() const { return size_; }
  // Pointer to [off, off+n) (off+n <= size()).
  const uint8_t* at(uint64_t off, size_t n) {
    if (off < start_ || off + n > start_ + buf_.size()) {
      // Keep from `keep_` (what the checksum has not consumed yet) on, then read ahead.
      const uint64_t from = std::min(keep_, off);
      const uint64_t to = std::min(size_, std::max(off + n, from + kChunk));
      std::vector<uint8_t> next(to - from);
      uint64_t have = 0;
      if (from < start_ + buf_.size() && from >= start_) {
        have = start_ + buf_.size() - from;
        std::memcpy(next.data(), buf_.data() + (from - start_), have);
      }
      while (from + have < to) {
        ssize_t r = ::pread(fd_, next.data() + have, to - from - have, off_t(from + have));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) throw_errno("reading the image");
        if (r == 0) throw ImageError("the image file shrank while it was read (at byte " + std::to_string(from + have) + ")");
        have += uint64_t(r);
      }
      buf_ = std::move(next);
      start_ = from;
    }
    return buf_.data() + (off - start_);
  }
  void keep_from(uint64_t off) { keep_ = off; }

 private:
  static constexpr uint64_t kChunk = 8ull << 20;
  int fd_;
  uint64_t size_;
  std::vector<uint8_t> buf_;
  uint64_t start_ = 0, keep_ = 0;
};

std::string truncated(uint64_t at, const std::string& what) {
  return "image truncated at byte " + std::to_string(at) + ": " + what;
}

}  // namespace

ImageIndex build_image_index(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) throw_errno("fstat of the image");
  FileWindow win(fd, uint64_t(st.st_size));
  const uint64_t n = win.size();
  ImageIndex idx;
  if (n >= 8 && std::memcmp(win.at(0, 8), kHeaderMagic, 8) != 0)
    throw ImageError("bad magic: not a snapbench image (expected \"SNAPIMG1\" at byte 0)");
  if (n < kHeaderFixedBytes) throw ImageError(truncated(n, "the header needs " + std::to_string(kHeaderFixedBytes) + " bytes"));
  const uint8_t* h = win.at(0, kHeaderFixedBytes);
  if (load_u32(h + 8) != kImageVersion)
    throw ImageError("unsupported image version " + std::to_string(load_u32(h + 8)));
  if (load_u32(h + 12) != kPageSize) throw ImageError("unsupported page size " + std::to_string(load_u32(h + 12)));
  idx.header.region_pages = load_u64(h + 16);
  const uint32_t consistency = load_u32(h + 24);
  if (consistency > uint32_t(ConsistencyPoint::kEnd)) throw ImageError("bad consistency point in the header");
  idx.header.consistency = ConsistencyPoint(consistency);
  const uint16_t name_len = load_u16(h + 28);
  if (load_u16(h + 30) != 0) throw ImageError("reserved header field at byte 30 is not zero");
  if (n < kHeaderFixedBytes + name_len) throw ImageError(truncated(n, "the strategy name is cut off"));
  idx.header.strategy.assign(reinterpret_cast<const char*>(win.at(kHeaderFixedBytes, name_len)), name_len);
  // Each page costs 8 bytes of index: refuse a header whose region could not be restored anyway.
  if (idx.header.region_pages > (uint64_t(1) << 40) / kPageSize)
    throw ImageError("region of " + std::to_string(idx.header.region_pages) + " pages is beyond what a restore maps (1 TiB)");
  idx.where.assign(idx.header.region_pages, ImageIndex::kAbsent);

  uint64_t lanes[4];
  checksum_init(lanes);
  const BlocksFn blocks = pick_blocks_fn(false);
  uint64_t summed = 0;  // bytes fed to the checksum (whole blocks from the stream's start)
  auto feed_until = [&](uint64_t end) {
    const uint64_t nblocks = (end - summed) / kBlockBytes;
    if (nblocks == 0) return;
    blocks(lanes, win.at(summed, nblocks * kBlockBytes), nblocks);
    summed += nblocks * kBlockBytes;
    win.keep_from(summed);
  };

  uint64_t pos = kHeaderFixedBytes + name_len;
  for (;;) {
    const uint64_t left = n - pos;
    const std::string where = "record " + std::to_string(idx.records) + " at byte " + std::to_string(pos);
    if (left < 8) throw ImageError(truncated(n, "no trailer after " + std::to_string(idx.records) + " records"));
    if (std::memcmp(win.at(pos, 8), kTrailerMagic, 8) == 0) break;
    if (left < kRecordHeaderBytes) throw ImageError(truncated(n, where + " needs its header"));
    const uint8_t* r = win.at(pos, kRecordHeaderBytes);
    const uint64_t page = load_u64(r);
    const uint32_t flags = load_u32(r + 8);
    if (page >= idx.header.region_pages) throw ImageError(where + ": page index " + std::to_string(page) + " out of range");
    if (flags & ~kRecordZero) throw ImageError(where + ": unknown flags " + hex(flags));
    if (load_u32(r + 12) != 0) throw ImageError(where + ": reserved field is not zero");
    const bool zero = flags & kRecordZero;
    if (!zero && left - kRecordHeaderBytes < kPageSize)
      throw ImageError(truncated(n, where + " (page " + std::to_string(page) + ") needs 4096 data bytes"));
    idx.where[page] = zero ? ImageIndex::kZero : pos + kRecordHeaderBytes;
    pos += kRecordHeaderBytes + (zero ? 0 : kPageSize);
    ++idx.records;
    if (pos - summed >= (1u << 20)) feed_until(pos);
  }
  if (n - pos < kTrailerBytes) throw ImageError(truncated(n, "the trailer at byte " + std::to_string(pos) + " is cut off"));
  if (n != pos + kTrailerBytes)
    throw ImageError("trailing garbage: " + std::to_string(n - pos - kTrailerBytes) + " bytes after the trailer");
  feed_until(pos);
  const uint64_t computed = checksum_final(lanes, win.at(summed, pos - summed), pos - summed, pos);
  const uint8_t* t = win.at(pos, kTrailerBytes);
  if (computed != load_u64(t + 16))
    throw ImageError("checksum mismatch: the trailer says " + hex(load_u64(t + 16)) + ", the image hashes to " + hex(computed));
  if (load_u64(t + 8) != idx.records)
    throw ImageError("record count mismatch: the trailer says " + std::to_string(load_u64(t + 8)) + ", the image holds " +
                     std::to_string(idx.records));
  for (uint64_t w : idx.where) idx.data_pages += (w != ImageIndex::kAbsent && w != ImageIndex::kZero);
  return idx;
}

}  // namespace snap
