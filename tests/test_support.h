// Helpers shared by the strategy and tracker tests: a small verified run spec, the page-table
// uffd-wp bit from /proc/self/pagemap, and the current SIGSEGV disposition.
#pragma once
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/units.h"
#include "harness/run.h"

namespace snaptest {

// A quick end-to-end run: 32 MiB, 2 idle writers, verified, image kept in memory.
inline snap::RunSpec verified_spec(const std::string& strategy) {
  snap::RunSpec s;
  s.strategy = strategy;
  s.mem_bytes = 32ull << 20;
  s.writers = 2;
  s.warmup_s = 0.05;
  s.verify = true;
  s.sink = "memory";
  return s;
}

constexpr uint64_t kPagemapUffdWp = uint64_t(1) << 57;  // pte is uffd write-protected

// The /proc/self/pagemap entries of [base, base + pages); throws if the file cannot be read.
inline std::vector<uint64_t> pagemap_entries(const void* base, size_t pages) {
  std::vector<uint64_t> entries(pages);
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open /proc/self/pagemap");
  const off_t offset = off_t(reinterpret_cast<uintptr_t>(base) / snap::kPageSize * sizeof(uint64_t));
  const ssize_t want = ssize_t(pages * sizeof(uint64_t));
  const ssize_t got = pread(fd, entries.data(), size_t(want), offset);
  close(fd);
  if (got != want) throw std::runtime_error("short read of /proc/self/pagemap");
  return entries;
}

// Pages of [base, base + pages) still write-protected by userfaultfd.
inline size_t pages_still_write_protected(const void* base, size_t pages) {
  size_t n = 0;
  for (uint64_t e : pagemap_entries(base, pages)) n += (e & kPagemapUffdWp) != 0;
  return n;
}

inline struct sigaction current_segv_action() {
  struct sigaction now {};
  sigaction(SIGSEGV, nullptr, &now);
  return now;
}

}  // namespace snaptest
