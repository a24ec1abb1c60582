// uffd-wp's shared page state: the per-page claim bitmap and the copy-aside ring (with its
// prefaulted buffer), through which the fault path hands copied pages to the saver.
#pragma once
#include <sys/mman.h>

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
  size_t bytes() const { return words_ * sizeof(uint64_t); }

 private:
  size_t words_;
  std::unique_ptr<std::atomic<uint64_t>[]> bits_;
};

// Single-producer (fault thread) single-consumer (saver) ring of pages copied aside, in a
// preallocated buffer: the fault path never allocates and never touches the sink.
class CopyAsideRing {
 public:
  explicit CopyAsideRing(size_t slots) : slots_(slots), pages_(slots * kPageSize), index_(slots) {}

  // Producer: a free slot's page buffer, or nullptr when the ring is full.
  uint8_t* slot_to_fill() {
    const uint64_t head = head_.load(std::memory_order_relaxed);
    if (head - tail_.load(std::memory_order_acquire) >= slots_) return nullptr;
    return pages_.data() + (head % slots_) * kPageSize;
  }
  // Producer: publishes the slot returned by slot_to_fill() as holding `page`.
  void publish(uint64_t page) {
    const uint64_t head = head_.load(std::memory_order_relaxed);
    index_[head % slots_] = page;
    head_.store(head + 1, std::memory_order_release);
  }
  // Consumer: hands every published page to `save(page, data)` and frees its slot; returns how many.
  template <typename Save>
  size_t drain(Save&& save) {
    const uint64_t head = head_.load(std::memory_order_acquire);
    uint64_t tail = tail_.load(std::memory_order_relaxed);
    const size_t n = size_t(head - tail);
    for (; tail != head; ++tail) {
      save(index_[tail % slots_], pages_.data() + (tail % slots_) * kPageSize);
      tail_.store(tail + 1, std::memory_order_release);  // free each slot as soon as it is saved
    }
    return n;
  }
  size_t bytes() const { return pages_.bytes() + index_.size() * sizeof(uint64_t); }

 private:
  const size_t slots_;
  PrefaultedBuffer pages_;
  std::vector<uint64_t> index_;
  alignas(64) std::atomic<uint64_t> head_{0};
  alignas(64) std::atomic<uint64_t> tail_{0};
};

}  // namespace snap::uffd_wp
