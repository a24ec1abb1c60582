// The `null` sink: counts bytes and discards them (the ceiling of a strategy's save rate).
#include <atomic>
#include <memory>

#include "core/sink.h"

namespace snap::sink_detail {

// Defined in sink_memory.cpp: a counter in a MAP_SHARED page, so a forked child's count is visible.
std::shared_ptr<std::atomic<uint64_t>> make_fork_shared_counter();

namespace {

class NullSink final : public Sink {
 public:
  NullSink() : written_(make_fork_shared_counter()) {}
  void write(const void*, size_t len) override { written_->fetch_add(len, std::memory_order_relaxed); }
  void finish() override {}
  uint64_t bytes_written() const override { return written_->load(std::memory_order_relaxed); }
  std::string kind() const override { return "null"; }

 private:
  std::shared_ptr<std::atomic<uint64_t>> written_;
};

}  // namespace

std::unique_ptr<Sink> make_null_sink() { return std::make_unique<NullSink>(); }

}  // namespace snap::sink_detail
