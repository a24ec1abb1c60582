// `soft-dirty` dirty tracker: clear_refs ("4") to clear, pagemap bit 55 to read (needs CONFIG_MEM_SOFT_DIRTY).
//
// Reading the pagemap and clearing are two separate steps, so a write between them would be lost:
// collect_needs_pause() asks the caller to pause the writers around collect() (what CRIU does with
// a frozen task). clear_refs acts on the whole process, not only the region.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "core/error.h"
#include "core/pagemap.h"
#include "core/scoped.h"
#include "core/units.h"
#include "strategies/tracking/tracker.h"

namespace snap {

namespace {

constexpr size_t kEntriesPerRead = 64 * 1024;  // 512 KiB of pagemap per pread

// Writes "4" to /proc/self/clear_refs (clears every soft-dirty bit of the process). Returns errno or 0.
int clear_soft_dirty() {
  int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = 0;
  if (write(fd, "4", 1) != 1) err = errno ? errno : EIO;
  close(fd);
  return err;
}

// Reads the pagemap entry of one page (bit 55 is soft-dirty). Returns false with errno on failure.
bool read_pagemap_entry(int fd, const void* page, uint64_t* entry) { return read_pagemap(fd, page, 1, entry); }

// The run-time check: a page written after clear_refs must show bit 55, and clear_refs must clear it.
Support probe_soft_dirty() {
  void* p = mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return Support::no(std::string("soft-dirty probe: mmap failed: ") + strerror(errno));
  const Mapping page(p, kPageSize);
  auto* byte = static_cast<volatile uint8_t*>(p);
  Support result = Support::yes();
  const UniqueFd pagemap(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
  const int fd = pagemap.get();
  if (fd < 0) {
    result = Support::no(std::string("soft-dirty probe: cannot open /proc/self/pagemap: ") + strerror(errno));
  } else {
    *byte = 1;
    uint64_t after_clear = 0, after_write = 0;
    if (int err = clear_soft_dirty()) {
      result = Support::no(std::string("soft-dirty probe: cannot write 4 to /proc/self/clear_refs: ") + strerror(err));
    } else if (!read_pagemap_entry(fd, p, &after_clear)) {
      result = Support::no(std::string("soft-dirty probe: cannot read /proc/self/pagemap: ") + strerror(errno));
    } else {
      *byte = 2;
      if (!read_pagemap_entry(fd, p, &after_write))
        result = Support::no(std::string("soft-dirty probe: cannot read /proc/self/pagemap: ") + strerror(errno));
      else if (!(after_write & kPagemapSoftDirty))
        result = Support::no(
            "kernel lacks CONFIG_MEM_SOFT_DIRTY: pagemap bit 55 (soft-dirty) stays clear on a page written "
            "after clear_refs");
      else if (after_clear & kPagemapSoftDirty)
        result = Support::no("soft-dirty probe: writing 4 to /proc/self/clear_refs did not clear pagemap bit 55");
    }
  }
  return result;
}

class SoftDirtyTracker final : public DirtyTracker {
 public:
  ~SoftDirtyTracker() override { stop(); }

  using DirtyTracker::DirtyTracker;
  Support probe() const override {
    static const Support probed = probe_soft_dirty();  // the kernel does not change under us
    return probed;
  }

  void start(Region& region, WorkloadControl&, const ParamValues&) override {
    stop();
    base_ = region.base();
    pages_ = region.pages();
    fd_.reset(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
    if (!fd_) throw_errno("soft-dirty tracker: open /proc/self/pagemap");
    entries_.assign(std::min(pages_, kEntriesPerRead), 0);
    if (int err = clear_soft_dirty()) {
      stop();
      errno = err;
      throw_errno("soft-dirty tracker: write 4 to /proc/self/clear_refs");
    }
  }

  void collect(std::vector<uint64_t>& dirty) override {
    if (!fd_) throw std::logic_error("soft-dirty tracker: collect() before start()");
    const off_t first_entry = off_t(reinterpret_cast<uintptr_t>(base_) / kPageSize);
    for (size_t done = 0; done < pages_;) {
      const size_t want = std::min(entries_.size(), pages_ - done);
      const ssize_t got = pread(fd_.get(), entries_.data(), want * sizeof(uint64_t),
                                off_t((first_entry + off_t(done)) * off_t(sizeof(uint64_t))));
      if (got < 0) {
        if (errno == EINTR) continue;
        throw_errno("soft-dirty tracker: read /proc/self/pagemap");
      }
      const size_t n = size_t(got) / sizeof(uint64_t);
      if (n == 0) throw std::runtime_error("soft-dirty tracker: short read of /proc/self/pagemap");
      for (size_t i = 0; i < n; ++i)
        if (entries_[i] & kPagemapSoftDirty) dirty.push_back(done + i);
      done += n;
    }
    if (int err = clear_soft_dirty()) {
      errno = err;
      throw_errno("soft-dirty tracker: write 4 to /proc/self/clear_refs");
    }
  }

  void stop() override {
    // Soft-dirty leaves no protection a writer could notice (the kernel's write-protect for it is
    // resolved silently on the next write), so there is nothing to undo but the fd.
    fd_.reset();
    entries_ = {};
  }

  uint64_t memory_bytes() const override { return entries_.capacity() * sizeof(uint64_t); }

 private:
  uint8_t* base_ = nullptr;
  size_t pages_ = 0;
  UniqueFd fd_;
  std::vector<uint64_t> entries_;  // pagemap read buffer, reused
};

}  // namespace

const TrackerEntry& soft_dirty_tracker() {
  static const TrackerEntry entry{
      .name = "soft-dirty",
      .help = "clear_refs + pagemap soft-dirty bit 55 (needs CONFIG_MEM_SOFT_DIRTY; writers paused per collect)",
      .collect_needs_pause = true,
      .factory = make_tracker_of<SoftDirtyTracker>,
  };
  return entry;
}

}  // namespace snap
