// TeeSink: forwards every byte to a primary sink and keeps a readable in-memory copy (fork-visible).
#pragma once
#include <memory>

#include "core/sink.h"

namespace snap {

class TeeSink final : public Sink {
 public:
  TeeSink(std::unique_ptr<Sink> primary, uint64_t capacity);
  void write(const void* data, size_t len) override;
  void finish() override;
  // What the user's sink took (on a failing write the copy may lack that write's bytes).
  uint64_t bytes_written() const override { return primary_->bytes_written(); }
  std::string kind() const override { return primary_->kind(); }
  bool readable() const override { return true; }
  std::vector<uint8_t> read_back() const override { return capture_->read_back(); }

 private:
  std::unique_ptr<Sink> primary_;
  std::unique_ptr<Sink> capture_;
};

}  // namespace snap
