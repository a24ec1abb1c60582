// A bandwidth cap around any sink: a token bucket on bytes, paced in slices of at most ~1 ms.
#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>

#include "core/clock.h"
#include "core/run_stop.h"
#include "core/sink.h"
#include "core/units.h"

namespace snap::sink_detail {

namespace {

class ThrottleSink final : public Sink {
 public:
  ThrottleSink(std::unique_ptr<Sink> inner, uint64_t bytes_per_s)
      : inner_(std::move(inner)), rate_(double(bytes_per_s)) {
    // A slice is what the cap allows in 1 ms (at least a page, at most 1 MiB), so the stream is
    // smooth at the millisecond scale rather than bursty at the writer's 1 MiB flushes.
    slice_ = std::clamp<uint64_t>(bytes_per_s / 1000, kPageSize, 1 << 20);
    // Credit for 20 ms (at least 4 slices) absorbs sleep overshoot and late wake-ups on a busy
    // machine, which would otherwise be lost and pull the achieved rate below the cap; it also bounds
    // how far the stream can run ahead after the inner sink was slower than the cap for a while.
    burst_ = std::max(4.0 * double(slice_), 0.020 * rate_);
  }

  void write(const void* data, size_t len) override {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    while (len > 0) {
      const size_t n = std::min<size_t>(len, slice_);
      acquire(double(n));
      inner_->write(p, n);
      p += n;
      len -= n;
    }
  }
  void finish() override { inner_->finish(); }
  void prepare(uint64_t bytes) override { inner_->prepare(bytes); }
  uint64_t bytes_written() const override { return inner_->bytes_written(); }
  std::string kind() const override { return inner_->kind(); }
  bool readable() const override { return inner_->readable(); }
  std::vector<uint8_t> read_back() const override { return inner_->read_back(); }

 private:
  void refill() {
    const uint64_t now = now_ns();
    if (last_ns_ == 0) last_ns_ = now;  // the bucket starts empty at the first write
    tokens_ = std::min(burst_, tokens_ + double(now - last_ns_) * rate_ * 1e-9);
    last_ns_ = now;
  }
  void acquire(double n) {
    refill();
    while (tokens_ < n) {
      throw_if_run_stopped();  // a cap of 1 B/s must not outlast the run's time limit or a SIGTERM
      const double wait_ns = std::min((n - tokens_) / rate_ * 1e9, 1e6);
      std::this_thread::sleep_for(std::chrono::nanoseconds(uint64_t(wait_ns) + 1));
      refill();
    }
    tokens_ -= n;
  }

  std::unique_ptr<Sink> inner_;
  double rate_;
  uint64_t slice_ = 0;
  double burst_ = 0;
  double tokens_ = 0;
  uint64_t last_ns_ = 0;
};

}  // namespace

std::unique_ptr<Sink> make_throttle_sink(std::unique_ptr<Sink> inner, uint64_t bytes_per_s) {
  return std::make_unique<ThrottleSink>(std::move(inner), bytes_per_s);
}

}  // namespace snap::sink_detail
