// uffd-wp's shared page state: the per-page claim bitmap and the copy-aside ring (with its
// prefaulted buffer), through which the fault path hands copied pages to the saver.
#pragma once
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/error.h"
#include "core/region.h"
#include "core/units.h"

namespace snap::uffd_wp {

// Anonymous memory populated up front, so that neither the fault path nor the saver page-faults on
// it while writers wait.
class PrefaultedBuffer {
 public:
  explicit PrefaultedBuffer(size_t bytes) : bytes_(bytes) {
    void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) throw_errno("mmap of the uffd-wp copy-aside buffer (" + format_bytes(double(bytes_)) + ")");
    base_ = static_cast<uint8_t*>(p);
  }
  ~PrefaultedBuffer() { munmap(base_, bytes_); }
  PrefaultedBuffer(const PrefaultedBuffer&) = delete;
  PrefaultedBuffer& operator=(const PrefaultedBuffer&) = delete;
  uint8_t* data() const { return base_; }
  size_t bytes() const { return bytes_; }

 private:
  size_t bytes_;
  uint8_t* base_ = nullptr;
};

// One bit per page: set by whoever (saver or fault thread) takes responsibility for saving it, so
// that each page is saved exactly once.
class ClaimBitmap {
 public:
  explicit ClaimBitmap(size_t pages) : words_((pages + 63) / 64), bits_(new std::atomic<uint64_t>[words_]) {
    for (size_t i = 0; i < words_; ++i) bits_[i].store(0, std::memory_order_relaxed);
  }
  // True when this call set the bit (the caller now owns the page).
  bool claim(size_t page) {
    const uint64_t bit = 1ull << (page % 64);
    return (bits_[page / 64].fetch_or(bit, std::memory_order_acq_rel) & bit) == 0;
  }
  // Claims the bits of `mask` in word `word`; returns the ones this call won.
  uint64_t claim_mask(size_t word, uint64_t mask) {
    return mask & ~bits_[word].fetch_or(mask, std::memory_order_acq_rel);
  }
  // Sets the bits of pages [first, first + count) (used as the "released" map: un-protected).
  void mark_range(size_t first, size_t count) {
    for (size_t p = first, end = first + count; p < end;) {
      const size_t lo = p % 64;
      const size_t width = std::min<size_t>(64 - lo, end - p);
      const uint64_t mask = (width == 64 ? ~0ull : ((1ull << width) - 1) << lo);
      bits_[p / 64].fetch_or(mask, std::memory_order_release);
      p += width;
    }
  }
  bool test(size_t page) const {
    return (bits_[page / 64].load(std::memory_order_acquire) >> (page % 64)) & 1;
  }
  size_t bytes() const { return words_ * sizeof(uint64_t); }

 private:
  size_t words_;
  std::unique_ptr<std::atomic<uint64_t>[]> bits_;
};

// Multi-producer (the fault thread, or with fault_wait=sigbus every faulting writer in its signal
// handler) single-consumer (saver) ring of pages copied aside, in a preallocated buffer: the fault
// path never allocates, never locks and never touches the sink (so it is async-signal-safe). A
// producer takes a ticket, copies into its slot, then marks the slot ready; the saver frees slots
// in ticket order and stops at the first one still being filled.
class CopyAsideRing {
 public:
  explicit CopyAsideRing(size_t slots)
      : slots_(slots), pages_(slots * kPageSize), index_(slots), ready_(new std::atomic<uint64_t>[slots]) {
    for (size_t i = 0; i < slots_; ++i) ready_[i].store(0, std::memory_order_relaxed);
  }

  // Producer: reserves a free slot and returns its page buffer (its ticket in `ticket`), or nullptr
  // when the ring is full.
  uint8_t* reserve(uint64_t& ticket) {
    uint64_t head = head_.load(std::memory_order_relaxed);
    do {
      if (head - tail_.load(std::memory_order_acquire) >= slots_) return nullptr;
    } while (!head_.compare_exchange_weak(head, head + 1, std::memory_order_acq_rel, std::memory_order_relaxed));
    ticket = head;
    return pages_.data() + (head % slots_) * kPageSize;
  }
  // Producer: publishes the slot of `ticket` (filled) as holding `page`.
  void publish(uint64_t ticket, uint64_t page) {
    index_[ticket % slots_] = page;
    ready_[ticket % slots_].store(ticket + 1, std::memory_order_release);  // ticket + 1: 0 is "never"
  }
  // Consumer: hands every published page, in ticket order, to `save(page, data)` and frees its
  // slot; returns how many.
  template <typename Save>
  size_t drain(Save&& save) {
    const uint64_t head = head_.load(std::memory_order_acquire);
    uint64_t tail = tail_.load(std::memory_order_relaxed);
    size_t n = 0;
    for (; tail != head; ++tail, ++n) {
      if (ready_[tail % slots_].load(std::memory_order_acquire) != tail + 1) break;  // still being filled
      save(index_[tail % slots_], pages_.data() + (tail % slots_) * kPageSize);
      tail_.store(tail + 1, std::memory_order_release);  // free each slot as soon as it is saved
    }
    return n;
  }
  size_t bytes() const { return pages_.bytes() + index_.size() * 2 * sizeof(uint64_t); }

 private:
  const size_t slots_;
  PrefaultedBuffer pages_;
  std::vector<uint64_t> index_;
  std::unique_ptr<std::atomic<uint64_t>[]> ready_;
  alignas(64) std::atomic<uint64_t> head_{0};
  alignas(64) std::atomic<uint64_t> tail_{0};
};

}  // namespace snap::uffd_wp
