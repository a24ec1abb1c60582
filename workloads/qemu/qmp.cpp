// QmpClient: the QMP wire protocol over a unix socket (see qmp.h). One JSON object per line.
#include "workloads/qemu/qmp.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "core/clock.h"
#include "core/run_stop.h"

namespace snap::qemu {

namespace {
uint64_t deadline_after(double s) { return now_ns() + uint64_t(s * 1e9); }
}  // namespace

QmpClient::QmpClient(const std::string& path, double timeout_s, const std::function<void()>& check_alive) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) throw QmpError("QMP socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const uint64_t deadline = deadline_after(timeout_s);
  for (;;) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw QmpError(std::string("QMP socket: ") + std::strerror(errno));
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    if (err != ENOENT && err != ECONNREFUSED)
      throw QmpError("cannot connect to QMP socket " + path + ": " + std::strerror(err));
    if (check_alive) check_alive();
    throw_if_run_stopped();
    if (now_ns() >= deadline)
      throw QmpError("QEMU's QMP socket did not accept a connection within " + std::to_string(timeout_s) + " s");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  try {
    nlohmann::json greeting = read_message(deadline_after(timeout_s));
    if (greeting.is_null() || !greeting.contains("QMP")) throw QmpError("no QMP greeting from QEMU");
    const auto& v = greeting["QMP"]["version"]["qemu"];
    version_ = std::to_string(v.value("major", 0)) + "." + std::to_string(v.value("minor", 0)) + "." +
               std::to_string(v.value("micro", 0));
    execute("qmp_capabilities", nlohmann::json::object(), timeout_s);
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

QmpClient::~QmpClient() {
  if (fd_ >= 0) ::close(fd_);
}

void QmpClient::send(const std::string& text, int pass_fd) {
  size_t off = 0;
  bool fd_sent = pass_fd < 0;
  while (off < text.size()) {
    iovec iov{const_cast<char*>(text.data() + off), text.size() - off};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (!fd_sent) {
      // The descriptor rides on the first byte(s) of the command, as QEMU's monitor expects.
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    }
    const ssize_t w = sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw QmpError(std::string("QMP write: ") + std::strerror(errno));
    }
    fd_sent = true;
    off += size_t(w);
  }
}

nlohmann::json QmpClient::read_message(uint64_t deadline_ns) {
  for (;;) {
    const size_t nl = inbuf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = inbuf_.substr(0, nl);
      inbuf_.erase(0, nl + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      try {
        return nlohmann::json::parse(line);
      } catch (const nlohmann::json::exception& e) {
        throw QmpError("QEMU sent a malformed QMP message: " + line.substr(0, 200));
      }
    }
    const uint64_t now = now_ns();
    if (now >= deadline_ns) return nullptr;
    pollfd p{fd_, POLLIN, 0};
    const int wait_ms = int(std::min<uint64_t>((deadline_ns - now) / 1000000 + 1, 1000));
    const int r = poll(&p, 1, wait_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw QmpError(std::string("QMP poll: ") + std::strerror(errno));
    }
    if (r == 0) continue;
    char buf[65536];
    const ssize_t got = ::read(fd_, buf, sizeof buf);
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      throw QmpError(std::string("QMP read: ") + std::strerror(errno));
    }
    if (got == 0) throw QmpError("QEMU closed the QMP connection");
    inbuf_.append(buf, size_t(got));
  }
}

nlohmann::json QmpClient::execute(const std::string& command, const nlohmann::json& arguments, double timeout_s,
                                  int pass_fd) {
  const uint64_t id = next_id_++;
  nlohmann::json request = {{"execute", command}, {"id", id}};
  if (!arguments.empty()) request["arguments"] = arguments;
  send(request.dump() + "\n", pass_fd);
  const uint64_t deadline = deadline_after(timeout_s);
  for (;;) {
    nlohmann::json msg = read_message(deadline);
    if (msg.is_null())
      throw QmpError("QEMU did not answer '" + command + "' within " + std::to_string(int(timeout_s)) + " s");
    if (msg.contains("event")) {
      events_.push_back(std::move(msg));
      continue;
    }
    if (!msg.contains("id") || msg["id"] != id) continue;  // an answer to an abandoned (timed-out) command
    if (msg.contains("error")) {
      const auto& e = msg["error"];
      throw QmpError("QEMU refused '" + command + "': " + e.value("desc", e.dump()));
    }
    return msg.value("return", nlohmann::json::object());
  }
}

nlohmann::json QmpClient::wait_event(const std::string& name, double timeout_s) {
  const uint64_t deadline = deadline_after(timeout_s);
  for (;;) {
    for (auto it = events_.begin(); it != events_.end(); ++it)
      if ((*it)["event"] == name) {
        nlohmann::json e = std::move(*it);
        events_.erase(it);
        return e;
      }
    nlohmann::json msg = read_message(deadline);
    if (msg.is_null()) return nullptr;
    if (msg.contains("event")) events_.push_back(std::move(msg));
  }
}

}  // namespace snap::qemu
