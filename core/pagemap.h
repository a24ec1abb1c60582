// /proc/self/pagemap: reading a range's entries, and the bits snapbench asks of them.
#pragma once
#include <unistd.h>

#include <cstddef>
#include <cstdint>

#include "core/units.h"

namespace snap {

constexpr uint64_t kPagemapPresent = uint64_t(1) << 63;
constexpr uint64_t kPagemapSwapped = uint64_t(1) << 62;
constexpr uint64_t kPagemapSoftDirty = uint64_t(1) << 55;
constexpr uint64_t kPagemapUffdWp = uint64_t(1) << 57;  // the PTE is userfaultfd write-protected

// A page with memory behind it (present or swapped out). One with neither in a private anonymous
// mapping was never touched, so it reads as zero, and reading it would fault it in.
inline bool pagemap_has_memory(uint64_t entry) { return (entry & (kPagemapPresent | kPagemapSwapped)) != 0; }

// Reads the entries of the `pages` pages from `base` into `out`, from a descriptor of
// /proc/self/pagemap (it reads the page tables of the process that opened it). False, with errno,
// on a short or failed read.
inline bool read_pagemap(int fd, const void* base, size_t pages, uint64_t* out) {
  const off_t at = off_t(reinterpret_cast<uintptr_t>(base) / kPageSize * sizeof(uint64_t));
  const ssize_t want = ssize_t(pages * sizeof(uint64_t));
  return ::pread(fd, out, size_t(want), at) == want;
}

}  // namespace snap
