// verify_image: compares a flattened image with a reference copy of the region, byte for byte.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/image.h"
#include "core/units.h"

namespace snap {

namespace {

std::string hex8(uint8_t v) {
  char b[8];
  std::snprintf(b, sizeof b, "0x%02x", v);
  return b;
}

}  // namespace

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
