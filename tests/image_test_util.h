// Test helpers for the image reader: images built with ImageWriter, hand-made headers, and re-sealing
// an edited image (new checksum and record count) so the reader gets past the checksum.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/image.h"
#include "core/image_checksum.h"
#include "core/image_format.h"
#include "core/sink.h"
#include "core/units.h"

namespace snaptest {

inline void put_u64(std::vector<uint8_t>& b, size_t off, uint64_t v) { std::memcpy(&b[off], &v, 8); }
inline void put_u32(std::vector<uint8_t>& b, size_t off, uint32_t v) { std::memcpy(&b[off], &v, 4); }
inline void put_u16(std::vector<uint8_t>& b, size_t off, uint16_t v) { std::memcpy(&b[off], &v, 2); }

// Rewrites the last 24 bytes as a trailer for everything before them: `records` and the checksum.
inline void reseal(std::vector<uint8_t>& img, uint64_t records) {
  using namespace snap::image_detail;
  if (img.size() < kTrailerBytes) return;
  const size_t t = img.size() - kTrailerBytes;
  std::memcpy(&img[t], kTrailerMagic, 8);
  put_u64(img, t + 8, records);
  put_u64(img, t + 16, checksum(img.data(), t, false));
}

// An image with a header saying `region_pages` and no record at all: valid, and every page missing.
inline std::vector<uint8_t> header_only_image(uint64_t region_pages, const std::string& strategy = "stop-copy") {
  using namespace snap::image_detail;
  std::vector<uint8_t> b(kHeaderFixedBytes + strategy.size() + kTrailerBytes, 0);
  std::memcpy(b.data(), kHeaderMagic, 8);
  put_u32(b, 8, snap::kImageVersion);
  put_u32(b, 12, uint32_t(snap::kPageSize));
  put_u64(b, 16, region_pages);
  put_u32(b, 24, 0);
  put_u16(b, 28, uint16_t(strategy.size()));
  std::memcpy(&b[kHeaderFixedBytes], strategy.data(), strategy.size());
  reseal(b, 0);
  return b;
}

// An image written by ImageWriter: for each entry of `pages`, a record of that page (content from
// `seed`, all zero when the entry is negative: -1 - index).
inline std::vector<uint8_t> written_image(uint64_t region_pages, const std::vector<long>& pages, uint64_t seed = 1) {
  snap::SinkOptions o;
  o.spec = "memory";
  auto sink = snap::make_sink(o);
  snap::ImageWriter w(*sink, {uint32_t(snap::kPageSize), region_pages, snap::ConsistencyPoint::kStart, "stop-copy"});
  std::vector<uint8_t> page(snap::kPageSize);
  for (long p : pages) {
    const bool zero = p < 0;
    const uint64_t index = zero ? uint64_t(-1 - p) : uint64_t(p);
    for (size_t i = 0; i < page.size(); ++i) page[i] = zero ? 0 : uint8_t((index * 131 + i * 7 + seed) | 1);
    w.save_page(index, page.data());
  }
  w.finish();
  return sink->read_back();
}

}  // namespace snaptest
