// The image format: writer/reader round trips, the documented checksum, corruption and truncation, verify.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/image.h"
#include "core/sink.h"
#include "core/units.h"

using namespace snap;

namespace snap::image_detail {
// Test hook in core/image_checksum.cpp: the checksum of a byte string, optionally via the table-driven path.
uint64_t checksum(const uint8_t* p, size_t n, bool force_portable);
}  // namespace snap::image_detail

namespace {

constexpr size_t kHeaderFixed = 32;
constexpr size_t kTrailer = 24;

// Pages of pseudo-random non-zero content, distinct per (seed, page).
std::vector<uint8_t> random_pages(size_t pages, uint64_t seed) {
  std::vector<uint8_t> v(pages * kPageSize);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < v.size(); i += 8) {
    uint64_t w = rng() | 1;
    std::memcpy(&v[i], &w, 8);
  }
  return v;
}

std::unique_ptr<Sink> memory_sink() {
  SinkOptions o;
  o.spec = "memory";
  return make_sink(o);
}

uint64_t le64(const std::vector<uint8_t>& b, size_t off) {
  uint64_t v;
  std::memcpy(&v, &b[off], 8);
  return v;
}
void put_le64(std::vector<uint8_t>& b, size_t off, uint64_t v) { std::memcpy(&b[off], &v, 8); }
void put_le32(std::vector<uint8_t>& b, size_t off, uint32_t v) { std::memcpy(&b[off], &v, 4); }

// ---- an independent implementation of the checksum exactly as docs/image-format.md states it ----
uint32_t crc32c_bitwise(const std::vector<uint8_t>& bytes) {
  uint32_t crc = 0xFFFFFFFFu;
  for (uint8_t b : bytes) {
    crc ^= b;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}
uint64_t fmix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}
uint64_t documented_checksum(const uint8_t* p, size_t len) {
  std::vector<uint8_t> lane[4];
  for (size_t k = 0; k * 8 < len; ++k) {
    uint8_t word[8] = {};
    std::memcpy(word, p + k * 8, std::min<size_t>(8, len - k * 8));
    lane[k % 4].insert(lane[k % 4].end(), word, word + 8);
  }
  uint64_t c[4];
  for (int j = 0; j < 4; ++j) c[j] = crc32c_bitwise(lane[j]);
  const uint64_t a = c[0] | (c[1] << 32), b = c[2] | (c[3] << 32);
  return fmix64(a ^ len) ^ fmix64(b ^ 0x9E3779B97F4A7C15ull);
}
// Re-seals an image after a deliberate edit, so the reader gets past the checksum to the check under test.
void reseal(std::vector<uint8_t>& img) {
  const size_t trailer = img.size() - kTrailer;
  put_le64(img, trailer + 16, documented_checksum(img.data(), trailer));
}

std::string flatten_error(const std::vector<uint8_t>& bytes) {
  try {
    flatten_image(bytes);
  } catch (const ImageError& e) {
    return e.what();
  }
  return "";
}

// A small image: pages 0 and 2 with data, page 1 zero, page 3 never written; strategy "stop-copy".
std::vector<uint8_t> small_image() {
  auto sink = memory_sink();
  auto data = random_pages(4, 7);
  std::vector<uint8_t> zero(kPageSize, 0);
  ImageWriter w(*sink, {kPageSize, 4, ConsistencyPoint::kStart, "stop-copy"});
  w.save_page(0, data.data());
  w.save_page(1, zero.data());
  w.save_page(2, data.data() + 2 * kPageSize);
  w.finish();
  return sink->read_back();
}

}  // namespace

// Table over the strategy name length: it shifts every record's alignment relative to the checksum's
// 8-byte words, so each phase of the writer's block bookkeeping is exercised.
TEST(ImageFormat, RoundTripZerosAndLaterRecordsWin) {
  for (size_t name_len = 0; name_len <= 9; ++name_len) {
    SCOPED_TRACE("strategy name length " + std::to_string(name_len));
    const size_t pages = 64;
    auto first = random_pages(pages, 1 + name_len);
    for (size_t z : {4, 5, 6, 40}) std::memset(&first[z * kPageSize], 0, kPageSize);
    auto second = random_pages(pages, 100 + name_len);

    auto sink = memory_sink();
    const std::string name(name_len, 'x');
    ImageWriter w(*sink, {kPageSize, pages, ConsistencyPoint::kEnd, name});
    w.save_pages(0, first.data(), 32);
    w.save_pages(32, first.data() + 32 * kPageSize, 32);
    std::vector<uint8_t> expected = first;
    // Data supersedes data, zero supersedes data, data supersedes zero.
    w.save_page(3, second.data() + 3 * kPageSize);
    std::memcpy(&expected[3 * kPageSize], &second[3 * kPageSize], kPageSize);
    std::vector<uint8_t> zero(kPageSize, 0);
    w.save_page(10, zero.data());
    std::memset(&expected[10 * kPageSize], 0, kPageSize);
    w.save_page(40, second.data() + 40 * kPageSize);
    std::memcpy(&expected[40 * kPageSize], &second[40 * kPageSize], kPageSize);
    w.finish();

    const ImageStats& s = w.stats();
    EXPECT_EQ(s.pages_saved, 67u);
    EXPECT_EQ(s.unique_pages, 64u);
    EXPECT_EQ(s.duplicate_pages, 3u);
    EXPECT_EQ(s.zero_pages, 5u);
    EXPECT_EQ(s.image_bytes, sink->bytes_written());
    EXPECT_EQ(s.image_bytes, kHeaderFixed + name_len + (67 - 5) * (16 + kPageSize) + 5 * 16 + kTrailer);

    FlatImage flat = flatten_image(sink->read_back());
    EXPECT_EQ(flat.header.strategy, name);
    EXPECT_EQ(flat.header.region_pages, pages);
    EXPECT_EQ(flat.header.page_size, kPageSize);
    EXPECT_EQ(flat.header.consistency, ConsistencyPoint::kEnd);
    ASSERT_EQ(flat.memory.size(), expected.size());
    EXPECT_TRUE(flat.memory == expected);
    EXPECT_EQ(std::count(flat.present.begin(), flat.present.end(), true), 64);
    EXPECT_EQ(flat.stats.pages_saved, s.pages_saved);
    EXPECT_EQ(flat.stats.unique_pages, s.unique_pages);
    EXPECT_EQ(flat.stats.duplicate_pages, s.duplicate_pages);
    EXPECT_EQ(flat.stats.zero_pages, s.zero_pages);
    EXPECT_EQ(flat.stats.image_bytes, s.image_bytes);
  }
}

// More than the writer's 1 MiB buffer, page by page and in batches, so flushes land mid-record.
TEST(ImageFormat, RoundTripAcrossBufferFlushes) {
  const size_t pages = 700;
  auto a = random_pages(pages, 11), b = random_pages(pages, 12);
  auto sink = memory_sink();
  ImageWriter w(*sink, {kPageSize, pages, ConsistencyPoint::kStart, "precopy"});
  for (size_t i = 0; i < pages; ++i) w.save_page(i, a.data() + i * kPageSize);
  w.save_pages(100, b.data() + 100 * kPageSize, 500);
  w.finish();
  std::vector<uint8_t> expected = a;
  std::memcpy(&expected[100 * kPageSize], &b[100 * kPageSize], 500 * kPageSize);
  FlatImage flat = flatten_image(sink->read_back());
  EXPECT_TRUE(flat.memory == expected);
  EXPECT_EQ(flat.stats.duplicate_pages, 500u);
  EXPECT_EQ(w.stats().duplicate_pages, 500u);
}

// reserve(n) promises that saving n pages next is a copy into memory: the sink sees no write until
// the next reservation or finish, even for more pages than the default buffer holds.
TEST(ImageFormat, ReserveKeepsTheNextPagesOffTheSink) {
  const size_t pages = 900;  // > 1 MiB of records
  auto data = random_pages(pages, 21);
  auto sink = memory_sink();
  ImageWriter w(*sink, {kPageSize, pages, ConsistencyPoint::kStart, "uffd-wp"});
  for (size_t first : {size_t(0), size_t(10), size_t(310)}) {
    const size_t n = first == 310 ? pages - first : 300;
    w.reserve(n);
    const uint64_t before = sink->bytes_written();
    w.save_pages(first, data.data() + first * kPageSize, n);
    EXPECT_EQ(sink->bytes_written(), before) << "pages from " << first;
    EXPECT_GE(w.buffer_bytes(), n * (16 + kPageSize));
  }
  w.finish();
  std::vector<uint8_t> expected = data;
  FlatImage flat = flatten_image(sink->read_back());
  EXPECT_TRUE(flat.memory == expected);
}

TEST(ImageFormat, HeaderBytesAreAsDocumented) {
  auto img = small_image();
  EXPECT_EQ(std::string(img.begin(), img.begin() + 8), "SNAPIMG1");
  uint32_t version, page_size, consistency;
  uint16_t name_len;
  std::memcpy(&version, &img[8], 4);
  std::memcpy(&page_size, &img[12], 4);
  std::memcpy(&consistency, &img[24], 4);
  std::memcpy(&name_len, &img[28], 2);
  EXPECT_EQ(version, kImageVersion);
  EXPECT_EQ(page_size, 4096u);
  EXPECT_EQ(le64(img, 16), 4u);
  EXPECT_EQ(consistency, 0u);
  EXPECT_EQ(name_len, 9u);
  EXPECT_EQ(std::string(img.begin() + 32, img.begin() + 41), "stop-copy");
  // Record 0: page 0 with data; record 1: page 1, zero flag, no data.
  EXPECT_EQ(le64(img, 41), 0u);
  EXPECT_EQ(le64(img, 41 + 16 + 4096), 1u);
  uint32_t flags;
  std::memcpy(&flags, &img[41 + 16 + 4096 + 8], 4);
  EXPECT_EQ(flags, kRecordZero);
  const size_t trailer = img.size() - kTrailer;
  EXPECT_EQ(std::string(img.begin() + trailer, img.begin() + trailer + 8), "SNAPEND1");
  EXPECT_EQ(le64(img, trailer + 8), 3u);
}

TEST(ImageFormat, ChecksumMatchesTheDocumentedFormula) {
  const std::string check = "123456789";  // the CRC-32C check value the format page quotes
  EXPECT_EQ(crc32c_bitwise(std::vector<uint8_t>(check.begin(), check.end())), 0xE3069283u);
  for (int pages : {0, 1, 3, 300}) {
    auto sink = memory_sink();
    auto data = random_pages(size_t(std::max(pages, 1)), 5);
    ImageWriter w(*sink, {kPageSize, 300, ConsistencyPoint::kStart, "uffd-wp"});
    if (pages) w.save_pages(0, data.data(), size_t(pages));
    w.finish();
    auto img = sink->read_back();
    const size_t trailer = img.size() - kTrailer;
    EXPECT_EQ(le64(img, trailer + 16), documented_checksum(img.data(), trailer)) << pages << " pages";
  }
}

// The writer copies, checksums and detects zero pages in one pass, deciding "zero" only at the end
// of the page: a single non-zero byte anywhere (first, last, in the block the record header shares,
// in the unaligned tail) must keep the data, and an all-zero page must become a bare zero record
// with the checksum as if its copy never happened. Every strategy-name length shifts the records'
// alignment against the checksum's 32-byte blocks.
TEST(ImageFormat, SingleNonZeroBytesAreKeptAtEveryAlignment) {
  const std::vector<size_t> positions = {0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 2047, 4064, 4079, 4080, 4088, 4095};
  const size_t pages = positions.size() + 2;
  std::vector<uint8_t> data(pages * kPageSize, 0);  // page 0 all zero, then one byte per page, then random
  for (size_t i = 0; i < positions.size(); ++i) data[(i + 1) * kPageSize + positions[i]] = uint8_t(0x80 >> (i % 8));
  auto random = random_pages(1, 77);
  std::memcpy(&data[(pages - 1) * kPageSize], random.data(), kPageSize);
  for (size_t name_len = 0; name_len < 34; ++name_len) {
    SCOPED_TRACE("strategy name length " + std::to_string(name_len));
    auto sink = memory_sink();
    ImageWriter w(*sink, {kPageSize, pages, ConsistencyPoint::kStart, std::string(name_len, 'n')});
    w.save_pages(0, data.data(), pages);
    w.save_page(0, data.data());  // a zero record after a data record, then data after zero
    w.save_page(1, data.data() + kPageSize);
    w.finish();
    EXPECT_EQ(w.stats().zero_pages, 2u);
    auto img = sink->read_back();
    const size_t trailer = img.size() - kTrailer;
    EXPECT_EQ(le64(img, trailer + 16), documented_checksum(img.data(), trailer));
    FlatImage flat = flatten_image(img);
    EXPECT_TRUE(flat.memory == data);
    EXPECT_EQ(flat.stats.zero_pages, 2u);
    EXPECT_EQ(img.size(), kHeaderFixed + name_len + (pages + 2 - 2) * (16 + kPageSize) + 2 * 16 + kTrailer);
  }
}

TEST(ImageFormat, HardwareAndPortableChecksumsAgree) {
  auto bytes = random_pages(3, 9);
  for (size_t len : {size_t(0), size_t(1), size_t(7), size_t(8), size_t(31), size_t(32), size_t(33), size_t(100),
                     size_t(4111), bytes.size()}) {
    const uint64_t hw = image_detail::checksum(bytes.data(), len, false);
    EXPECT_EQ(hw, image_detail::checksum(bytes.data(), len, true)) << len;
    EXPECT_EQ(hw, documented_checksum(bytes.data(), len)) << len;
  }
}

// A page of one repeated word replaced by another repeated word gives equal CRC deltas in all four
// lanes; the non-linear fold must still notice.
TEST(ImageFormat, ChecksumCatchesUniformPatternSwap) {
  std::vector<uint8_t> a(4096), b(4096);
  for (size_t i = 0; i < a.size(); i += 8) {
    put_le64(a, i, 0x1111111111111111ull);
    put_le64(b, i, 0x2222222222222222ull);
  }
  EXPECT_NE(image_detail::checksum(a.data(), a.size(), false), image_detail::checksum(b.data(), b.size(), false));
}

TEST(ImageFormat, EveryTruncationIsRejected) {
  const auto img = small_image();
  ASSERT_NO_THROW(flatten_image(img));
  for (size_t len = 0; len < img.size(); ++len) {
    std::vector<uint8_t> cut(img.begin(), img.begin() + len);
    const std::string err = flatten_error(cut);
    EXPECT_NE(err.find("truncated"), std::string::npos) << "length " << len << ": '" << err << "'";
  }
}

TEST(ImageFormat, EveryFlippedByteIsRejected) {
  const auto img = small_image();
  for (size_t pos = 0; pos < img.size(); ++pos) {
    for (uint8_t mask : {uint8_t(0x01), uint8_t(0x80), uint8_t(0xFF)}) {
      auto bad = img;
      bad[pos] ^= mask;
      EXPECT_THROW(flatten_image(bad), ImageError) << "byte " << pos << " mask " << int(mask);
    }
  }
}

TEST(ImageFormat, ErrorsSayWhatIsWrong) {
  const auto good = small_image();
  const size_t trailer = good.size() - kTrailer;
  struct Case {
    const char* what;
    std::function<void(std::vector<uint8_t>&)> edit;
    const char* expect;
  } cases[] = {
      {"bad magic", [](auto& b) { b[0] = 'X'; }, "bad magic"},
      {"version", [](auto& b) { put_le32(b, 8, 2); reseal(b); }, "unsupported image version 2"},
      {"page size", [](auto& b) { put_le32(b, 12, 8192); reseal(b); }, "unsupported page size 8192"},
      // Region shrunk to 2 pages: record 2 (page 2) is now out of range.
      {"index range", [](auto& b) { put_le64(b, 16, 2); reseal(b); }, "page index 2 out of range (region has 2 pages)"},
      {"record count", [trailer](auto& b) { put_le64(b, trailer + 8, 4); }, "record count mismatch: the trailer says 4, the image holds 3"},
      {"checksum", [](auto& b) { b[41 + 16 + 100] ^= 1; }, "checksum mismatch"},
      {"trailing garbage", [](auto& b) { b.insert(b.end(), {1, 2, 3}); }, "trailing garbage: 3 bytes"},
      {"unknown flags", [](auto& b) { put_le32(b, 41 + 8, 6); reseal(b); }, "record 0 at byte 41: unknown flags"},
      // Intact but unflattenable: refused with an ImageError, not a crash or std::bad_alloc.
      {"huge region", [](auto& b) { put_le64(b, 16, 1ull << 50); reseal(b); }, "cannot flatten the image: its region of 1125899906842624 pages needs"},
      {"truncated record", [](auto& b) { b.resize(41 + 16 + 10); }, "record 0 at byte 41 (page 0) needs 4096 data bytes"},
  };
  for (const auto& c : cases) {
    auto b = good;
    c.edit(b);
    const std::string err = flatten_error(b);
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.what << ": got '" << err << "'";
  }
}

TEST(ImageFormat, WriterRejectsOutOfRangePages) {
  auto sink = memory_sink();
  auto data = random_pages(2, 3);
  ImageWriter w(*sink, {kPageSize, 8, ConsistencyPoint::kStart, "x"});
  EXPECT_THROW(w.save_page(8, data.data()), std::logic_error);
  EXPECT_THROW(w.save_pages(7, data.data(), 2), std::logic_error);
  EXPECT_THROW(w.save_pages(~0ull, data.data(), 2), std::logic_error);
  EXPECT_NO_THROW(w.save_pages(6, data.data(), 2));
  EXPECT_EQ(w.stats().pages_saved, 2u);
}

// The sink's SinkError reaches the strategy (from save_pages when the buffer flushes, or from
// finish), and a writer abandoned after it can be destroyed.
TEST(ImageFormat, WriterPropagatesSinkErrors) {
  auto data = random_pages(400, 4);  // 1.6 MB: more than the 1 MiB buffer
  for (const char* spec : {"fail:1000", "fail:1M", "fail:1600000"}) {
    SinkOptions o;
    o.spec = spec;
    auto sink = make_sink(o);
    auto w = std::make_unique<ImageWriter>(*sink, ImageHeader{kPageSize, 400, ConsistencyPoint::kStart, "x"});
    EXPECT_THROW(
        {
          w->save_pages(0, data.data(), 400);
          w->finish();
        },
        SinkError)
        << spec;
    w.reset();
  }
}

TEST(ImageFormat, VerifyPassesAndNamesTheFirstBadByte) {
  const size_t pages = 16;
  auto ref = random_pages(pages, 21);
  std::memset(&ref[2 * kPageSize], 0, kPageSize);
  auto sink = memory_sink();
  ImageWriter w(*sink, {kPageSize, pages, ConsistencyPoint::kStart, "x"});
  w.save_pages(0, ref.data(), pages);
  w.finish();
  FlatImage flat = flatten_image(sink->read_back());

  VerifyResult ok = verify_image(flat, ref.data(), pages);
  EXPECT_TRUE(ok.pass);
  EXPECT_EQ(ok.mismatched_pages, 0u);
  EXPECT_EQ(ok.first_bad_page, -1);
  EXPECT_TRUE(ok.message.empty());

  auto corrupted = ref;
  corrupted[5 * kPageSize + 16] ^= 0xFF;
  VerifyResult bad = verify_image(flat, corrupted.data(), pages);
  EXPECT_FALSE(bad.pass);
  EXPECT_EQ(bad.mismatched_pages, 1u);
  EXPECT_EQ(bad.missing_pages, 0u);
  EXPECT_EQ(bad.first_bad_page, 5);
  char expect[128];
  std::snprintf(expect, sizeof expect, "page 5 differs at byte 4096*5+16 (image 0x%02x ref 0x%02x); 1 page differs",
                ref[5 * kPageSize + 16], corrupted[5 * kPageSize + 16]);
  EXPECT_EQ(bad.message, expect);
}

TEST(ImageFormat, VerifyCountsMissingPages) {
  const size_t pages = 8;
  auto ref = random_pages(pages, 22);
  std::memset(&ref[6 * kPageSize], 0, kPageSize);
  auto sink = memory_sink();
  ImageWriter w(*sink, {kPageSize, pages, ConsistencyPoint::kStart, "x"});
  w.save_pages(0, ref.data(), 3);
  w.save_pages(4, ref.data() + 4 * kPageSize, 2);  // pages 3, 6, 7 never saved (6 is zero: still missing)
  w.finish();
  VerifyResult v = verify_image(flatten_image(sink->read_back()), ref.data(), pages);
  EXPECT_FALSE(v.pass);
  EXPECT_EQ(v.missing_pages, 3u);
  EXPECT_EQ(v.mismatched_pages, 0u);
  EXPECT_EQ(v.first_bad_page, 3);
  EXPECT_NE(v.message.find("3 pages missing"), std::string::npos) << v.message;

  VerifyResult sized = verify_image(flatten_image(sink->read_back()), ref.data(), pages - 1);
  EXPECT_FALSE(sized.pass);
  EXPECT_NE(sized.message.find("region size differs"), std::string::npos) << sized.message;
}

TEST(ImageFormat, ReadFileBytesNamesThePath) {
  try {
    read_file_bytes("/nonexistent-dir-xyz/image.snap");
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("/nonexistent-dir-xyz/image.snap"), std::string::npos) << msg;
    EXPECT_NE(msg.find("No such file"), std::string::npos) << msg;
  }
}

// precopy saves pages while writers change them. Whatever bytes a record ends up with, the
// checksum must be of those bytes: the writer may never read a word once for the copy and again for
// the checksum (a compiler is free to do so unless told not to). A thread rewrites every word of the
// source pages while they are saved over and over; the image must still pass its checksum.
TEST(ImageFormat, PagesChangingDuringTheSaveStillChecksumRight) {
  constexpr size_t kPages = 16;
  std::vector<uint64_t> live(kPages * kPageSize / 8, 1);
  std::atomic<bool> stop{false};
  std::thread scribbler([&] {
    for (uint64_t v = 2; !stop.load(std::memory_order_relaxed); ++v)
      for (size_t i = 0; i < live.size(); ++i) reinterpret_cast<volatile uint64_t*>(live.data())[i] = v * 0x9E3779B97F4A7C15ull;
  });
  constexpr int kRounds = 400;
  auto sink = memory_sink();
  {
    ImageWriter w(*sink, {kPageSize, kPages, ConsistencyPoint::kEnd, "precopy"});
    for (int round = 0; round < kRounds; ++round) w.save_pages(0, live.data(), kPages);
    w.finish();
  }
  stop = true;
  scribbler.join();
  try {
    FlatImage flat = flatten_image(sink->read_back());
    EXPECT_EQ(flat.stats.pages_saved, kPages * kRounds);
  } catch (const ImageError& e) {
    ADD_FAILURE() << e.what();
  }
}
