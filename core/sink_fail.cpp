// The `fail:N` test sink: accepts N bytes (kept in memory for inspection), then throws SinkError.
#include <memory>

#include "core/error.h"
#include "core/sink.h"

namespace snap::sink_detail {

std::unique_ptr<Sink> make_memory_sink(uint64_t capacity);  // sink_memory.cpp

namespace {

class FailSink final : public Sink {
 public:
  explicit FailSink(uint64_t limit) : limit_(limit), kept_(make_memory_sink(limit)) {}
  void write(const void* data, size_t len) override {
    const uint64_t room = limit_ - kept_->bytes_written();
    if (len <= room) {
      kept_->write(data, len);
      return;
    }
    if (room) kept_->write(data, room);
    throw SinkError("injected sink failure after " + std::to_string(limit_) + " bytes");
  }
  void finish() override { kept_->finish(); }
  uint64_t bytes_written() const override { return kept_->bytes_written(); }
  std::string kind() const override { return "fail"; }
  bool readable() const override { return true; }
  std::vector<uint8_t> read_back() const override { return kept_->read_back(); }

 private:
  uint64_t limit_;
  std::unique_ptr<Sink> kept_;
};

}  // namespace

std::unique_ptr<Sink> make_fail_sink(uint64_t limit) { return std::make_unique<FailSink>(limit); }

}  // namespace snap::sink_detail
