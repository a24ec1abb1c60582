// ImageWriter: the hot path of every strategy, streaming page records and the checksum into a sink.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core/image.h"
#include "core/image_checksum.h"
#include "core/image_format.h"
#include "core/region.h"
#include "core/units.h"

namespace snap {

using namespace image_detail;

namespace {

constexpr size_t kBufferBytes = 1 << 20;

// A record's header: page index, flags, reserved.
void store_record_header(uint8_t* p, uint64_t page, uint32_t flags) {
  store_u64(p, page);
  store_u32(p + 8, flags);
  store_u32(p + 12, 0);
}

// Copies n (< 32) bytes and returns whether any of them is non-zero, judged on the copy (the
// source may be changing; the checksum is computed on the copy too).
bool copy_small(uint8_t* dst, const uint8_t* src, size_t n) {
  std::memcpy(dst, src, n);
  uint8_t any = 0;
  for (size_t i = 0; i < n; ++i) any |= dst[i];
  return any != 0;
}

// The kept buffer (see ImageWriter::warm_buffer). An atomic pointer rather than a locked pool: a
// fork-cow child takes it after fork(), where a mutex another thread held would never be released.
std::atomic<std::vector<uint8_t>*> g_kept_buffer{nullptr};

std::vector<uint8_t> take_buffer() {
  std::vector<uint8_t>* kept = g_kept_buffer.exchange(nullptr);
  if (!kept) return std::vector<uint8_t>(kBufferBytes);  // zero-filled: touched here, not in the loop
  std::vector<uint8_t> out = std::move(*kept);
  delete kept;
  out.resize(kBufferBytes);
  return out;
}

void keep_buffer(std::vector<uint8_t>&& buf) {
  if (buf.capacity() < kBufferBytes) return;
  auto* kept = new std::vector<uint8_t>(std::move(buf));
  std::vector<uint8_t>* expected = nullptr;
  if (!g_kept_buffer.compare_exchange_strong(expected, kept)) delete kept;
}

}  // namespace

void ImageWriter::warm_buffer() { keep_buffer(take_buffer()); }

ImageWriter::~ImageWriter() { keep_buffer(std::move(buf_)); }

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
  buf_ = take_buffer();
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

}  // namespace snap
