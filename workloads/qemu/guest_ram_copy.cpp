// GuestRamCopy: a flat copy of one RAM block rebuilt from a migration stream (see guest_ram_copy.h).
#include "workloads/qemu/guest_ram_copy.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "core/error.h"

namespace snap::qemu {

GuestRamCopy::~GuestRamCopy() {
  if (base_) munmap(base_, bytes_);
}

void GuestRamCopy::on_blocks(const std::vector<RamBlock>& blocks) {
  for (size_t i = 0; i < blocks.size(); ++i)
    if (blocks[i].name == name_) {
      index_ = int(i);
      bytes_ = blocks[i].bytes;
      // Anonymous memory: never-saved pages stay zero and cost nothing.
      void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) throw_errno("mmap for the copy of RAM block " + name_);
      base_ = static_cast<uint8_t*>(p);
      saves_.assign(pages(), 0);
    }
}

void GuestRamCopy::on_page(size_t block, uint64_t page_index, const uint8_t* data) {
  if (int(block) != index_) return;
  uint8_t* dst = base_ + page_index * kTargetPageSize;
  if (data)
    std::memcpy(dst, data, kTargetPageSize);
  else
    std::memset(dst, 0, kTargetPageSize);
  ++saves_[page_index];
}

void GuestRamCopy::compare_range(uint64_t off, const uint8_t* data, uint64_t len, uint64_t skip_from,
                                 uint64_t skip_to, RamCompare& r, std::string& first) const {
  for (uint64_t p = 0; p < len; p += kTargetPageSize) {
    const uint64_t addr = off + p;
    if (addr >= skip_from && addr < skip_to) continue;
    const uint64_t idx = addr / kTargetPageSize;
    ++r.pages_compared;
    if (saves_[idx] == 0) ++r.pages_never_saved;
    if (std::memcmp(data + p, base_ + addr, kTargetPageSize) != 0 && r.pages_differing++ == 0) {
      size_t b = 0;
      while (data[p + b] == base_[addr + b]) ++b;
      first = "page " + std::to_string(idx) + " differs at byte " + std::to_string(b) + " (saved " +
              std::to_string(saves_[idx]) + " times)";
    }
  }
}

void GuestRamCopy::conclude(RamCompare& r, const std::string& first) const {
  r.pass = r.pages_differing == 0 && r.pages_never_saved == 0;
  if (r.pages_differing)
    r.message = std::to_string(r.pages_differing) + " of " + std::to_string(r.pages_compared) + " pages differ; first: " + first;
  else if (r.pages_never_saved)
    r.message = std::to_string(r.pages_never_saved) + " pages never saved";
  else
    r.message = std::to_string(r.pages_compared) + " pages identical";
}

RamCompare GuestRamCopy::compare_with_memory(const uint8_t* ram, uint64_t bytes, uint64_t skip_from,
                                             uint64_t skip_to) const {
  RamCompare r;
  if (!base_) {
    r.message = "the stream has no RAM block '" + name_ + "'";
    return r;
  }
  if (bytes != bytes_) {
    r.message = "guest RAM of " + std::to_string(bytes) + " bytes, the stream's block has " + std::to_string(bytes_);
    return r;
  }
  std::string first;
  compare_range(0, ram, bytes, skip_from, skip_to, r, first);
  conclude(r, first);
  return r;
}

RamCompare GuestRamCopy::compare_with_dump(const std::string& path, uint64_t skip_from, uint64_t skip_to) const {
  RamCompare r;
  if (!base_) {
    r.message = "the stream has no RAM block '" + name_ + "'";
    return r;
  }
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    r.message = "cannot open the memory dump " + path + ": " + std::strerror(errno);
    return r;
  }
  std::vector<uint8_t> buf(1 << 20);
  std::string first;
  for (uint64_t off = 0; off < bytes_;) {
    const size_t want = size_t(std::min<uint64_t>(buf.size(), bytes_ - off));
    size_t got = 0;
    while (got < want) {
      const ssize_t n = pread(fd, buf.data() + got, want - got, off_t(off + got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += size_t(n);
    }
    if (got < want) {
      close(fd);
      r.message = "memory dump " + path + " ends at byte " + std::to_string(off + got) + " of " + std::to_string(bytes_);
      return r;
    }
    compare_range(off, buf.data(), want, skip_from, skip_to, r, first);
    off += want;
  }
  close(fd);
  conclude(r, first);
  return r;
}

}  // namespace snap::qemu
