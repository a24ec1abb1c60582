// The image format's constants and little-endian field helpers, shared by the writer, reader and checksum.
#pragma once
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

// The format is little-endian and the code stores integers with memcpy: keep that honest.
static_assert(std::endian::native == std::endian::little, "the image code assumes a little-endian host");

namespace snap::image_detail {

constexpr char kHeaderMagic[8] = {'S', 'N', 'A', 'P', 'I', 'M', 'G', '1'};
constexpr char kTrailerMagic[8] = {'S', 'N', 'A', 'P', 'E', 'N', 'D', '1'};
constexpr size_t kHeaderFixedBytes = 32;  // up to and including the reserved u16
constexpr size_t kRecordHeaderBytes = 16;
constexpr size_t kTrailerBytes = 24;

inline void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, sizeof v); }
inline void store_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, sizeof v); }
inline void store_u64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, sizeof v); }
inline uint16_t load_u16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, sizeof v); return v; }
inline uint32_t load_u32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, sizeof v); return v; }
inline uint64_t load_u64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, sizeof v); return v; }

}  // namespace snap::image_detail
