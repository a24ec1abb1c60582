// The page image format: ImageWriter (the hot path of every strategy), flatten_image and verify_image.
#include "core/image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <new>
#include <stdexcept>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#include "core/error.h"
#include "core/region.h"
#include "core/units.h"

// The format is little-endian and the writer stores integers with memcpy: keep that honest.
static_assert(std::endian::native == std::endian::little, "the image code assumes a little-endian host");

namespace snap {

namespace {

constexpr char kHeaderMagic[8] = {'S', 'N', 'A', 'P', 'I', 'M', 'G', '1'};
constexpr char kTrailerMagic[8] = {'S', 'N', 'A', 'P', 'E', 'N', 'D', '1'};
constexpr size_t kHeaderFixedBytes = 32;  // up to and including the reserved u16
constexpr size_t kRecordHeaderBytes = 16;
constexpr size_t kTrailerBytes = 24;
constexpr size_t kBufferBytes = 1 << 20;
// The checksum consumes 32-byte blocks (four 8-byte words, one per lane), aligned to the stream start.
constexpr size_t kBlockBytes = 32;

void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, sizeof v); }
void store_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, sizeof v); }
void store_u64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, sizeof v); }
// A record's header: page index, flags, reserved.
void store_record_header(uint8_t* p, uint64_t page, uint32_t flags) {
  store_u64(p, page);
  store_u32(p + 8, flags);
  store_u32(p + 12, 0);
}
uint16_t load_u16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, sizeof v); return v; }
uint32_t load_u32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, sizeof v); return v; }
uint64_t load_u64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, sizeof v); return v; }

std::string hex(uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%016" PRIx64, v);
  return b;
}

std::string hex8(uint8_t v) {
  char b[8];
  std::snprintf(b, sizeof b, "0x%02x", v);
  return b;
}

// ---- checksum: four CRC-32C lanes over interleaved 8-byte words, folded to 64 bits ----
// Why CRC-32C: the SSE4.2 crc32 instruction does 8 bytes per cycle with four independent chains
// (latency 3, throughput 1), ~30 GB/s on cache-hot data, so it hides behind the page memcpy; and a
// CRC detects every error burst of up to 32 bits within a lane, so a flipped byte is always caught.

constexpr uint32_t kCrc32cPolyReflected = 0x82F63B78u;
constexpr uint32_t kCrcInit = 0xFFFFFFFFu;

struct Crc32cTables {
  uint32_t t[8][256];
  Crc32cTables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ ((c & 1) ? kCrc32cPolyReflected : 0);
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
  }
};

const Crc32cTables& crc_tables() {
  static const Crc32cTables tables;
  return tables;
}

// One 8-byte little-endian word into a CRC-32C state (slicing-by-8), for hosts without SSE4.2.
uint64_t crc_word_portable(const Crc32cTables& tb, uint64_t crc, uint64_t w) {
  const uint64_t x = crc ^ w;
  return tb.t[7][x & 0xFF] ^ tb.t[6][(x >> 8) & 0xFF] ^ tb.t[5][(x >> 16) & 0xFF] ^
         tb.t[4][(x >> 24) & 0xFF] ^ tb.t[3][(x >> 32) & 0xFF] ^ tb.t[2][(x >> 40) & 0xFF] ^
         tb.t[1][(x >> 48) & 0xFF] ^ tb.t[0][x >> 56];
}

void blocks_portable(uint64_t lanes[4], const uint8_t* p, size_t nblocks) {
  const Crc32cTables& tb = crc_tables();
  for (size_t b = 0; b < nblocks; ++b, p += kBlockBytes)
    for (int j = 0; j < 4; ++j) lanes[j] = crc_word_portable(tb, lanes[j], load_u64(p + 8 * j));
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) void blocks_sse42(uint64_t lanes[4], const uint8_t* p, size_t nblocks) {
  uint64_t a = lanes[0], b = lanes[1], c = lanes[2], d = lanes[3];
  for (size_t i = 0; i < nblocks; ++i, p += kBlockBytes) {
    a = _mm_crc32_u64(a, load_u64(p));
    b = _mm_crc32_u64(b, load_u64(p + 8));
    c = _mm_crc32_u64(c, load_u64(p + 16));
    d = _mm_crc32_u64(d, load_u64(p + 24));
  }
  lanes[0] = a, lanes[1] = b, lanes[2] = c, lanes[3] = d;
}
#endif

using BlocksFn = void (*)(uint64_t*, const uint8_t*, size_t);
// How far ahead of the copy the source is prefetched. The hardware streamer stops at each 4 KiB page
// boundary, so without it every page starts with a DRAM miss; half a page ahead measured best on
// the development machine (BM_SavePages/null: 1 KiB 131, 1.5 KiB 120, 2 KiB 117, 3 KiB 120,
// 4 KiB 123 ms/GiB; no prefetch 163; glibc memcpy page by page 109).
constexpr size_t kPrefetchAhead = 2048;

#if defined(__x86_64__)
// The writer's hot loop: copies `nblocks` 32-byte blocks from src to dst, feeds each block to the
// four lanes and returns the OR of every word copied (0 = all zero). One pass over the source instead
// of three (zero scan, memcpy, checksum of the copy): a page is read from DRAM once, and the CRC
// instructions run in the shadow of the loads. BM_SavePages measures it against memcpy.
//
// The source may change while it is read (precopy saves memory its writers are writing), so each
// byte must be read exactly once: the value stored must be the value checksummed. Written plainly,
// GCC loaded words 0 and 1 of each block twice (a vector load for the store, scalar loads for the
// CRC) and a write in between gave a record whose checksum did not match its bytes. The empty asm
// pins the loaded words in registers, so both uses read the same load.
__attribute__((target("sse4.2"))) uint64_t copy_blocks_sse42(uint64_t lanes[4], uint8_t* dst, const uint8_t* src,
                                                             size_t nblocks) {
  uint64_t a = lanes[0], b = lanes[1], c = lanes[2], d = lanes[3];
  uint64_t any = 0;
  for (size_t i = 0; i < nblocks; ++i, src += kBlockBytes, dst += kBlockBytes) {
    if (i % 2 == 0) __builtin_prefetch(src + kPrefetchAhead);  // once per 64-byte line
    uint64_t w0 = load_u64(src), w1 = load_u64(src + 8), w2 = load_u64(src + 16), w3 = load_u64(src + 24);
    asm volatile("" : "+r"(w0), "+r"(w1), "+r"(w2), "+r"(w3));
    store_u64(dst, w0);
    store_u64(dst + 8, w1);
    store_u64(dst + 16, w2);
    store_u64(dst + 24, w3);
    a = _mm_crc32_u64(a, w0);
    b = _mm_crc32_u64(b, w1);
    c = _mm_crc32_u64(c, w2);
    d = _mm_crc32_u64(d, w3);
    any |= (w0 | w1) | (w2 | w3);
  }
  lanes[0] = a, lanes[1] = b, lanes[2] = c, lanes[3] = d;
  return any;
}
#endif

using CopyBlocksFn = uint64_t (*)(uint64_t*, uint8_t*, const uint8_t*, size_t);

// The fused copy when the CPU has the crc32 instruction, else null (the writer then scans, copies
// and checksums in three steps, as the table-driven CRC would be far slower than a copy anyway).
CopyBlocksFn pick_copy_blocks_fn() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("sse4.2")) return copy_blocks_sse42;
#endif
  return nullptr;
}

// Copies n (< 32) bytes and returns whether any of them is non-zero, judged on the copy (the
// source may be changing; the checksum is computed on the copy too).
bool copy_small(uint8_t* dst, const uint8_t* src, size_t n) {
  std::memcpy(dst, src, n);
  uint8_t any = 0;
  for (size_t i = 0; i < n; ++i) any |= dst[i];
  return any != 0;
}

BlocksFn pick_blocks_fn(bool force_portable) {
#if defined(__x86_64__)
  static const bool has_sse42 = __builtin_cpu_supports("sse4.2");
  if (has_sse42 && !force_portable) return blocks_sse42;
#endif
  (void)force_portable;
  return blocks_portable;
}

void checksum_init(uint64_t lanes[4]) {
  for (int j = 0; j < 4; ++j) lanes[j] = kCrcInit;
}

// MurmurHash3's 64-bit finaliser: a bijection that mixes every input bit into every output bit.
uint64_t fmix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

// Feeds the last partial block (< 32 bytes; its last word zero-padded) and folds the lanes together
// with the total length. Each lane goes through a bijection on its own half, so a change confined
// to one lane always changes the result; the fold is non-linear so equal CRC deltas in two lanes
// (a repeated pattern) do not cancel.
// The tail is at most four words: the table-driven CRC is exact and cheap enough for it.
uint64_t checksum_final(const uint64_t lanes_in[4], const uint8_t* tail, size_t tail_len, uint64_t total_len) {
  uint64_t lanes[4] = {lanes_in[0], lanes_in[1], lanes_in[2], lanes_in[3]};
  const Crc32cTables& tb = crc_tables();
  for (size_t w = 0; w * 8 < tail_len; ++w) {
    uint8_t word[8] = {};
    std::memcpy(word, tail + w * 8, std::min<size_t>(8, tail_len - w * 8));
    lanes[w] = crc_word_portable(tb, lanes[w], load_u64(word));
  }
  uint64_t c[4];
  for (int j = 0; j < 4; ++j) c[j] = (lanes[j] ^ kCrcInit) & 0xFFFFFFFFull;
  const uint64_t a = c[0] | (c[1] << 32);
  const uint64_t b = c[2] | (c[3] << 32);
  return fmix64(a ^ total_len) ^ fmix64(b ^ 0x9E3779B97F4A7C15ull);
}

uint64_t checksum_bytes(const uint8_t* p, size_t n, bool force_portable) {
  uint64_t lanes[4];
  checksum_init(lanes);
  const size_t nblocks = n / kBlockBytes;
  pick_blocks_fn(force_portable)(lanes, p, nblocks);
  return checksum_final(lanes, p + nblocks * kBlockBytes, n % kBlockBytes, n);
}

}  // namespace

// Test hook (declared in tests/test_image.cpp): the image checksum of a byte string, optionally
// forcing the table-driven path so it can be compared with the SSE4.2 one.
namespace image_detail {
uint64_t checksum(const uint8_t* p, size_t n, bool force_portable) {
  return checksum_bytes(p, n, force_portable);
}
}  // namespace image_detail

// ---------------------------------------------------------------------------------------------
// ImageWriter
//
// Invariant: every complete 32-byte block of the stream that lies before floor32(used_) in the
// buffer has been fed to the checksum; the bytes in [floor32(used_), used_) have not. flush() only
// ever writes whole blocks and moves the tail (< 32 bytes) to the front, so the buffer always starts
// at a 32-byte-aligned stream offset and lanes never shift. Each record is checksummed right after
// its memcpy, while its bytes are still in L1.

ImageWriter::ImageWriter(Sink& sink, const ImageHeader& header) : sink_(sink), header_(header) {
  if (header.page_size != kPageSize)
    throw std::logic_error("ImageWriter: page_size " + std::to_string(header.page_size) +
                           " is not supported (only " + std::to_string(kPageSize) + ")");
  if (header.strategy.size() > 0xFFFF) throw std::logic_error("ImageWriter: strategy name too long");
  buf_.resize(kBufferBytes);
  checksum_init(checksum_state_);
  seen_.assign((header.region_pages + 63) / 64, 0);

  uint8_t fixed[kHeaderFixedBytes];
  std::memcpy(fixed, kHeaderMagic, 8);
  store_u32(fixed + 8, kImageVersion);
  store_u32(fixed + 12, header.page_size);
  store_u64(fixed + 16, header.region_pages);
  store_u32(fixed + 24, static_cast<uint32_t>(header.consistency));
  store_u16(fixed + 28, static_cast<uint16_t>(header.strategy.size()));
  store_u16(fixed + 30, 0);
  put(fixed, sizeof fixed);
  put(header.strategy.data(), header.strategy.size());
}

void ImageWriter::put(const void* p, size_t n) {
  const uint8_t* src = static_cast<const uint8_t*>(p);
  static const BlocksFn blocks = pick_blocks_fn(false);
  while (n > 0) {
    if (used_ == buf_.size()) flush();
    const size_t take = std::min(n, buf_.size() - used_);
    const size_t start = used_;
    std::memcpy(buf_.data() + used_, src, take);
    used_ += take;
    const size_t from = start & ~(kBlockBytes - 1), to = used_ & ~(kBlockBytes - 1);
    blocks(checksum_state_, buf_.data() + from, (to - from) / kBlockBytes);
    stats_.image_bytes += take;
    src += take;
    n -= take;
  }
}

void ImageWriter::flush() {
  const size_t whole = used_ & ~(kBlockBytes - 1);
  if (whole == 0) return;
  sink_.write(buf_.data(), whole);  // a SinkError propagates with the buffer untouched
  const size_t tail = used_ - whole;
  std::memmove(buf_.data(), buf_.data() + whole, tail);
  used_ = tail;
}

void ImageWriter::reserve(size_t pages) {
  const size_t need = pages * (kRecordHeaderBytes + kPageSize);
  // After a flush at most kBlockBytes - 1 bytes stay in the buffer.
  if (buf_.size() < need + kBlockBytes) buf_.resize(need + kBlockBytes);
  if (buf_.size() - used_ < need) flush();
}

void ImageWriter::save_page(uint64_t index, const void* data) { save_pages(index, data, 1); }

void ImageWriter::save_pages(uint64_t index, const void* data, size_t count) {
  if (finished_) throw std::logic_error("ImageWriter: save_pages after finish");
  if (index >= header_.region_pages || count > header_.region_pages - index)
    throw std::logic_error("ImageWriter: pages [" + std::to_string(index) + ", " +
                           std::to_string(index + count) + ") out of range (region has " +
                           std::to_string(header_.region_pages) + " pages)");
  static const BlocksFn blocks = pick_blocks_fn(false);
  static const CopyBlocksFn copy_blocks = pick_copy_blocks_fn();
  const uint8_t* src = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < count; ++i, src += kPageSize) {
    const uint64_t page = index + i;
    bool zero;
    size_t need;
    if (copy_blocks) {
      // Copy the page as if it held data, learning on the way whether it is all zero; a zero page
      // is then rewound to a bare zero record (its copy is wasted, but zero pages are the cheap ones).
      if (buf_.size() - used_ < kRecordHeaderBytes + kPageSize) flush();
      const size_t start = used_;
      uint8_t* dst = buf_.data() + start;
      uint64_t lanes_before[4];
      std::memcpy(lanes_before, checksum_state_, sizeof lanes_before);
      store_record_header(dst, page, 0);
      size_t pos = start + kRecordHeaderBytes;  // buffer offset of the next data byte
      size_t left = kPageSize;
      const uint8_t* s = src;
      // Whole blocks up to the one the data starts in; then complete that block with the data's head.
      blocks(checksum_state_, buf_.data() + (start & ~(kBlockBytes - 1)),
             ((pos & ~(kBlockBytes - 1)) - (start & ~(kBlockBytes - 1))) / kBlockBytes);
      bool any = false;
      if (const size_t misalign = pos % kBlockBytes; misalign != 0) {
        const size_t head = kBlockBytes - misalign;
        any |= copy_small(buf_.data() + pos, s, head);
        blocks(checksum_state_, buf_.data() + pos - misalign, 1);
        pos += head, s += head, left -= head;
      }
      const size_t nblocks = left / kBlockBytes;
      any |= copy_blocks(checksum_state_, buf_.data() + pos, s, nblocks) != 0;
      pos += nblocks * kBlockBytes, s += nblocks * kBlockBytes, left -= nblocks * kBlockBytes;
      any |= copy_small(buf_.data() + pos, s, left);  // left unfed: the next record completes its block
      used_ = pos + left;
      zero = !any;
      if (zero) {
        std::memcpy(checksum_state_, lanes_before, sizeof lanes_before);
        store_record_header(dst, page, kRecordZero);
        used_ = start + kRecordHeaderBytes;
        blocks(checksum_state_, buf_.data() + (start & ~(kBlockBytes - 1)),
               ((used_ & ~(kBlockBytes - 1)) - (start & ~(kBlockBytes - 1))) / kBlockBytes);
      }
      need = used_ - start;
    } else {
      zero = page_is_zero(src);
      need = kRecordHeaderBytes + (zero ? 0 : kPageSize);
      if (buf_.size() - used_ < need) flush();
      const size_t start = used_;
      uint8_t* dst = buf_.data() + start;
      store_record_header(dst, page, zero ? kRecordZero : 0);
      // The size is the header's run-time page_size on purpose: with the constant 4096 GCC inlines
      // `rep movsq`, which is ~25 % slower here than glibc's vector memcpy for a misaligned destination.
      if (!zero) std::memcpy(dst + kRecordHeaderBytes, src, header_.page_size);
      used_ = start + need;
      const size_t from = start & ~(kBlockBytes - 1), to = used_ & ~(kBlockBytes - 1);
      blocks(checksum_state_, buf_.data() + from, (to - from) / kBlockBytes);
    }

    uint64_t& word = seen_[page >> 6];
    const uint64_t bit = 1ull << (page & 63);
    stats_.unique_pages += (word & bit) == 0;
    word |= bit;
    ++stats_.pages_saved;
    stats_.zero_pages += zero;
    stats_.image_bytes += need;
  }
  stats_.duplicate_pages = stats_.pages_saved - stats_.unique_pages;
}

void ImageWriter::finish() {
  if (finished_) throw std::logic_error("ImageWriter: finish called twice");
  finished_ = true;
  const size_t whole = used_ & ~(kBlockBytes - 1);
  const uint64_t checksum =
      checksum_final(checksum_state_, buf_.data() + whole, used_ - whole, stats_.image_bytes);
  uint8_t trailer[kTrailerBytes];
  std::memcpy(trailer, kTrailerMagic, 8);
  store_u64(trailer + 8, stats_.pages_saved);
  store_u64(trailer + 16, checksum);
  // The trailer is not checksummed: append it raw, then write everything that is left.
  if (buf_.size() - used_ < kTrailerBytes) flush();
  std::memcpy(buf_.data() + used_, trailer, kTrailerBytes);
  used_ += kTrailerBytes;
  stats_.image_bytes += kTrailerBytes;
  sink_.write(buf_.data(), used_);
  used_ = 0;
  sink_.finish();
}

// ---------------------------------------------------------------------------------------------
// Reader

namespace {

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
  const uint64_t computed = checksum_bytes(p, trailer, false);
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

// ---------------------------------------------------------------------------------------------
// Verify

VerifyResult verify_image(const FlatImage& image, const uint8_t* reference, uint64_t reference_pages) {
  VerifyResult r;
  const uint64_t image_pages = image.header.region_pages;
  const uint64_t common = std::min(image_pages, reference_pages);
  int64_t first_mismatch = -1, first_missing = -1;
  std::string first_detail;
  for (uint64_t i = 0; i < common; ++i) {
    if (!image.present[i]) {
      ++r.missing_pages;
      if (first_missing < 0) first_missing = int64_t(i);
      continue;
    }
    const uint8_t* a = image.memory.data() + i * kPageSize;
    const uint8_t* b = reference + i * kPageSize;
    if (std::memcmp(a, b, kPageSize) == 0) continue;
    ++r.mismatched_pages;
    if (first_mismatch < 0) {
      first_mismatch = int64_t(i);
      size_t off = 0;
      while (a[off] == b[off]) ++off;
      first_detail = "page " + std::to_string(i) + " differs at byte " + std::to_string(kPageSize) + "*" +
                     std::to_string(i) + "+" + std::to_string(off) + " (image " + hex8(a[off]) + " ref " +
                     hex8(b[off]) + ")";
    }
  }
  // Pages the reference has but the image's region lacks count as missing.
  if (reference_pages > image_pages) {
    r.missing_pages += reference_pages - image_pages;
    if (first_missing < 0) first_missing = int64_t(image_pages);
  }
  r.pass = r.mismatched_pages == 0 && r.missing_pages == 0 && image_pages == reference_pages;
  if (r.pass) return r;

  if (first_mismatch >= 0 && first_missing >= 0)
    r.first_bad_page = std::min(first_mismatch, first_missing);
  else
    r.first_bad_page = first_mismatch >= 0 ? first_mismatch : first_missing;
  std::string msg;
  auto add = [&msg](const std::string& part) { msg += (msg.empty() ? "" : "; ") + part; };
  if (image_pages != reference_pages)
    add("region size differs: the image has " + std::to_string(image_pages) + " pages, the reference " +
        std::to_string(reference_pages));
  if (r.mismatched_pages) {
    add(first_detail);
    add(std::to_string(r.mismatched_pages) + (r.mismatched_pages == 1 ? " page differs" : " pages differ"));
  }
  if (r.missing_pages)
    add(std::to_string(r.missing_pages) + (r.missing_pages == 1 ? " page" : " pages") +
        " missing (no record), first page " + std::to_string(first_missing));
  r.message = msg;
  return r;
}

}  // namespace snap
