// The image reader: reads a file within bounds, checks an image's structure and checksum, and
// flattens it (or only counts it, for `image info`, without materialising the region).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "core/error.h"
#include "core/image.h"
#include "core/image_checksum.h"
#include "core/image_format.h"
#include "core/units.h"

namespace snap {

using namespace image_detail;

namespace {

std::string hex(uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%016" PRIx64, v);
  return b;
}


struct ParsedHeader {
  ImageHeader header;
  size_t records_start = 0;
};

ParsedHeader parse_header(const std::vector<uint8_t>& bytes) {
  const uint8_t* p = bytes.data();
  const size_t n = bytes.size();
  if (n >= 8 && std::memcmp(p, kHeaderMagic, 8) != 0)
    throw ImageError("bad magic: not a snapbench image (expected \"SNAPIMG1\" at byte 0)");
  if (n < kHeaderFixedBytes)
    throw ImageError("image truncated at byte " + std::to_string(n) + ": the header needs " +
                     std::to_string(kHeaderFixedBytes) + " bytes");
  ParsedHeader ph;
  const uint32_t version = load_u32(p + 8);
  if (version != kImageVersion)
    throw ImageError("unsupported image version " + std::to_string(version) + " (this build reads version " +
                     std::to_string(kImageVersion) + ")");
  ph.header.page_size = load_u32(p + 12);
  if (ph.header.page_size != kPageSize)
    throw ImageError("unsupported page size " + std::to_string(ph.header.page_size) + " (expected " +
                     std::to_string(kPageSize) + ")");
  ph.header.region_pages = load_u64(p + 16);
  const uint32_t consistency = load_u32(p + 24);
  if (consistency > static_cast<uint32_t>(ConsistencyPoint::kEnd))
    throw ImageError("bad consistency point " + std::to_string(consistency) + " in the header");
  ph.header.consistency = static_cast<ConsistencyPoint>(consistency);
  const uint16_t name_len = load_u16(p + 28);
  if (load_u16(p + 30) != 0) throw ImageError("reserved header field at byte 30 is not zero");
  if (n - kHeaderFixedBytes < name_len)
    throw ImageError("image truncated at byte " + std::to_string(n) + ": the strategy name needs " +
                     std::to_string(name_len) + " bytes from byte " + std::to_string(kHeaderFixedBytes));
  ph.header.strategy.assign(reinterpret_cast<const char*>(p + kHeaderFixedBytes), name_len);
  ph.records_start = kHeaderFixedBytes + name_len;
  return ph;
}

// Walks the records, calling fn(index, flags, data_or_null) for each; returns the trailer's offset.
// Checks structure and bounds only (the checksum is checked by the caller).
template <class Fn>
size_t walk_records(const std::vector<uint8_t>& bytes, const ParsedHeader& ph, uint64_t& records, Fn&& fn) {
  const uint8_t* p = bytes.data();
  const size_t n = bytes.size();
  size_t pos = ph.records_start;
  records = 0;
  for (;;) {
    const size_t left = n - pos;
    auto where = [&] { return "record " + std::to_string(records) + " at byte " + std::to_string(pos); };
    if (left == 0)
      throw ImageError("image truncated at byte " + std::to_string(pos) + ": no trailer after " +
                       std::to_string(records) + " records");
    if (left < 8)
      throw ImageError("image truncated at byte " + std::to_string(n) + ": " + std::to_string(left) +
                       " bytes left where " + where() + " or the trailer should start");
    if (std::memcmp(p + pos, kTrailerMagic, 8) == 0) {
      if (left < kTrailerBytes)
        throw ImageError("image truncated at byte " + std::to_string(n) + ": the trailer at byte " +
                         std::to_string(pos) + " needs " + std::to_string(kTrailerBytes) + " bytes, only " +
                         std::to_string(left) + " remain");
      return pos;
    }
    if (left < kRecordHeaderBytes)
      throw ImageError("image truncated at byte " + std::to_string(n) + ": " + where() + " needs " +
                       std::to_string(kRecordHeaderBytes) + " header bytes, only " + std::to_string(left) +
                       " remain");
    const uint64_t index = load_u64(p + pos);
    const uint32_t flags = load_u32(p + pos + 8);
    const uint32_t reserved = load_u32(p + pos + 12);
    if (index >= ph.header.region_pages)
      throw ImageError(where() + ": page index " + std::to_string(index) + " out of range (region has " +
                       std::to_string(ph.header.region_pages) + " pages)");
    if (flags & ~kRecordZero) throw ImageError(where() + ": unknown flags " + hex(flags));
    if (reserved != 0) throw ImageError(where() + ": reserved field is not zero");
    const bool zero = flags & kRecordZero;
    const size_t data_bytes = zero ? 0 : kPageSize;
    if (left - kRecordHeaderBytes < data_bytes)
      throw ImageError("image truncated at byte " + std::to_string(n) + ": " + where() + " (page " +
                       std::to_string(index) + ") needs " + std::to_string(data_bytes) + " data bytes, only " +
                       std::to_string(left - kRecordHeaderBytes) + " remain");
    fn(index, zero ? nullptr : p + pos + kRecordHeaderBytes);
    pos += kRecordHeaderBytes + data_bytes;
    ++records;
  }
}

}  // namespace

FlatImage flatten_image(const std::vector<uint8_t>& bytes) {
  const ParsedHeader ph = parse_header(bytes);
  const uint8_t* p = bytes.data();

  // Pass 1: structure, bounds, trailer, checksum; nothing is allocated until the image is trusted.
  uint64_t records = 0;
  const size_t trailer = walk_records(bytes, ph, records, [](uint64_t, const uint8_t*) {});
  const size_t end = trailer + kTrailerBytes;
  if (end != bytes.size())
    throw ImageError("trailing garbage: " + std::to_string(bytes.size() - end) +
                     " bytes after the trailer, which ends at byte " + std::to_string(end));
  const uint64_t stored_count = load_u64(p + trailer + 8);
  const uint64_t stored_checksum = load_u64(p + trailer + 16);
  const uint64_t computed = image_detail::checksum(p, trailer, false);
  if (computed != stored_checksum)
    throw ImageError("checksum mismatch: the trailer says " + hex(stored_checksum) + ", the image hashes to " +
                     hex(computed));
  if (stored_count != records)
    throw ImageError("record count mismatch: the trailer says " + std::to_string(stored_count) +
                     ", the image holds " + std::to_string(records));

  // Pass 2: flatten (later records win).
  FlatImage img;
  img.header = ph.header;
  const uint64_t region_pages = ph.header.region_pages;
  if (region_pages > SIZE_MAX / kPageSize)
    throw ImageError("region of " + std::to_string(region_pages) + " pages is too large to flatten");
  try {
    img.memory.assign(region_pages * kPageSize, 0);
    img.present.assign(region_pages, false);
  } catch (const std::exception&) {  // bad_alloc, or length_error beyond max_size()
    throw ImageError("cannot allocate " + format_bytes(double(region_pages) * kPageSize) +
                     " to flatten the image");
  }
  img.stats.image_bytes = bytes.size();
  walk_records(bytes, ph, records, [&](uint64_t index, const uint8_t* data) {
    uint8_t* dst = img.memory.data() + index * kPageSize;
    if (data) {
      std::memcpy(dst, data, kPageSize);
    } else {
      std::memset(dst, 0, kPageSize);
      ++img.stats.zero_pages;
    }
    if (!img.present[index]) {
      img.present[index] = true;
      ++img.stats.unique_pages;
    }
    ++img.stats.pages_saved;
  });
  img.stats.duplicate_pages = img.stats.pages_saved - img.stats.unique_pages;
  return img;
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw_errno("cannot open '" + path + "'");
  std::vector<uint8_t> out;
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) out.reserve(size_t(st.st_size));
  uint8_t chunk[1 << 16];
  for (;;) {
    const ssize_t r = ::read(fd, chunk, sizeof chunk);
    if (r < 0) {
      if (errno == EINTR) continue;
      const int saved = errno;
      ::close(fd);
      errno = saved;
      throw_errno("cannot read '" + path + "'");
    }
    if (r == 0) break;
    out.insert(out.end(), chunk, chunk + r);
  }
  ::close(fd);
  return out;
}

}  // namespace snap
