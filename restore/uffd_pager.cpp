// UffdPager: MISSING-mode userfaultfd serving a restore from the image's index.
#include "restore/uffd_pager.h"

#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "core/clock.h"
#include "core/error.h"
#include "core/uffd.h"
#include "core/units.h"

namespace snap {

Support uffd_missing_support() {
  const UffdFeatures& f = uffd_features();
  if (!f.available) return Support::no(f.reason);
  // MISSING mode on anonymous memory needs no feature bit; UFFDIO_ZEROPAGE and UFFDIO_COPY are in
  // every kernel with userfaultfd. Registering a scratch page checks the ioctls are offered.
  try {
    Uffd fd(0, true);
    Mapping page(kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, "the uffd probe page");
    uffdio_register reg{};
    reg.range.start = uint64_t(page.data());
    reg.range.len = kPageSize;
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (ioctl(fd.fd(), UFFDIO_REGISTER, &reg) != 0)
      return Support::no(std::string("UFFDIO_REGISTER (MISSING) failed: ") + std::strerror(errno));
    const uint64_t need = (uint64_t(1) << _UFFDIO_COPY) | (uint64_t(1) << _UFFDIO_ZEROPAGE) | (uint64_t(1) << _UFFDIO_WAKE);
    if ((reg.ioctls & need) != need) return Support::no("the kernel offers no UFFDIO_COPY/ZEROPAGE on anonymous memory");
  } catch (const std::exception& e) {
    return Support::no(e.what());
  }
  return Support::yes();
}

UffdPager::UffdPager(RestoreContext& ctx, uint64_t fail_after, bool record)
    : ctx_(ctx),
      uffd_(-1),
      done_((ctx.pages + 63) / 64),
      fail_after_(fail_after),
      record_(record),
      copier_source_(ctx.image_fd, ctx.index, ctx.metrics) {
  {
    Uffd probe_fd(0, true);  // opens and negotiates UFFD_API (no features: MISSING needs none)
    uffd_.reset(::dup(probe_fd.fd()));
    if (!uffd_) throw_errno("dup of the userfaultfd");
  }
  // The handler waits on both the uffd and this: stop() wakes it without a fault.
  stop_event_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop_event_) throw_errno("eventfd");
  uffdio_register reg{};
  reg.range.start = uint64_t(ctx.base);
  reg.range.len = ctx.pages * kPageSize;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  if (ioctl(uffd_.get(), UFFDIO_REGISTER, &reg) != 0) throw_errno("UFFDIO_REGISTER (MISSING) of the restored region");
  registered_ = true;
  handler_ = std::thread([this] { handle(); });
}

UffdPager::~UffdPager() { stop(); }

void UffdPager::set_failure(const std::string& why) {
  {
    std::lock_guard<std::mutex> lock(failure_mu_);
    if (failure_.empty()) failure_ = why;
  }
  dead_.store(true, std::memory_order_release);
}

std::string UffdPager::failure() const {
  std::lock_guard<std::mutex> lock(failure_mu_);
  return failure_;
}

std::vector<uint64_t> UffdPager::recorded() const { return recorded_; }

void UffdPager::mark(uint64_t first, uint64_t count) {
  for (uint64_t p = first; p < first + count; ++p) done_[p / 64].fetch_or(uint64_t(1) << (p % 64), std::memory_order_release);
  if (placed_.fetch_add(count, std::memory_order_acq_rel) + count == ctx_.pages)
    ctx_.metrics.resident_at_ns.store(now_ns(), std::memory_order_release);
}

void UffdPager::place(uint64_t first, uint64_t count, const uint8_t* data) {
  uint64_t off = 0;  // pages of the call handled
  while (off < count) {
    const uint64_t addr = uint64_t(ctx_.base) + (first + off) * kPageSize;
    const uint64_t len = (count - off) * kPageSize;
    int64_t result;
    int rc;
    if (data) {
      uffdio_copy c{};
      c.dst = addr;
      c.src = uint64_t(data + off * kPageSize);
      c.len = len;
      rc = ioctl(uffd_.get(), UFFDIO_COPY, &c);
      result = c.copy;
    } else {
      uffdio_zeropage z{};
      z.range.start = addr;
      z.range.len = len;
      rc = ioctl(uffd_.get(), UFFDIO_ZEROPAGE, &z);
      result = z.zeropage;
    }
    const int err = errno;
    const uint64_t placed = rc == 0 ? count - off : result > 0 ? uint64_t(result) / kPageSize : 0;
    if (placed) mark(first + off, placed);
    off += placed;
    if (rc == 0) return;
    if (err == EEXIST) {
      // The page is already there (the handler or the copier won the race; that call woke any
      // waiter): skip it. UFFDIO_WAKE covers a waiter that faulted in between.
      uffdio_range r{addr + placed * kPageSize, kPageSize};
      ioctl(uffd_.get(), UFFDIO_WAKE, &r);
      ++off;
      continue;
    }
    if (err == EAGAIN || err == EINTR) continue;  // the mm changed under the call: retry the rest
    throw std::runtime_error(std::string(data ? "UFFDIO_COPY" : "UFFDIO_ZEROPAGE") + " failed: " + std::strerror(err));
  }
}

void UffdPager::serve_fault(uint64_t page, PageSource& source, uint8_t* buf) {
  if (ctx_.index.has_data(page)) {
    source.read(page, 1, buf);
    place(page, 1, buf);
  } else {
    place(page, 1, nullptr);
  }
}

void UffdPager::handle() {
  PageSource source(ctx_.image_fd, ctx_.index, ctx_.metrics);
  std::vector<uint8_t> buf(kPageSize);
  uint64_t served = 0;
  try {
    for (;;) {
      pollfd fds[2] = {{uffd_.get(), POLLIN, 0}, {stop_event_.get(), POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        throw_errno("poll on the userfaultfd");
      }
      if (fds[1].revents) return;
      if (fds[0].revents & (POLLERR | POLLHUP)) throw std::runtime_error("the userfaultfd reported an error");
      uffd_msg msgs[16];
      ssize_t n = ::read(uffd_.get(), msgs, sizeof msgs);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n < 0) throw_errno("read from the userfaultfd");
      for (ssize_t i = 0; i < n / ssize_t(sizeof(uffd_msg)); ++i) {
        if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
        if (fail_after_ && served >= fail_after_) {
          set_failure("restore handler died after serving " + std::to_string(served) +
                      " faults (injected with fail_after)");
          return;
        }
        const uint64_t page = (msgs[i].arg.pagefault.address - uint64_t(ctx_.base)) / kPageSize;
        if (page >= ctx_.pages) throw std::runtime_error("fault outside the restored region");
        serve_fault(page, source, buf.data());
        ++served;
        ctx_.metrics.faults.fetch_add(1, std::memory_order_relaxed);
        if (record_) recorded_.push_back(page);
      }
    }
  } catch (const std::exception& e) {
    set_failure(std::string("restore handler died: ") + e.what());
  }
}

bool UffdPager::copy_range(uint64_t first, uint64_t count, uint64_t batch) {
  batch = std::max<uint64_t>(1, batch);
  if (copier_buf_.size() < batch * kPageSize) copier_buf_.resize(batch * kPageSize);
  uint64_t p = first;
  const uint64_t end = first + count;
  while (p < end) {
    if (stopping_.load(std::memory_order_acquire) || dead_.load(std::memory_order_acquire)) return false;
    if (resident(p)) {
      ++p;
      continue;
    }
    // A run of one kind (data, or zero/absent) of pages not yet resident, up to `batch`.
    const bool data = ctx_.index.has_data(p);
    uint64_t k = 1;
    while (p + k < end && k < batch && !resident(p + k) && ctx_.index.has_data(p + k) == data) ++k;
    if (data) copier_source_.read(p, k, copier_buf_.data());
    place(p, k, data ? copier_buf_.data() : nullptr);
    p += k;
  }
  return true;
}

void UffdPager::stop() {
  if (stopping_.exchange(true)) return;
  if (stop_event_) {
    // One increment of a fresh eventfd cannot fail (it could only overflow at 2^64 - 1).
    const uint64_t one = 1;
    (void)!::write(stop_event_.get(), &one, sizeof one);
  }
  if (handler_.joinable()) handler_.join();
  if (registered_) {
    uffdio_range r{uint64_t(ctx_.base), ctx_.pages * kPageSize};
    ioctl(uffd_.get(), UFFDIO_UNREGISTER, &r);  // wakes any waiter; the kernel also does it on close
    registered_ = false;
  }
  uffd_.reset();
  stop_event_.reset();
}

}  // namespace snap
