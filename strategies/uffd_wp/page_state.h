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
#include "core/prefault.h"
#include "core/scoped.h"
#include "core/units.h"

namespace snap::uffd_wp {

// Anonymous memory populated up front, so that neither the fault path nor the saver page-faults on
// it while writers wait.
class PrefaultedBuffer {
 public:
  explicit PrefaultedBuffer(size_t bytes)
      : map_(bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
             "the uffd-wp copy-aside buffer (" + format_bytes(double(bytes)) + ")") {
    prefault_write(map_.data(), bytes);
  }
  uint8_t* data() const { return map_.data(); }
  size_t bytes() const { return map_.size(); }

 private:
  Mapping map_;
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
  uint64_t word(size_t w) const { return bits_[w].load(std::memory_order_acquire); }
  size_t bytes() const { return words_ * sizeof(uint64_t); }

 private:
  size_t words_;
  std::unique_ptr<std::atomic<uint64_t>[]> bits_;
};

// Lazy release's hand-off between the saver and the fault paths (release=lazy). The saver leaves the
// pages it saved write-protected, so a writer that later faults on one needs only an un-protect, and
// the saver pays no ioctl per chunk. `saved` has the bit of every page the saver has copied; `wanted`
// of every page a writer faulted on while the saver had it claimed. Each side sets its own bit, then,
// after a full fence, reads the other's (the store-buffering pattern): for every page at least one of
// the saver (which just saved it) and the fault path (which wants it) sees both bits and un-protects
// it, so a writer is never left blocked; sometimes both do, which is harmless (un-protecting a
// writable page changes nothing). Lock-free atomics only: the SIGBUS handler uses it.
class LazyHandoff {
 public:
  explicit LazyHandoff(size_t pages) : saved_(pages), wanted_(pages) {}
  // Fault path, for a page the saver claimed: true when the saver has saved it already, so the caller
  // un-protects it now; false when the saver will, right after copying it.
  bool fault_wants(size_t page) {
    wanted_.mark_range(page, 1);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return saved_.test(page);
  }
  // Saver, after copying [first, first + count).
  void mark_saved(size_t first, size_t count) { saved_.mark_range(first, count); }
  // Saver, after mark_saved: calls fn(page, count) for each run of wanted pages in [first, last).
  template <typename Fn>
  void for_each_wanted_run(size_t first, size_t last, Fn&& fn) const {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    for (size_t p = first; p < last;) {
      if (wanted_.word(p / 64) == 0) {
        p = (p / 64 + 1) * 64;
        continue;
      }
      if (!wanted_.test(p)) {
        ++p;
        continue;
      }
      size_t end = p + 1;
      while (end < last && wanted_.test(end)) ++end;
      fn(p, end - p);
      p = end;
    }
  }
  size_t bytes() const { return saved_.bytes() + wanted_.bytes(); }
  // Un-protects made on demand: pages the saver released for a waiting writer, and calls a fault path
  // made for a page the saver had saved.
  void count_saver_unprotects(uint64_t pages) { saver_unprotects_.fetch_add(pages, std::memory_order_relaxed); }
  void count_fault_unprotect() { fault_unprotects_.fetch_add(1, std::memory_order_relaxed); }
  uint64_t saver_unprotects() const { return saver_unprotects_.load(std::memory_order_relaxed); }
  uint64_t fault_unprotects() const { return fault_unprotects_.load(std::memory_order_relaxed); }

 private:
  ClaimBitmap saved_, wanted_;
  std::atomic<uint64_t> saver_unprotects_{0}, fault_unprotects_{0};
};

// Address space reserved for `bytes` (MAP_NORESERVE) whose first `populated` bytes are touched now;
// the rest costs memory only once it is written (the fault path may then take a page fault there,
// which is fine in a signal handler: it is the kernel's, not a library call).
class GrowableBuffer {
 public:
  GrowableBuffer(size_t bytes, size_t populated)
      : map_(bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
             "the uffd-wp copy-aside ring (" + format_bytes(double(bytes)) + ")") {
    for (size_t off = 0; off < std::min(populated, bytes); off += kPageSize) map_.data()[off] = 0;
  }
  uint8_t* data() const { return map_.data(); }

 private:
  Mapping map_;
};

// The copy-aside ring: pages a fault path copied aside for the saver. Multi-producer (the fault
// thread, or with fault_wait=sigbus every faulting writer in its signal handler), single consumer
// (the saver); it never allocates, never locks and never touches the sink, so it is
// async-signal-safe. A producer takes the lowest free slot (one atomic per 64 slots), copies the page
// into it and marks it ready; the saver saves the ready slots in any order and frees them. Because
// the lowest slot is always taken, the slots in use stay packed at the bottom and memory grows only
// as far as the most pages ever waiting at once: `prefaulted` slots are populated up front (no first
// touch on the fault path), and the ring may grow on demand up to `budget` slots (address space
// reserved, memory taken on first use). When all `budget` slots wait, a producer gets nullptr and
// waits for the saver.
class CopyAsideRing {
 public:
  CopyAsideRing(size_t prefaulted, size_t budget)
      : budget_(std::max(prefaulted, budget)),
        prefaulted_(prefaulted),
        words_((budget_ + 63) / 64),
        pages_(budget_ * kPageSize, prefaulted * kPageSize),
        index_(budget_ * sizeof(uint64_t), prefaulted * sizeof(uint64_t)),
        used_(new std::atomic<uint64_t>[words_]),
        ready_(new std::atomic<uint64_t>[words_]) {
    for (size_t w = 0; w < words_; ++w) {
      used_[w].store(0, std::memory_order_relaxed);
      ready_[w].store(0, std::memory_order_relaxed);
    }
    if (budget_ % 64) used_[words_ - 1].store(~0ull << (budget_ % 64), std::memory_order_relaxed);  // no such slots
  }
  explicit CopyAsideRing(size_t slots) : CopyAsideRing(slots, slots) {}

  // Producer: takes the lowest free slot and returns its page buffer (the slot in `slot`), or
  // nullptr when every slot of the budget waits for the saver.
  uint8_t* reserve(uint64_t& slot) {
    for (size_t w = 0; w < words_; ++w) {
      uint64_t used = used_[w].load(std::memory_order_relaxed);
      while (~used != 0) {
        const uint64_t bit = ~used & (used + 1);  // the lowest clear bit
        if (used_[w].compare_exchange_weak(used, used | bit, std::memory_order_acq_rel, std::memory_order_relaxed)) {
          slot = w * 64 + uint64_t(__builtin_ctzll(bit));
          uint64_t top = high_water_.load(std::memory_order_relaxed);
          while (slot + 1 > top && !high_water_.compare_exchange_weak(top, slot + 1, std::memory_order_relaxed)) {
          }
          return pages_.data() + slot * kPageSize;
        }
      }
    }
    return nullptr;
  }
  // Producer: publishes `slot` (filled) as holding `page`.
  void publish(uint64_t slot, uint64_t page) {
    reinterpret_cast<uint64_t*>(index_.data())[slot] = page;
    ready_[slot / 64].fetch_or(1ull << (slot % 64), std::memory_order_release);
    waiting_.fetch_add(1, std::memory_order_release);
  }
  // Consumer: hands every published page to `save(page, data)` and frees its slot; returns how many.
  template <typename Save>
  size_t drain(Save&& save) {
    if (waiting_.load(std::memory_order_acquire) == 0) return 0;
    const size_t words = (high_water_.load(std::memory_order_acquire) + 63) / 64;
    size_t n = 0;
    for (size_t w = 0; w < words; ++w) {
      for (uint64_t bits = ready_[w].load(std::memory_order_acquire); bits; bits &= bits - 1) {
        const uint64_t bit = bits & -bits;
        const size_t slot = w * 64 + size_t(__builtin_ctzll(bits));
        save(reinterpret_cast<const uint64_t*>(index_.data())[slot], pages_.data() + slot * kPageSize);
        ready_[w].fetch_and(~bit, std::memory_order_relaxed);
        used_[w].fetch_and(~bit, std::memory_order_release);  // free each slot as soon as it is saved
        waiting_.fetch_sub(1, std::memory_order_relaxed);
        ++n;
      }
    }
    return n;
  }
  // Memory the ring holds now: its populated part, or as far as it grew.
  size_t bytes() const {
    const size_t slots = std::max(prefaulted_, size_t(high_water_.load(std::memory_order_relaxed)));
    return slots * (kPageSize + sizeof(uint64_t)) + 2 * words_ * sizeof(uint64_t);
  }
  // The most slots ever in use at once (the ring's growth).
  size_t high_water() const { return size_t(high_water_.load(std::memory_order_relaxed)); }

 private:
  const size_t budget_, prefaulted_, words_;
  GrowableBuffer pages_;
  GrowableBuffer index_;
  std::unique_ptr<std::atomic<uint64_t>[]> used_, ready_;
  alignas(64) std::atomic<uint64_t> high_water_{0};
  alignas(64) std::atomic<uint64_t> waiting_{0};
};

}  // namespace snap::uffd_wp
