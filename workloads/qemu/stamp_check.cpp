// check_page_stamps: slot-by-slot check of a saved page against its set-up content and the stamp
// layout of workloads/workload.h (stamp_offset: slot seq % 255 holds the seq, then the page index).
#include "workloads/qemu/stamp_check.h"

#include <cstring>

#include "core/units.h"
#include "workloads/workload.h"

namespace snap::qemu {

std::string check_page_stamps(const uint8_t* page, uint64_t index, const uint8_t* initial) {
  constexpr size_t kSlot = 16, kSlots = 255;
  for (size_t slot = 0; slot < kPageSize / kSlot; ++slot) {
    const uint8_t* s = page + slot * kSlot;
    if (std::memcmp(s, initial + slot * kSlot, kSlot) == 0) continue;
    uint64_t seq, idx;
    std::memcpy(&seq, s, 8);
    std::memcpy(&idx, s + 8, 8);
    if (slot < kSlots && idx == index && stamp_offset(seq) == slot * kSlot) continue;
    return "page " + std::to_string(index) + " slot " + std::to_string(slot) +
           (idx == index ? " holds a stamp whose sequence number belongs to another slot"
                         : " holds neither its set-up content nor a stamp of this page (index " +
                               std::to_string(idx) + ")");
  }
  return "";
}

}  // namespace snap::qemu
