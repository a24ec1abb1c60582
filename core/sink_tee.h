// TeeSink: forwards every byte to a primary sink and keeps a readable in-memory copy (fork-visible),
// timing its own copy so the harness can take it out of the snapshot's times.
#pragma once
#include <atomic>
#include <memory>

#include "core/sink.h"

namespace snap {

class TeeSink final : public Sink {
 public:
  TeeSink(std::unique_ptr<Sink> primary, uint64_t capacity);
  void write(const void* data, size_t len) override;
  void finish() override;
  void prepare(uint64_t bytes) override;
  // What the user's sink took (on a failing write the copy may lack that write's bytes).
  uint64_t bytes_written() const override { return primary_->bytes_written(); }
  std::string kind() const override { return primary_->kind(); }
  bool readable() const override { return true; }
  std::vector<uint8_t> read_back() const override { return capture_->read_back(); }

  // The harness says when the writers are paused, so the copy's time inside a pause is known apart.
  void set_paused(bool paused) { clock_->paused.store(paused, std::memory_order_relaxed); }
  // Seconds spent copying into the in-memory copy (by any process: fork-cow's child writes too), and
  // the part of them while the writers were paused. Both are the verifier's, not the strategy's.
  double copy_s() const;
  double copy_paused_s() const;

 private:
  // In a MAP_SHARED page, so a forked child's copies are counted in the parent.
  struct Clock {
    std::atomic<uint64_t> copy_ns{0}, copy_paused_ns{0};
    std::atomic<bool> paused{false};
  };
  std::unique_ptr<Sink> primary_;
  std::unique_ptr<Sink> capture_;
  std::shared_ptr<Clock> clock_;
};

}  // namespace snap
