// A sink that forwards to the user's sink and keeps a copy in memory, so an image sent to a sink that
// cannot be read back (null, exec) can still be verified or kept with --image.
#include "core/sink_tee.h"

namespace snap {

TeeSink::TeeSink(std::unique_ptr<Sink> primary, uint64_t capacity)
    : primary_(std::move(primary)) {
  SinkOptions copy;
  copy.spec = "memory";
  copy.capacity_hint = capacity;
  capture_ = make_sink(copy);
}

void TeeSink::write(const void* data, size_t len) {
  primary_->write(data, len);
  capture_->write(data, len);
}

void TeeSink::finish() {
  primary_->finish();
  capture_->finish();
}

}  // namespace snap
