// The check a background snapshot can be given when no reference copy of its consistency point
// exists (QEMU takes that point internally): every 16-byte slot of a saved page holds either the
// page's content from set-up or a writer's stamp of this very page in the slot its sequence number
// selects, so a torn, misplaced or corrupted page is caught (a stale one is not).
#pragma once
#include <cstdint>
#include <string>

#include "core/region.h"

namespace snap::qemu {

// "" when page `index` (4 KiB at `page`) passes, else what is wrong with it. `initial` is the page's
// content at set-up (region_initial_page).
std::string check_page_stamps(const uint8_t* page, uint64_t index, const uint8_t* initial);

}  // namespace snap::qemu
