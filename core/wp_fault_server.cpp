// The write-protect fault-serving thread (see wp_fault_server.h).
#include "core/wp_fault_server.h"

#include <linux/userfaultfd.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>

#include "core/error.h"
#include "core/units.h"

namespace snap {

WpFaultServer::WpFaultServer(Uffd& uffd, void* base, size_t len, void* spare, FaultService service, bool copy_aside)
    : uffd_(uffd), base_(base), len_(len), spare_(spare), service_(service), copy_aside_(copy_aside) {
  if (copy_aside_) ring_.assign(kCopyRingPages * kPageSize, 1);  // touched: no first-touch faults
  thread_ = std::thread([this] { run(); });
}

void WpFaultServer::finish() {
  if (!thread_.joinable()) return;
  store_word_fenced(static_cast<uint8_t*>(spare_), 1);
  thread_.join();
}

bool WpFaultServer::receive(void* out) {
  const int fd = uffd_.fd();
  for (;;) {
    if (service_ == FaultService::kPoll) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, -1) < 0) {
        if (errno == EINTR) continue;
        throw_errno("poll on the userfaultfd");
      }
    }
    const ssize_t n = read(fd, out, sizeof(uffd_msg));
    if (n == ssize_t(sizeof(uffd_msg))) return true;
    if (n < 0 && errno == EAGAIN) {  // non-blocking fd with nothing queued
#if defined(__x86_64__)
      if (service_ == FaultService::kBusyPoll) __builtin_ia32_pause();
#endif
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    throw_errno("read from the userfaultfd");
  }
}

void WpFaultServer::run() {
  size_t slot = 0;
  try {
    for (;;) {
      uffd_msg msg;
      receive(&msg);
      if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
      void* page = reinterpret_cast<void*>(msg.arg.pagefault.address & ~uint64_t(kPageSize - 1));
      if (copy_aside_) {
        std::memcpy(ring_.data() + slot * kPageSize, page, kPageSize);
        slot = (slot + 1) % kCopyRingPages;
      }
      uffd_.writeprotect(page, kPageSize, false, true);
      served_.fetch_add(1, std::memory_order_relaxed);
      if (page == spare_) return;
    }
  } catch (const std::exception& e) {
    error_ = e.what();
    failed_.store(true, std::memory_order_release);
    try {
      uffd_.writeprotect(base_, len_, false, true);  // never leave the writer blocked
    } catch (...) {
    }
  }
}

}  // namespace snap
