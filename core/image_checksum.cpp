// The image checksum's kernels: CRC-32C lanes (SSE4.2 and table-driven), the writer's fused copy, the fold.
#include "core/image_checksum.h"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#include "core/image_format.h"

namespace snap::image_detail {

namespace {

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

// MurmurHash3's 64-bit finaliser: a bijection that mixes every input bit into every output bit.
uint64_t fmix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

}  // namespace

CopyBlocksFn pick_copy_blocks_fn() {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("sse4.2")) return copy_blocks_sse42;
#endif
  return nullptr;
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

uint64_t checksum(const uint8_t* p, size_t n, bool force_portable) {
  uint64_t lanes[4];
  checksum_init(lanes);
  const size_t nblocks = n / kBlockBytes;
  pick_blocks_fn(force_portable)(lanes, p, nblocks);
  return checksum_final(lanes, p + nblocks * kBlockBytes, n % kBlockBytes, n);
}

}  // namespace snap::image_detail
