// A QMP client: one connection to a QEMU monitor's unix socket (greeting, capabilities negotiation,
// commands with timeouts, fd passing for `getfd`, asynchronous events kept in arrival order).
#pragma once
#include <deque>
#include <functional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace snap::qemu {

// QEMU answered a command with an error, did not answer in time, or the connection broke.
struct QmpError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class QmpClient {
 public:
  // Connects to the socket at `path`, retrying until `timeout_s` (QEMU creates it while starting);
  // `check_alive` runs between retries and throws if QEMU has already died. Reads the greeting and
  // sends qmp_capabilities.
  QmpClient(const std::string& path, double timeout_s, const std::function<void()>& check_alive);
  ~QmpClient();
  QmpClient(const QmpClient&) = delete;
  QmpClient& operator=(const QmpClient&) = delete;

  // Runs `command` and returns its "return" member. Throws QmpError with QEMU's error description,
  // or when no answer came within `timeout_s`. With `pass_fd` >= 0 the descriptor travels with the
  // command (SCM_RIGHTS), as `getfd` and `add-fd` expect.
  nlohmann::json execute(const std::string& command, const nlohmann::json& arguments = nlohmann::json::object(),
                         double timeout_s = 10.0, int pass_fd = -1);
  // Waits up to `timeout_s` for an event named `name` (one already received counts); returns it
  // (and removes it from the queue) or null when none came.
  nlohmann::json wait_event(const std::string& name, double timeout_s);
  // Events received so far and not yet taken.
  const std::deque<nlohmann::json>& events() const { return events_; }
  // The QEMU version from the greeting, "major.minor.micro".
  const std::string& version() const { return version_; }

 private:
  // Reads one message, waiting until `deadline_ns` (monotonic); null on timeout.
  nlohmann::json read_message(uint64_t deadline_ns);
  void send(const std::string& text, int pass_fd);

  int fd_ = -1;
  std::string inbuf_;
  std::deque<nlohmann::json> events_;
  uint64_t next_id_ = 1;
  std::string version_;
};

}  // namespace snap::qemu
