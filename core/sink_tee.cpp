// A sink that forwards to the user's sink and keeps a copy in memory, so an image sent to a sink that
// cannot be read back (null, exec) can still be verified or kept with --image. The copy is the
// verifier's cost: its memory is backed before the snapshot (prepare) and its time is counted apart.
#include "core/sink_tee.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "core/clock.h"
#include "core/error.h"
#include "core/units.h"

namespace snap {

TeeSink::TeeSink(std::unique_ptr<Sink> primary, uint64_t capacity)
    : primary_(std::move(primary)) {
  SinkOptions copy;
  copy.spec = "memory";
  copy.capacity_hint = capacity;
  capture_ = make_sink(copy);
  static_assert(std::atomic<uint64_t>::is_always_lock_free, "a shared clock must be address-free");
  void* p = mmap(nullptr, kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw SinkError(std::string("tee sink: mmap of its clock: ") + std::strerror(errno));
  clock_ = std::shared_ptr<Clock>(new (p) Clock{}, [](Clock* c) { munmap(c, kPageSize); });
}

void TeeSink::write(const void* data, size_t len) {
  primary_->write(data, len);
  const uint64_t t0 = now_ns();
  capture_->write(data, len);
  const uint64_t ns = now_ns() - t0;
  clock_->copy_ns.fetch_add(ns, std::memory_order_relaxed);
  if (clock_->paused.load(std::memory_order_relaxed)) clock_->copy_paused_ns.fetch_add(ns, std::memory_order_relaxed);
}

void TeeSink::finish() {
  primary_->finish();
  capture_->finish();
}

void TeeSink::prepare(uint64_t bytes) {
  primary_->prepare(bytes);
  capture_->prepare(bytes);
}

double TeeSink::copy_s() const { return ns_to_s(clock_->copy_ns.load(std::memory_order_relaxed)); }
double TeeSink::copy_paused_s() const { return ns_to_s(clock_->copy_paused_ns.load(std::memory_order_relaxed)); }

}  // namespace snap
