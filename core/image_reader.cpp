// The image reader: reads a file within bounds, checks an image's structure and checksum, and
// flattens it (or only counts it, for `image info`, without materialising the region).
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <optional>
#include <stdexcept>

#include "core/error.h"
#include "core/image.h"
#include "core/image_checksum.h"
#include "core/image_format.h"
#include "core/scoped.h"
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
    throw ImageError("unsupported image version " + std::to_string(version) + " at byte 8 (this build reads version " +
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

namespace {

// Pass 1 of every reader: structure, bounds, trailer, checksum. Nothing is allocated for the region
// until the image is trusted. Returns the number of records.
uint64_t check_image(const std::vector<uint8_t>& bytes, const ParsedHeader& ph) {
  const uint8_t* p = bytes.data();
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
  return records;
}

uint64_t meminfo_available_bytes() {
  FILE* f = std::fopen("/proc/meminfo", "re");
  if (!f) return 0;
  char line[256];
  unsigned long long kib = 0;
  bool found = false;
  while (!found && std::fgets(line, sizeof line, f)) found = std::sscanf(line, "MemAvailable: %llu kB", &kib) == 1;
  std::fclose(f);
  return found ? uint64_t(kib) * 1024 : 0;
}

uint64_t effective_limit(uint64_t max_bytes) { return max_bytes ? max_bytes : available_memory_bytes(); }

}  // namespace

uint64_t available_memory_bytes() {
  uint64_t avail = meminfo_available_bytes();
  if (avail == 0) {
    struct sysinfo si;
    if (sysinfo(&si) == 0) avail = uint64_t(si.freeram + si.bufferram) * si.mem_unit;
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) avail = std::min<uint64_t>(avail, rl.rlim_cur);
  return avail;
}

FlatImage flatten_image(const std::vector<uint8_t>& bytes, uint64_t max_memory_bytes) {
  const ParsedHeader ph = parse_header(bytes);
  uint64_t records = check_image(bytes, ph);

  // Pass 2: flatten (later records win). The region's size comes from the header: check it against
  // the memory there is before allocating, rather than count on an allocation failure (which
  // sanitizers and overcommit turn into an abort or the OOM killer).
  FlatImage img;
  img.header = ph.header;
  const uint64_t region_pages = ph.header.region_pages;
  const uint64_t limit = effective_limit(max_memory_bytes);
  const uint64_t need = region_pages > (UINT64_MAX - region_pages / 8) / kPageSize
                            ? UINT64_MAX
                            : region_pages * kPageSize + region_pages / 8;
  if (need > limit || need > SIZE_MAX / 2)
    throw ImageError("cannot flatten the image: its region of " + std::to_string(region_pages) + " pages needs " +
                     (need == UINT64_MAX ? std::string("more than 16 EiB") : format_bytes(double(need))) +
                     ", more than the " + format_bytes(double(limit)) + " of memory available");
  img.memory.assign(region_pages * kPageSize, 0);
  img.present.assign(region_pages, false);
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

ImageSummary inspect_image(const std::vector<uint8_t>& bytes) {
  const ParsedHeader ph = parse_header(bytes);
  uint64_t records = check_image(bytes, ph);
  ImageSummary s;
  s.header = ph.header;
  s.stats.image_bytes = bytes.size();
  // The page indices written, sorted: as many as there are records (each at least 16 bytes of the
  // file), so the memory follows the file's size, not the header's region_pages.
  std::vector<uint64_t> pages;
  pages.reserve(records);
  walk_records(bytes, ph, records, [&](uint64_t index, const uint8_t* data) {
    pages.push_back(index);
    s.stats.zero_pages += data == nullptr;
  });
  std::sort(pages.begin(), pages.end());
  s.stats.pages_saved = pages.size();
  s.stats.unique_pages = uint64_t(std::unique(pages.begin(), pages.end()) - pages.begin());
  s.stats.duplicate_pages = s.stats.pages_saved - s.stats.unique_pages;
  s.missing_pages = ph.header.region_pages - s.stats.unique_pages;
  if (s.missing_pages) {
    // The first index not present: where the sorted unique indices first skip one.
    uint64_t expect = 0;
    for (uint64_t i = 0; i < s.stats.unique_pages && pages[i] == expect; ++i) ++expect;
    s.first_missing_page = int64_t(expect);
  }
  return s;
}

namespace {

// Reads `path` into memory, refusing more than `limit` bytes; `check_prefix` sees the bytes read so
// far after each read (and may throw), so a wrong file is refused before it is read whole.
template <class Check>
std::vector<uint8_t> read_bounded(const std::string& path, uint64_t limit, Check&& check_prefix) {
  const UniqueFd owned(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  const int fd = owned.get();
  if (fd < 0) throw_errno("cannot open '" + path + "'");
  std::vector<uint8_t> out;
  struct stat st;
  const bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
  if (regular) {
    if (uint64_t(st.st_size) > limit)
      throw std::runtime_error("cannot read '" + path + "': its " + format_bytes(double(st.st_size)) +
                               " are more than the " + format_bytes(double(limit)) + " of memory available");
    out.reserve(size_t(st.st_size));
  }
  uint8_t chunk[1 << 16];
  for (;;) {
    const ssize_t r = ::read(fd, chunk, sizeof chunk);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw_errno("cannot read '" + path + "'");
    }
    if (r == 0) break;
    if (uint64_t(r) > limit - out.size())
      throw std::runtime_error("cannot read '" + path + "': " + (regular ? "it grew past " : "not a regular file and longer than ") +
                               format_bytes(double(limit)) + " (the memory available)");
    out.insert(out.end(), chunk, chunk + r);
    check_prefix(out);
  }
  return out;
}

}  // namespace

std::vector<uint8_t> read_file_bytes(const std::string& path, uint64_t max_bytes) {
  return read_bounded(path, effective_limit(max_bytes), [](const std::vector<uint8_t>&) {});
}

namespace {

// Checks an image as its bytes arrive, so an input that is wrong (or never ends: a FIFO, a device) is
// refused after a bounded read: the header as soon as its bytes are in (version 0 at byte 12), each
// record's index, flags and reserved field, nothing after the trailer, and no more records than any
// strategy writes (kMaxRecordsPerPage per region page: precopy re-sends a page at most max_passes <=
// 1000 times), so what is buffered is bounded by the header's region, not by the input.
class StreamCheck {
 public:
  void operator()(const std::vector<uint8_t>& bytes) {
    const size_t n = bytes.size();
    if (!header_) {
      if (n >= 8 && std::memcmp(bytes.data(), kHeaderMagic, 8) != 0)
        throw ImageError("bad magic: not a snapbench image (expected \"SNAPIMG1\" at byte 0)");
      if (n < kHeaderFixedBytes && n < 12) return;
      if (n < kHeaderFixedBytes) {
        // Enough for the version, the first thing that can be wrong after the magic.
        std::vector<uint8_t> padded(bytes);
        padded.resize(kHeaderFixedBytes, 0);
        const uint32_t version = load_u32(padded.data() + 8);
        if (version != kImageVersion)
          throw ImageError("unsupported image version " + std::to_string(version) +
                           " at byte 8 (this build reads version " + std::to_string(kImageVersion) + ")");
        return;
      }
      if (n < kHeaderFixedBytes + load_u16(bytes.data() + 28)) return;  // the strategy name is still to come
      header_ = parse_header(bytes);
      pos_ = header_->records_start;
      const uint64_t pages = std::max<uint64_t>(header_->header.region_pages, 1);
      max_records_ = pages > UINT64_MAX / kMaxRecordsPerPage ? UINT64_MAX : pages * kMaxRecordsPerPage;
    }
    while (!trailer_ && pos_ <= n && n - pos_ >= 8) {
      if (std::memcmp(bytes.data() + pos_, kTrailerMagic, 8) == 0) {
        trailer_ = true;
        break;
      }
      if (n - pos_ < kRecordHeaderBytes) return;
      const uint64_t index = load_u64(bytes.data() + pos_);
      const uint32_t flags = load_u32(bytes.data() + pos_ + 8);
      const std::string where = "record " + std::to_string(records_) + " at byte " + std::to_string(pos_);
      if (index >= header_->header.region_pages)
        throw ImageError(where + ": page index " + std::to_string(index) + " out of range (region has " +
                         std::to_string(header_->header.region_pages) + " pages)");
      if (flags & ~kRecordZero) throw ImageError(where + ": unknown flags " + hex(flags));
      if (load_u32(bytes.data() + pos_ + 12) != 0) throw ImageError(where + ": reserved field is not zero");
      if (++records_ > max_records_)
        throw ImageError(where + ": more than " + std::to_string(kMaxRecordsPerPage) +
                         " records per page of the region (" + std::to_string(header_->header.region_pages) +
                         " pages): not an image any strategy writes; stopped reading");
      pos_ += kRecordHeaderBytes + ((flags & kRecordZero) ? 0 : kPageSize);
      if (pos_ > n) return;  // the page's data is still to come
    }
    // A little garbage is left to the whole-image check, which counts it; an endless tail stops here.
    if (trailer_ && n > pos_ + kTrailerBytes + kMaxTrailingBytes)
      throw ImageError("trailing garbage: more than " + std::to_string(kMaxTrailingBytes) +
                       " bytes after the trailer, which ends at byte " + std::to_string(pos_ + kTrailerBytes) +
                       "; stopped reading");
  }

 private:
  static constexpr uint64_t kMaxRecordsPerPage = 1024;
  static constexpr size_t kMaxTrailingBytes = 1 << 16;
  std::optional<ParsedHeader> header_;
  size_t pos_ = 0;
  uint64_t records_ = 0, max_records_ = 0;
  bool trailer_ = false;
};

}  // namespace

std::vector<uint8_t> read_image_file(const std::string& path, uint64_t max_bytes) {
  try {
    return read_bounded(path, effective_limit(max_bytes), StreamCheck{});
  } catch (const ImageError& e) {
    throw ImageError(path + ": " + e.what());
  }
}

}  // namespace snap
