// uffd-wp's in-thread fault path (fault_wait=sigbus): with UFFD_FEATURE_SIGBUS a write to a
// protected page raises SIGBUS in the writer itself, whose handler saves the page and un-protects it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/region.h"
#include "strategies/uffd_wp/page_state.h"

namespace snap::uffd_wp {

// What the handlers did, summed over every writer (the counters are process-wide atomics).
struct SigbusCounters {
  uint64_t faults = 0;           // SIGBUS for a protected page of the region
  uint64_t copies = 0;           // pages a handler claimed, copied aside and un-protected
  uint64_t claimed_waits = 0;    // faults on a page someone else (the saver) had claimed: waited for its release
  uint64_t ring_full_waits = 0;  // faults that found the copy-aside ring full and waited for the saver
  uint64_t handler_ns = 0;       // time inside the handler, from its entry to its return
  uint64_t copy_ns = 0;          // of which the page's memcpy into the ring
  uint64_t unprotect_ns = 0;     // of which the one-page UFFDIO_WRITEPROTECT (mode 0), with or without a copy
  uint64_t wait_ns = 0;          // of which waiting (for a claimed chunk's release or a ring slot)
};

// Installs the SIGBUS handler for one snapshot and restores the previous disposition when
// destroyed. One at a time per process (signal dispositions are per process): a second one throws.
// The handler claims the faulting page in `claims` (exactly one of saver and handler saves a page),
// copies it into `ring`, un-protects it with a raw ioctl on `uffd_fd`, marks it in `released` and
// returns, so the store retries. A page the saver claimed is waited for until `released` has it;
// with `lazy` (release=lazy) one the saver already saved is only un-protected.
// A SIGBUS that is not a write to the region (a real bus error, or one sent with kill) goes to the
// previous disposition, which by default kills the process as it would have without the snapshot.
class SigbusFaultPath {
 public:
  SigbusFaultPath(int uffd_fd, const Region& region, ClaimBitmap& claims, ClaimBitmap& released, CopyAsideRing& ring,
                  LazyHandoff* lazy = nullptr);
  // Lets every handler still running or waiting return (the caller has already released the
  // region's protection), waits until no thread of the process has a SIGBUS pending for it, then
  // restores the previous disposition. Never throws.
  ~SigbusFaultPath();
  SigbusFaultPath(const SigbusFaultPath&) = delete;
  SigbusFaultPath& operator=(const SigbusFaultPath&) = delete;

  // Throws (on the saver's thread) when a handler's un-protect ioctl failed.
  void rethrow_if_failed() const;
  SigbusCounters counters() const;
};

// Empty when the kernel offers UFFD_FEATURE_SIGBUS, else the reason it cannot be used.
std::string sigbus_unsupported_reason();

}  // namespace snap::uffd_wp
