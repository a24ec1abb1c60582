// Reads pages of an image through its index into a buffer: the one place the restore strategies turn
// page numbers into file reads (runs of records adjacent in the file become one pread).
#pragma once
#include <cstdint>
#include <vector>

#include "restore/restore.h"

namespace snap {

class PageSource {
 public:
  PageSource(int fd, const ImageIndex& index, RestoreMetrics& metrics) : fd_(fd), index_(index), metrics_(metrics) {}
  // Fills dst with pages [first, first + count): data pages from the file, zero and absent pages as
  // zeros. Throws runtime_error on a read error or a short read (the file changed under the restore).
  void read(uint64_t first, uint64_t count, uint8_t* dst);
  // Bytes of scratch it keeps (for the extra-memory column).
  uint64_t scratch_bytes() const { return scratch_.capacity(); }

 private:
  int fd_;
  const ImageIndex& index_;
  RestoreMetrics& metrics_;
  std::vector<uint8_t> scratch_;
};

}  // namespace snap
