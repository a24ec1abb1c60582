// uffd-wp's saver: claims, copies and un-protects one chunk (see release.h).
#include "strategies/uffd_wp/release.h"

#include <algorithm>
#include <cstring>

namespace snap::uffd_wp {

size_t save_chunk(const Region& region, Uffd& uffd, ChunkReleaser* releaser, ClaimBitmap& claims, Staging mode,
                  uint8_t* staging, std::vector<uint64_t>& won, size_t first, size_t last, ImageWriter& writer,
                  uint64_t& unprotect_ns, ClaimBitmap* released, LazyHandoff* lazy) {
  if (mode == Staging::kImage) writer.reserve(last - first);  // before any page is claimed
  // Claim word by word (one atomic per 64 pages); remember the won bits relative to `first`.
  std::fill(won.begin(), won.end(), 0);
  for (size_t p = first; p < last;) {
    const size_t lo = p % 64;
    const size_t width = std::min<size_t>(64 - lo, last - p);
    const uint64_t mask = (width == 64 ? ~0ull : ((1ull << width) - 1) << lo);
    for (uint64_t bits = claims.claim_mask(p / 64, mask); bits; bits &= bits - 1) {
      const size_t rel = (p - lo) + size_t(__builtin_ctzll(bits)) - first;
      won[rel / 64] |= 1ull << (rel % 64);
    }
    p += width;
  }
  // Calls fn(rel, count) for each run of won pages.
  const size_t n = last - first;
  auto for_each_run = [&won, n](auto&& fn) {
    for (size_t rel = 0; rel < n;) {
      if (!((won[rel / 64] >> (rel % 64)) & 1)) {
        ++rel;
        continue;
      }
      size_t end = rel + 1;
      while (end < n && ((won[end / 64] >> (end % 64)) & 1)) ++end;
      fn(rel, end - rel);
      rel = end;
    }
  };
  auto release = [&](size_t rel, size_t count) {
    if (releaser && releaser->try_push(first + rel, count)) return;
    const uint64_t t0 = now_ns();
    uffd.writeprotect(region.page(first + rel), count * kPageSize, false, true);
    unprotect_ns += now_ns() - t0;
    if (released) released->mark_range(first + rel, count);
  };
  // Un-protects every won run. When each page of the chunk that the saver did not win is already
  // un-protected (a faulting writer's page, saved and released by the fault path), one ioctl over
  // the whole chunk does it: re-releasing those pages changes nothing, while releasing run by run
  // costs an ioctl (and a TLB flush, an IPI to the writers' CPUs) per run, and under writes the
  // faulted pages cut a chunk into many runs (at 200 MiB/s over 1 GiB, ~15 runs per 64 pages). A
  // page claimed by the fault path but not yet released must stay protected: another writer could
  // change it before it is copied.
  auto release_won = [&] {
    bool whole = released != nullptr;
    for (size_t rel = 0; whole && rel < n; ++rel)
      whole = ((won[rel / 64] >> (rel % 64)) & 1) || released->test(first + rel);
    if (whole) {
      release(0, n);
    } else {
      for_each_run(release);
    }
  };
  // Lazy release: the copied runs are marked saved and stay protected, except the pages a writer is
  // already waiting on (they wanted them while this chunk was claimed), which only the saver can free.
  auto settle_lazily = [&](size_t rel, size_t count) {
    lazy->mark_saved(first + rel, count);
    lazy->for_each_wanted_run(first + rel, first + rel + count, [&](size_t page, size_t pages) {
      release(page - first, pages);
      lazy->count_saver_unprotects(pages);
    });
  };
  auto release_all_won = [&] { lazy ? for_each_run(settle_lazily) : release_won(); };
  size_t saved = 0;
  switch (mode) {
    case Staging::kImage:
      for_each_run([&](size_t rel, size_t count) {
        writer.save_pages(first + rel, region.page(first + rel), count);
        saved += count;
      });
      release_all_won();
      break;
    case Staging::kSeparate:
      for_each_run([&](size_t rel, size_t count) {
        std::memcpy(staging + rel * kPageSize, region.page(first + rel), count * kPageSize);
      });
      release_all_won();
      for_each_run([&](size_t rel, size_t count) {
        writer.save_pages(first + rel, staging + rel * kPageSize, count);
        saved += count;
      });
      break;
    case Staging::kNone:
      for_each_run([&](size_t rel, size_t count) {
        writer.save_pages(first + rel, region.page(first + rel), count);
        lazy ? settle_lazily(rel, count) : release(rel, count);
        saved += count;
      });
      break;
  }
  return saved;
}

}  // namespace snap::uffd_wp
