// prefault_write: backs a buffer with memory before it is timed (the kernel's populate, then a write
// from user space to every page).
#pragma once
#include <sys/mman.h>

#include <cstddef>
#include <cstdint>

#include "core/run_stop.h"
#include "core/units.h"

namespace snap {

// Populating is not always enough. On the AMD machine (a PVM guest: `pvm_no_zero_page=1` and free
// page reporting on its kernel command line) 1 GiB MAP_POPULATE'd in 0.13 s still took 1.1 s at its
// first memcpy, and 0.06 s at the second; a one-byte write per page first made the memcpy 0.09 s. So
// after the populate each page is written once from user space (its value kept).
inline void prefault_write(void* p, size_t bytes) {
  if (bytes == 0) return;
  madvise(p, bytes, MADV_POPULATE_WRITE);  // best effort: before Linux 5.14 the loop does it all
  volatile uint8_t* b = static_cast<volatile uint8_t*>(p);
  // A stop request (SIGTERM, the run's time limit) ends a long one (2.9 s per GiB on the AMD machine)
  // in a moment; the caller's mapping is unmapped by its owner as the exception unwinds.
  for (size_t off = 0; off < bytes; off += kPageSize) {
    if ((off >> 20) << 20 == off) throw_if_run_stopped();  // every 1 MiB
    b[off] = b[off];
  }
}

}  // namespace snap
