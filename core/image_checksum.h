// The image checksum's kernels: four CRC-32C lanes (SSE4.2 or table-driven) and the fused copy+checksum.
#pragma once
#include <cstddef>
#include <cstdint>

namespace snap::image_detail {

// The checksum consumes 32-byte blocks (four 8-byte words, one per lane), aligned to the stream start.
constexpr size_t kBlockBytes = 32;

// Feeds `nblocks` whole blocks into the four lanes.
using BlocksFn = void (*)(uint64_t lanes[4], const uint8_t* p, size_t nblocks);
// Copies `nblocks` blocks from src to dst, feeding each to the lanes as it goes; returns the OR of
// every word copied (0 = all zero).
using CopyBlocksFn = uint64_t (*)(uint64_t lanes[4], uint8_t* dst, const uint8_t* src, size_t nblocks);

// The fastest block kernel this CPU runs (or the table-driven one when forced, for tests).
BlocksFn pick_blocks_fn(bool force_portable);
// The fused copy when the CPU has the crc32 instruction, else null (the table-driven CRC would be
// far slower than a copy, so the writer then scans, copies and checksums in three steps).
CopyBlocksFn pick_copy_blocks_fn();

void checksum_init(uint64_t lanes[4]);
// Feeds the last partial block (< 32 bytes) and folds the lanes together with the total length.
uint64_t checksum_final(const uint64_t lanes[4], const uint8_t* tail, size_t tail_len, uint64_t total_len);
// The checksum of a whole byte string (the reader's, and a test hook).
uint64_t checksum(const uint8_t* p, size_t n, bool force_portable);

}  // namespace snap::image_detail
