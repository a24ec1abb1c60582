// userfaultfd and PAGEMAP_SCAN wrappers: feature probe, register, write-protect, scan.
#include "core/uffd.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "core/error.h"
#include "core/linux_compat.h"
#include "core/pagemap.h"
#include "core/units.h"

namespace snap {

namespace {

// Kernel-mode faults must reach the handler too: a KVM vCPU's write to guest memory faults inside
// get_user_pages, which a UFFD_USER_MODE_ONLY fd answers with SIGBUS (KVM_RUN then fails with EFAULT).
// So a full fd first (root, CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1), then /dev/userfaultfd
// (full too), and user-mode-only last (enough for writer threads).
int open_uffd(int flags) {
  int fd = int(syscall(SYS_userfaultfd, flags));
  if (fd < 0) {
    // Fall back to /dev/userfaultfd (works when vm.unprivileged_userfaultfd = 0 for non-root).
    int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
    if (dev >= 0) {
      fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
      close(dev);
    }
  }
  if (fd < 0) fd = int(syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY));
  return fd;
}

}  // namespace

bool unregister_clears_wp() noexcept {
  static const bool clears = [] {
    if (!uffd_features().has(UFFD_FEATURE_PAGEFAULT_FLAG_WP)) return false;
    void* page = mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return false;
    *static_cast<volatile uint8_t*>(page) = 1;  // populated: protection applies without WP_UNPOPULATED
    bool cleared = false;
    const int pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    try {
      Uffd uffd(UFFD_FEATURE_PAGEFAULT_FLAG_WP, /*nonblocking=*/true);
      uffd.register_wp(page, kPageSize);
      uffd.writeprotect(page, kPageSize, true);
      uint64_t entry = 0;
      const bool armed = pagemap >= 0 && read_pagemap(pagemap, page, 1, &entry) && (entry & kPagemapUffdWp);
      uffd.unregister(page, kPageSize);
      cleared = armed && read_pagemap(pagemap, page, 1, &entry) && !(entry & kPagemapUffdWp);
    } catch (...) {
      cleared = false;
    }
    if (pagemap >= 0) close(pagemap);
    munmap(page, kPageSize);
    return cleared;
  }();
  return clears;
}

const UffdFeatures& uffd_features() {
  static const UffdFeatures probed = [] {
    UffdFeatures f;
    int fd = open_uffd(O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
      f.reason = std::string("userfaultfd unavailable: ") + std::strerror(errno);
      return f;
    }
    uffdio_api api{};
    api.api = UFFD_API;
    api.features = 0;  // ask for nothing: the kernel answers with everything it offers
    if (ioctl(fd, UFFDIO_API, &api) != 0) {
      f.reason = std::string("UFFDIO_API failed: ") + std::strerror(errno);
      close(fd);
      return f;
    }
    close(fd);
    f.available = true;
    f.features = api.features;
    return f;
  }();
  return probed;
}

bool pagemap_scan_available(std::string* reason) {
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (reason) *reason = std::string("cannot open /proc/self/pagemap: ") + std::strerror(errno);
    return false;
  }
  // An empty range with a valid argument: 0 on kernels that know the ioctl, ENOTTY otherwise.
  static char probe_page[kPageSize] __attribute__((aligned(4096)));
  page_region vec[1];
  pm_scan_arg arg{};
  arg.size = sizeof arg;
  arg.start = reinterpret_cast<uint64_t>(probe_page);
  arg.end = arg.start + kPageSize;
  arg.vec = reinterpret_cast<uint64_t>(vec);
  arg.vec_len = 1;
  arg.category_mask = PAGE_IS_WRITTEN;
  arg.return_mask = PAGE_IS_WRITTEN;
  long r = ioctl(fd, PAGEMAP_SCAN, &arg);
  int err = errno;
  close(fd);
  if (r < 0) {
    if (reason) *reason = std::string("PAGEMAP_SCAN ioctl unsupported (needs Linux 6.7+): ") + std::strerror(err);
    return false;
  }
  return true;
}

Uffd::Uffd(uint64_t features, bool nonblocking) {
  fd_ = open_uffd(O_CLOEXEC | (nonblocking ? O_NONBLOCK : 0));
  if (fd_ < 0) throw_errno("userfaultfd");
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = features;
  if (ioctl(fd_, UFFDIO_API, &api) != 0) {
    int err = errno;
    close(fd_);
    fd_ = -1;
    errno = err;
    throw_errno("UFFDIO_API (features 0x" + [&] {
      char b[32];
      snprintf(b, sizeof b, "%llx", (unsigned long long)features);
      return std::string(b);
    }() + ")");
  }
}

Uffd::~Uffd() {
  if (fd_ >= 0) close(fd_);
}

void Uffd::register_wp(void* addr, size_t len) {
  uffdio_register reg{};
  reg.range.start = reinterpret_cast<uint64_t>(addr);
  reg.range.len = len;
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  if (ioctl(fd_, UFFDIO_REGISTER, &reg) != 0) throw_errno("UFFDIO_REGISTER (write-protect mode)");
}

void Uffd::unregister(void* addr, size_t len) {
  uffdio_range range{reinterpret_cast<uint64_t>(addr), len};
  if (ioctl(fd_, UFFDIO_UNREGISTER, &range) != 0) throw_errno("UFFDIO_UNREGISTER");
}

void Uffd::writeprotect(void* addr, size_t len, bool wp, bool wake) {
  uffdio_writeprotect arg{};
  arg.range.start = reinterpret_cast<uint64_t>(addr);
  arg.range.len = len;
  arg.mode = (wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0) | (wake ? 0 : UFFDIO_WRITEPROTECT_MODE_DONTWAKE);
  while (ioctl(fd_, UFFDIO_WRITEPROTECT, &arg) != 0) {
    if (errno == EAGAIN) continue;  // raced with a concurrent mm change; the kernel asks to retry
    throw_errno(wp ? "UFFDIO_WRITEPROTECT (protect)" : "UFFDIO_WRITEPROTECT (release)");
  }
}

PagemapScanner::PagemapScanner() {
  fd_ = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw_errno("open /proc/self/pagemap");
  vec_.resize(sizeof(page_region) * 4096);
}

PagemapScanner::~PagemapScanner() {
  if (fd_ >= 0) close(fd_);
}

void PagemapScanner::collect_written(const void* base, const void* start, const void* end, bool rearm,
                                     std::vector<uint64_t>& out) {
  const uint64_t b = reinterpret_cast<uint64_t>(base);
  uint64_t cur = reinterpret_cast<uint64_t>(start);
  const uint64_t stop = reinterpret_cast<uint64_t>(end);
  auto* regions = reinterpret_cast<page_region*>(vec_.data());
  const size_t nvec = vec_.size() / sizeof(page_region);
  while (cur < stop) {
    pm_scan_arg arg{};
    arg.size = sizeof arg;
    arg.flags = rearm ? (PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC) : 0;
    arg.start = cur;
    arg.end = stop;
    arg.vec = reinterpret_cast<uint64_t>(regions);
    arg.vec_len = nvec;
    arg.category_mask = PAGE_IS_WRITTEN;
    arg.return_mask = PAGE_IS_WRITTEN;
    long n = ioctl(fd_, PAGEMAP_SCAN, &arg);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      throw_errno("PAGEMAP_SCAN");
    }
    for (long i = 0; i < n; ++i)
      for (uint64_t a = regions[i].start; a < regions[i].end; a += kPageSize) out.push_back((a - b) / kPageSize);
    if (arg.walk_end <= cur) throw std::runtime_error("PAGEMAP_SCAN made no progress");
    cur = arg.walk_end;
  }
}

}  // namespace snap
