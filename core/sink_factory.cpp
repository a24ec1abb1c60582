// make_sink: parses a --sink spec into a sink (plus the throttle wrapper), and the list of sink kinds.
#include <memory>

#include "core/error.h"
#include "core/sink.h"
#include "core/units.h"

namespace snap {

// One factory per sink file (core/sink_<kind>.cpp).
namespace sink_detail {
std::unique_ptr<Sink> make_null_sink();
std::unique_ptr<Sink> make_memory_sink(uint64_t capacity);
std::unique_ptr<Sink> make_file_sink(const std::string& path, bool fsync);
std::unique_ptr<Sink> make_exec_sink(const std::string& command);
std::unique_ptr<Sink> make_fail_sink(uint64_t limit);
std::unique_ptr<Sink> make_throttle_sink(std::unique_ptr<Sink> inner, uint64_t bytes_per_s);
}  // namespace sink_detail

const std::vector<SinkInfo>& sink_kinds() {
  static const std::vector<SinkInfo> kinds = {
      {"null", "null: count the bytes and discard them (the save-rate ceiling)"},
      {"memory", "memory: keep the image in RAM (shared with a forked saver); readable for --verify"},
      {"file", "file:PATH: write PATH (created/truncated); --fsync adds fdatasync before it counts as done"},
      {"exec", "exec:COMMAND: pipe the image into `/bin/sh -c COMMAND`; a non-zero exit fails the run"},
      {"fail", "fail:N: accept N bytes (e.g. 1M) then fail (tests the error paths)"},
  };
  return kinds;
}

std::unique_ptr<Sink> make_sink(const SinkOptions& opts) {
  const std::string& spec = opts.spec;
  const size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  const bool has_arg = colon != std::string::npos;
  const std::string arg = has_arg ? spec.substr(colon + 1) : "";
  auto needs_arg = [&](const char* syntax) {
    if (arg.empty()) throw UsageError("--sink: '" + kind + "' needs an argument: " + syntax);
  };
  auto takes_no_arg = [&]() {
    if (has_arg) throw UsageError("--sink: '" + kind + "' takes no argument (got '" + spec + "')");
  };

  std::unique_ptr<Sink> sink;
  if (kind == "null") {
    takes_no_arg();
    sink = sink_detail::make_null_sink();
  } else if (kind == "memory") {
    takes_no_arg();
    sink = sink_detail::make_memory_sink(opts.capacity_hint);
  } else if (kind == "file") {
    needs_arg("file:PATH");
    sink = sink_detail::make_file_sink(arg, opts.fsync);
  } else if (kind == "exec") {
    needs_arg("exec:COMMAND");
    sink = sink_detail::make_exec_sink(arg);
  } else if (kind == "fail") {
    needs_arg("fail:N");
    sink = sink_detail::make_fail_sink(parse_size(arg, "--sink fail:N"));
  } else {
    throw UsageError("--sink: unknown sink '" + spec + "' (known: null, memory, file:PATH, exec:COMMAND, fail:N)");
  }
  if (opts.bandwidth > 0) sink = sink_detail::make_throttle_sink(std::move(sink), opts.bandwidth);
  return sink;
}

}  // namespace snap
