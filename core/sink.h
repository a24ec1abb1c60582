// Sinks: where an image's bytes go (null, memory, file, exec, and a failing one for tests).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace snap {

// A byte stream destination. Not thread-safe: one writer at a time (strategies serialise).
// Errors throw SinkError and are never swallowed.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual void write(const void* data, size_t len) = 0;
  // Flush / fsync / close. Called once after the last write; throws SinkError on failure.
  virtual void finish() = 0;
  virtual uint64_t bytes_written() const = 0;
  // Name as in the CSV (`null`, `memory`, `file`, `exec`, `fail`).
  virtual std::string kind() const = 0;
  // The whole stream, for sinks that keep it (memory, file after finish); empty if not readable.
  virtual bool readable() const { return false; }
  // Backs the first `bytes` of the stream with memory now, before the timed phase, for a sink that
  // keeps the stream in memory (memory, and the verify tee's copy): otherwise each first touch is
  // paid inside the snapshot (11 us a page, 2.9 s per GiB, on the AMD machine). Others ignore it.
  virtual void prepare(uint64_t /*bytes*/) {}
  virtual std::vector<uint8_t> read_back() const { return {}; }
};

struct SinkOptions {
  std::string spec = "null";       // null | memory | file:PATH | exec:COMMAND | fail:N
  bool fsync = false;              // file: fdatasync before close
  uint64_t bandwidth = 0;          // bytes/s cap, 0 = none
  // Upper bound of the stream size: the memory sink reserves it as a MAP_SHARED mapping so a forked
  // child's writes are visible to the parent.
  uint64_t capacity_hint = 0;
};

// Builds a sink from its spec (throws UsageError on a bad spec). Wraps it in a throttle when
// bandwidth > 0.
std::unique_ptr<Sink> make_sink(const SinkOptions& opts);

// Registry of sink kinds for `snapbench list`.
struct SinkInfo {
  std::string name, help;
};
const std::vector<SinkInfo>& sink_kinds();

}  // namespace snap
