// GuestRamCopy: the RAM block a migration stream describes, rebuilt page by page from the parsed
// records (the last record of a page wins), with how often each page was saved; compared byte for
// byte with a dump of the guest's memory (QMP pmemsave) to verify a QEMU image.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "workloads/qemu/migration_stream.h"

namespace snap::qemu {

struct RamCompare {
  bool pass = false;
  uint64_t pages_compared = 0;
  uint64_t pages_differing = 0;
  uint64_t pages_never_saved = 0;
  std::string message;  // the first difference, or what was compared
};

class GuestRamCopy final : public PageVisitor {
 public:
  explicit GuestRamCopy(std::string block = "pc.ram") : name_(std::move(block)) {}
  ~GuestRamCopy() override;
  GuestRamCopy(const GuestRamCopy&) = delete;
  GuestRamCopy& operator=(const GuestRamCopy&) = delete;

  void on_blocks(const std::vector<RamBlock>& blocks) override;
  void on_page(size_t block, uint64_t page_index, const uint8_t* data) override;

  bool found() const { return base_ != nullptr; }
  uint64_t bytes() const { return bytes_; }
  uint64_t pages() const { return bytes_ / kTargetPageSize; }
  const uint8_t* page(uint64_t index) const { return base_ + index * kTargetPageSize; }
  uint32_t saves(uint64_t index) const { return saves_[index]; }

  // Compares with `path`, a dump of guest-physical memory from address 0 covering this block
  // (pc.ram starts at guest-physical 0 below 4 GiB). Pages in [skip_from, skip_to) (byte offsets)
  // are left out: the legacy VGA/BIOS window 0xA0000-0xFFFFF reads through device mappings, not RAM.
  RamCompare compare_with_dump(const std::string& path, uint64_t skip_from = 0xA0000, uint64_t skip_to = 0x100000) const;
  // Compares with the block's memory itself (QemuVm::guest_ram with shared_ram), byte offsets
  // [skip_from, skip_to) left out.
  RamCompare compare_with_memory(const uint8_t* ram, uint64_t bytes, uint64_t skip_from = 0, uint64_t skip_to = 0) const;

 private:
  // Compares `len` bytes at block offset `off` with `data`, accumulating into `r`.
  void compare_range(uint64_t off, const uint8_t* data, uint64_t len, uint64_t skip_from, uint64_t skip_to,
                     RamCompare& r, std::string& first) const;
  void conclude(RamCompare& r, const std::string& first) const;

  std::string name_;
  int index_ = -1;
  uint8_t* base_ = nullptr;
  uint64_t bytes_ = 0;
  std::vector<uint32_t> saves_;
};

}  // namespace snap::qemu
