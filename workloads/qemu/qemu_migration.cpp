// migrate_to_sink: drives one QEMU migration over QMP into a snapbench sink (see qemu_migration.h).
#include "workloads/qemu/qemu_migration.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "core/clock.h"
#include "core/run_stop.h"

namespace snap::qemu {

namespace {

// Reads the pipe until EOF into the sink and the parser, on its own thread. A failure (sink or
// stream) is kept for the driver, and the read end is closed so QEMU's writes fail with EPIPE
// instead of blocking forever.
class Pump {
 public:
  Pump(int read_fd, Sink& sink, MigrationStreamParser& parser) : fd_(read_fd), sink_(sink), parser_(parser) {
    thread_ = std::thread([this] { run(); });
  }
  // On a failure path QEMU may still hold the write end (hung, or not yet killed): stop reading.
  ~Pump() {
    stop_ = true;
    join();
    if (fd_ >= 0) close(fd_);
  }
  void join() {
    if (thread_.joinable()) thread_.join();
  }
  bool done() const { return done_.load(); }
  std::string error() const {
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }
  uint64_t end_ns() const { return end_ns_.load(); }

 private:
  void run() {
    std::vector<uint8_t> buf(1 << 20);
    try {
      for (;;) {
        pollfd p{fd_, POLLIN, 0};
        const int ready = poll(&p, 1, 50);
        if (ready < 0 && errno != EINTR) throw std::runtime_error(std::string("poll on QEMU's stream: ") + std::strerror(errno));
        if (ready <= 0) {
          if (stop_) throw std::runtime_error("stream abandoned");
          continue;
        }
        const ssize_t r = read(fd_, buf.data(), buf.size());
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) throw std::runtime_error(std::string("reading QEMU's stream: ") + std::strerror(errno));
        if (r == 0) break;
        sink_.write(buf.data(), size_t(r));
        parser_.feed(buf.data(), size_t(r));
      }
      end_ns_ = now_ns();
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(mu_);
      error_ = e.what();
      close(fd_);
      fd_ = -1;
    }
    done_ = true;
  }

  int fd_;
  Sink& sink_;
  MigrationStreamParser& parser_;
  std::thread thread_;
  std::atomic<bool> done_{false};
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> end_ns_{0};
  mutable std::mutex mu_;
  std::string error_;
};

uint64_t json_u64(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<uint64_t>() : 0;
}

}  // namespace

MigrationOutcome migrate_to_sink(QemuVm& vm, const MigrationOptions& o, Sink& sink, MigrationStreamParser& parser) {
  MigrationOutcome out;
  const double t = o.qmp_timeout_s;
  vm.execute("migrate-set-capabilities",
             {{"capabilities", nlohmann::json::array({{{"capability", "background-snapshot"},
                                                      {"state", o.background_snapshot}}})}},
             t);
  nlohmann::json params = {{"max-bandwidth", o.max_bandwidth ? o.max_bandwidth : kUnlimitedBandwidth}};
  if (o.downtime_limit_ms >= 0) params["downtime-limit"] = o.downtime_limit_ms;
  vm.execute("migrate-set-parameters", params, t);
  out.parameters = vm.execute("query-migrate-parameters", nlohmann::json::object(), t);
  out.capabilities = vm.execute("query-migrate-capabilities", nlohmann::json::object(), t);

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe for the stream: ") + std::strerror(errno));
  fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);  // fewer wake-ups; the default 64 KiB is fine too
  Pump pump(fds[0], sink, parser);
  try {
    vm.execute("getfd", {{"fdname", "snapbench-migration"}}, t, fds[1]);
  } catch (...) {
    close(fds[1]);
    throw;
  }
  close(fds[1]);  // QEMU holds its own copy now: EOF comes when QEMU closes it (or dies)

  const uint64_t t0 = now_ns();
  vm.execute("migrate", {{"uri", "fd:snapbench-migration"}}, t);
  const uint64_t deadline = t0 + uint64_t(o.timeout_s * 1e9);
  nlohmann::json q;
  for (;;) {
    q = vm.execute("query-migrate", nlohmann::json::object(), t);
    const std::string status = q.value("status", "");
    if (status == "completed") break;
    if (status == "failed" || status == "cancelled") {
      const std::string pump_error = pump.error();
      throw std::runtime_error("QEMU migration " + status + ": " + q.value("error-desc", std::string("no reason given")) +
                               (pump_error.empty() ? "" : " (snapbench side: " + pump_error + ")"));
    }
    if (!pump.error().empty()) {
      try {
        vm.execute("migrate_cancel", nlohmann::json::object(), t);
      } catch (...) {
      }
      throw std::runtime_error(pump.error());
    }
    if (o.max_passes > 0 && !out.forced_completion && q.contains("ram") &&
        json_u64(q["ram"], "dirty-sync-count") >= o.max_passes) {
      // Let the rest go in one stop-and-copy, whatever its size (QEMU's precopy has no pass limit).
      vm.execute("migrate-set-parameters", {{"downtime-limit", 2000000}}, t);
      out.forced_completion = true;
    }
    if (run_stop_requested()) {  // SIGTERM or the run's time limit: cancel, then fail with the reason
      try {
        vm.execute("migrate_cancel", nlohmann::json::object(), t);
      } catch (...) {
      }
      throw_if_run_stopped();
    }
    if (now_ns() > deadline) {
      try {
        vm.execute("migrate_cancel", nlohmann::json::object(), t);
      } catch (...) {
      }
      throw std::runtime_error("QEMU migration did not complete within " + std::to_string(int(o.timeout_s)) + " s (status " +
                               status + ")");
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(o.poll_interval_s));
  }
  // QEMU closes its end once the migration is cleaned up; wait for the pump to drain it.
  const uint64_t drain_deadline = now_ns() + uint64_t(t * 1e9);
  while (!pump.done()) {
    vm.check_alive();
    throw_if_run_stopped();
    if (now_ns() > drain_deadline) throw std::runtime_error("QEMU did not close the migration stream after completing");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  pump.join();
  if (!pump.error().empty()) throw std::runtime_error(pump.error());
  out.wall_s = ns_to_s((pump.end_ns() ? pump.end_ns() : now_ns()) - t0);
  parser.finish();
  sink.finish();

  out.final_query = q;
  out.total_time_s = double(json_u64(q, "total-time")) / 1000.0;
  out.downtime_s = double(json_u64(q, "downtime")) / 1000.0;
  out.setup_time_s = double(json_u64(q, "setup-time")) / 1000.0;
  if (q.contains("ram")) {
    const auto& r = q["ram"];
    out.dirty_sync_count = json_u64(r, "dirty-sync-count");
    out.normal_pages = json_u64(r, "normal");
    out.zero_pages = json_u64(r, "duplicate");
    out.transferred_bytes = json_u64(r, "transferred");
  }
  return out;
}

std::string cross_check(const MigrationOutcome& out, const MigrationStreamParser& parser) {
  std::string diff;
  auto check = [&](const char* what, uint64_t qemu, uint64_t parsed) {
    if (qemu != parsed)
      diff += std::string(diff.empty() ? "" : "; ") + what + ": QEMU " + std::to_string(qemu) + ", stream " +
              std::to_string(parsed);
  };
  const uint64_t parsed_normal = parser.pages_saved() - parser.zero_pages();
  check("normal pages", out.normal_pages, parsed_normal);
  check("zero pages", out.zero_pages, parser.zero_pages());
  return diff;
}

}  // namespace snap::qemu
