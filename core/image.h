// The page image format: writer (strategies save pages into a sink) and reader (flatten, verify, info).
//
// Layout (all integers little-endian):
//   header  : magic "SNAPIMG1" (8) | version u32 | page_size u32 | region_pages u64 |
//             consistency u32 (0 start, 1 end) | strategy name length u16 | reserved u16 |
//             strategy name bytes (unpadded)
//   records : page_index u64 | flags u32 | reserved u32 | 4096 data bytes unless flags & kZero
//   trailer : magic "SNAPEND1" (8) | record_count u64 | checksum u64
// The checksum covers every byte from the header's first byte to the last record's last byte.
// A later record for a page supersedes an earlier one.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/sink.h"

namespace snap {

constexpr uint32_t kImageVersion = 1;
constexpr uint32_t kRecordZero = 1u << 0;

enum class ConsistencyPoint : uint32_t { kStart = 0, kEnd = 1 };

struct ImageHeader {
  uint32_t page_size = 4096;
  uint64_t region_pages = 0;
  ConsistencyPoint consistency = ConsistencyPoint::kStart;
  std::string strategy;
};

// Counts the harness reports; the writer keeps them as it goes.
struct ImageStats {
  uint64_t image_bytes = 0;
  uint64_t pages_saved = 0;      // records written
  uint64_t unique_pages = 0;     // distinct page indices written
  uint64_t duplicate_pages = 0;  // pages_saved - unique_pages
  uint64_t zero_pages = 0;       // records written with the zero flag
};

// Streams records to a sink with its own buffer. Not thread-safe: one saver at a time.
class ImageWriter {
 public:
  ImageWriter(Sink& sink, const ImageHeader& header);
  ~ImageWriter();
  ImageWriter(const ImageWriter&) = delete;
  ImageWriter& operator=(const ImageWriter&) = delete;
  // Makes sure the next writer's buffer is already backed by memory: the harness calls it before the
  // timed phase, so a strategy's writer does not pay 256 first touches (2.9 ms on the AMD machine,
  // whose first touch costs 11 us a page) inside the snapshot. A finished writer's buffer is kept for
  // the next one (one is kept, lock-free, so a forked child can take it too).
  static void warm_buffer();
  // Saves page `index` from `data` (4096 bytes); a page of zeros becomes a zero record.
  void save_page(uint64_t index, const void* data);
  // Saves `count` consecutive pages starting at `index` from `data`.
  void save_pages(uint64_t index, const void* data, size_t count);
  // Makes sure saving up to `pages` pages next does not write to the sink: flushes now if the buffer
  // lacks the room, after growing it if it could never hold that many. A saver calls it before it
  // claims a chunk, so that copying the chunk into the image is a copy into memory only.
  void reserve(size_t pages);
  size_t buffer_bytes() const { return buf_.size(); }
  // Writes the trailer, flushes the buffer and finishes the sink.
  void finish();
  const ImageStats& stats() const { return stats_; }

 private:
  void put(const void* p, size_t n);
  void flush();

  Sink& sink_;
  ImageHeader header_;
  std::vector<uint8_t> buf_;
  size_t used_ = 0;
  uint64_t checksum_state_[4];
  std::vector<uint64_t> seen_;  // bitmap of page indices written
  ImageStats stats_;
  bool finished_ = false;
};

// Parsed image: header plus the flattened region (later records win) and per-page presence.
struct FlatImage {
  ImageHeader header;
  ImageStats stats;
  std::vector<uint8_t> memory;   // region_pages * page_size
  std::vector<bool> present;     // page written at least once
};

// Bytes of memory this process can still take (MemAvailable, lowered by RLIMIT_AS when that is set):
// the default bound on what the reader allocates for a size the image's header states.
uint64_t available_memory_bytes();

// Parses and checks an image (magic, version, bounds, trailer, checksum). Throws ImageError with a
// message saying what is wrong (truncated at byte N, checksum mismatch, page index out of range...).
// The region is allocated only after the image checked out, and only when region_pages * page_size
// fits in `max_memory_bytes` (0: available_memory_bytes()); otherwise an ImageError says so.
FlatImage flatten_image(const std::vector<uint8_t>& bytes, uint64_t max_memory_bytes = 0);

// What `image info` reports: the same checks as flatten_image and the counts, without the region
// (memory is proportional to the number of records, never to region_pages).
struct ImageSummary {
  ImageHeader header;
  ImageStats stats;
  uint64_t missing_pages = 0;       // pages of the region that no record covers
  int64_t first_missing_page = -1;  // -1: none missing (the image is complete)
};
ImageSummary inspect_image(const std::vector<uint8_t>& bytes);

// Reads a whole file. A regular file larger than `max_bytes` (0: available_memory_bytes()) is refused
// before reading; anything else (a pipe, a device) is read up to `max_bytes` and then refused, so an
// endless input ends. Throws std::runtime_error naming the path (with strerror) when it cannot be read.
std::vector<uint8_t> read_file_bytes(const std::string& path, uint64_t max_bytes = 0);
// read_file_bytes for an image: also refuses, as soon as its first 8 bytes are in, a file that does
// not start with the image magic (so `image info /dev/zero` ends at once). Throws ImageError.
std::vector<uint8_t> read_image_file(const std::string& path, uint64_t max_bytes = 0);

// Result of comparing a flattened image with a reference copy of the region.
struct VerifyResult {
  bool pass = false;
  uint64_t mismatched_pages = 0;
  uint64_t missing_pages = 0;
  int64_t first_bad_page = -1;
  std::string message;  // empty on pass
};
VerifyResult verify_image(const FlatImage& image, const uint8_t* reference, uint64_t reference_pages);

}  // namespace snap
