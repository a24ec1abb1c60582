// write_all: the whole buffer to a file descriptor, retrying short writes and EINTR.
#pragma once
#include <unistd.h>

#include <cerrno>
#include <cstddef>

namespace snap {

// Returns 0 once every byte is written, else the errno of the failing write (EIO for a write that
// wrote nothing without saying why). The caller decides what a failure undoes.
inline int write_all(int fd, const void* data, size_t len) {
  const char* p = static_cast<const char*>(data);
  for (size_t done = 0; done < len;) {
    const ssize_t w = ::write(fd, p + done, len - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return w < 0 ? errno : EIO;
    done += size_t(w);
  }
  return 0;
}

}  // namespace snap
