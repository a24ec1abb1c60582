// The same-run calibration: resident pages of the region saved into an uncapped null sink, timed.
#include "harness/calibration.h"

#include <sys/mman.h>

#include <vector>

#include "core/clock.h"
#include "core/error.h"
#include "core/image.h"
#include "core/sink.h"

namespace snap {

double calibrate_save_rate(const Region& region, uint64_t max_bytes) {
  std::vector<unsigned char> resident(region.pages());
  if (mincore(region.base(), region.bytes(), resident.data()) != 0) throw_errno("mincore of the region (calibration)");
  std::vector<size_t> pages;
  const size_t max_pages = size_t(max_bytes / kPageSize);
  for (size_t i = 0; i < resident.size() && pages.size() < max_pages; ++i)
    if (resident[i] & 1) pages.push_back(i);
  if (pages.empty()) return 0;

  SinkOptions opts;  // null, no bandwidth cap: the cap is a setting of the run, not the machine's speed
  std::unique_ptr<Sink> sink = make_sink(opts);
  ImageHeader header;
  header.region_pages = region.pages();
  header.strategy = "calibration";
  const uint64_t t0 = now_ns();
  ImageWriter writer(*sink, header);
  for (size_t i : pages) writer.save_page(i, region.page(i));
  writer.finish();
  const uint64_t ns = now_ns() - t0;
  return ns ? double(pages.size() * kPageSize) / ns_to_s(ns) : 0;
}

}  // namespace snap
