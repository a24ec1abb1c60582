// The `memory` sink: keeps the stream in a MAP_SHARED mapping so a forked child's writes reach the parent.
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "core/error.h"
#include "core/prefault.h"
#include "core/scoped.h"
#include "core/sink.h"
#include "core/units.h"

namespace snap::sink_detail {

namespace {

std::string mmap_failure(const std::string& what, uint64_t bytes) {
  return "memory sink: mmap of " + format_bytes(double(bytes)) + " for " + what + ": " + std::strerror(errno);
}

}  // namespace

std::shared_ptr<std::atomic<uint64_t>> make_fork_shared_counter() {
  static_assert(std::atomic<uint64_t>::is_always_lock_free, "a shared counter must be address-free");
  void* p = mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw SinkError(mmap_failure("a byte counter", kPageSize));
  auto* counter = new (p) std::atomic<uint64_t>(0);
  return std::shared_ptr<std::atomic<uint64_t>>(counter, [](std::atomic<uint64_t>* c) { munmap(c, kPageSize); });
}

namespace {

class MemorySink final : public Sink {
 public:
  // capacity 0: a growable private buffer (not visible across fork()).
  explicit MemorySink(uint64_t capacity) : capacity_(capacity) {
    if (capacity_ == 0) return;
    // One control page (the write offset) followed by the data, lazily backed: MAP_NORESERVE.
    map_bytes_ = kPageSize + (capacity_ + kPageSize - 1) / kPageSize * kPageSize;
    void* p = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw SinkError(mmap_failure("the stream", map_bytes_));
    mapping_ = Mapping(p, map_bytes_);
    map_ = mapping_.data();
    offset_ = new (map_) std::atomic<uint64_t>(0);
  }
  MemorySink(const MemorySink&) = delete;
  MemorySink& operator=(const MemorySink&) = delete;

  void write(const void* data, size_t len) override {
    if (!map_) {
      const uint8_t* p = static_cast<const uint8_t*>(data);
      local_.insert(local_.end(), p, p + len);
      return;
    }
    const uint64_t off = offset_->load(std::memory_order_relaxed);
    if (len > capacity_ - off)
      throw SinkError("memory sink: capacity of " + std::to_string(capacity_) + " bytes exceeded (" +
                      std::to_string(off) + " written, " + std::to_string(len) + " more offered)");
    populate(off + len);
    std::memcpy(map_ + kPageSize + off, data, len);
    offset_->store(off + len, std::memory_order_release);
  }
  void finish() override {}
  void prepare(uint64_t bytes) override {
    if (!map_) return;  // the growable buffer (capacity 0, tests only) is not backed ahead
    populate(std::min(bytes, capacity_));
  }
  uint64_t bytes_written() const override {
    return map_ ? offset_->load(std::memory_order_acquire) : local_.size();
  }
  std::string kind() const override { return "memory"; }
  bool readable() const override { return true; }
  std::vector<uint8_t> read_back() const override {
    if (!map_) return local_;
    const uint8_t* data = map_ + kPageSize;
    return std::vector<uint8_t>(data, data + bytes_written());
  }

 private:
  // Backs the pages up to `end` before the memcpy (core/prefault.h): at a write, or all at once
  // before the snapshot when the harness calls prepare().
  void populate(uint64_t end) {
    if (end <= populated_) return;
    const uint64_t from = populated_ / kPageSize * kPageSize;
    const uint64_t to = std::min<uint64_t>((end + kPageSize - 1) / kPageSize * kPageSize, map_bytes_ - kPageSize);
    prefault_write(map_ + kPageSize + from, to - from);
    populated_ = to;
  }

  uint64_t capacity_ = 0;
  uint64_t populated_ = 0;  // data bytes known to be backed (per process; re-populating is harmless)
  Mapping mapping_;      // owns map_
  uint8_t* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::atomic<uint64_t>* offset_ = nullptr;  // lives in map_'s first page
  std::vector<uint8_t> local_;
};

}  // namespace

std::unique_ptr<Sink> make_memory_sink(uint64_t capacity) { return std::make_unique<MemorySink>(capacity); }

}  // namespace snap::sink_detail
