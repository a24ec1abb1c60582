// Error types shared by the suite: usage errors (exit 2) versus run-time failures.
#pragma once
#include <stdexcept>
#include <string>

namespace snap {

// Bad input from the user (flag, spec, parameter). The CLI prints it on one line and exits with 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A sink could not take the bytes (I/O error, closed pipe, injected failure).
struct SinkError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An image is truncated, corrupt or of an unknown version.
struct ImageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The kernel lacks what the chosen parameters need (a strategy's probe() passed, but e.g. a
// parameter value asks for a feature it does not offer). The run becomes status=unsupported.
struct UnsupportedError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A system call failed: message plus strerror(errno).
[[noreturn]] void throw_errno(const std::string& what);

}  // namespace snap
