// Helpers shared by the strategy and tracker tests: a small verified run spec, the page-table
// uffd-wp bit from /proc/self/pagemap, the current SIGSEGV disposition, and thread states.
#pragma once
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <thread>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/units.h"
#include "harness/run.h"

namespace snaptest {

// A WorkloadControl without writers that checks the protocol a strategy owes (no double pause, a
// consistency point only while paused) and counts the calls.
class RecordingControl final : public snap::WorkloadControl {
 public:
  void pause() override {
    if (paused) throw std::logic_error("paused twice");
    paused = true;
    ++pauses;
  }
  void resume() override {
    if (paused) ++resumes;
    paused = false;
  }
  void consistency_point() override {
    if (!paused) throw std::logic_error("consistency point while running");
    ++consistency_points;
  }
  bool paused = false;
  int pauses = 0, resumes = 0, consistency_points = 0;
};

// A quick end-to-end run: 32 MiB, 2 idle writers, verified, image kept in memory.
inline snap::RunSpec verified_spec(const std::string& strategy) {
  snap::RunSpec s;
  s.strategy = strategy;
  s.mem_bytes = 32ull << 20;
  s.writers = 2;
  s.warmup_s = 0.05;
  s.verify = true;
  s.sink = "memory";
  return s;
}

constexpr uint64_t kPagemapUffdWp = uint64_t(1) << 57;  // pte is uffd write-protected

// The /proc/self/pagemap entries of [base, base + pages); throws if the file cannot be read.
inline std::vector<uint64_t> pagemap_entries(const void* base, size_t pages) {
  std::vector<uint64_t> entries(pages);
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open /proc/self/pagemap");
  const off_t offset = off_t(reinterpret_cast<uintptr_t>(base) / snap::kPageSize * sizeof(uint64_t));
  const ssize_t want = ssize_t(pages * sizeof(uint64_t));
  const ssize_t got = pread(fd, entries.data(), size_t(want), offset);
  close(fd);
  if (got != want) throw std::runtime_error("short read of /proc/self/pagemap");
  return entries;
}

// Pages of [base, base + pages) still write-protected by userfaultfd.
inline size_t pages_still_write_protected(const void* base, size_t pages) {
  size_t n = 0;
  for (uint64_t e : pagemap_entries(base, pages)) n += (e & kPagemapUffdWp) != 0;
  return n;
}

inline struct sigaction current_segv_action() {
  struct sigaction now {};
  sigaction(SIGSEGV, nullptr, &now);
  return now;
}

// The scheduler state letter of one of this process's threads ('R' running or runnable, 'S'
// sleeping, ...) from /proc/self/task/TID/stat; '?' when the thread is gone.
inline char thread_state(pid_t tid) {
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close = stat.rfind(')');  // the name may hold spaces and parentheses
  return close == std::string::npos || close + 2 >= stat.size() ? '?' : stat[close + 2];
}

// The id of this process's thread named `name` (pthread_setname_np), or -1.
inline pid_t thread_named(const std::string& name) {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  pid_t found = -1;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string comm;
    std::getline(in, comm);
    if (comm == name) {
      found = pid_t(std::stol(e->d_name));
      break;
    }
  }
  closedir(dir);
  return found;
}

// Polls `ready` every millisecond until it holds or `limit` passes; returns whether it held. Tests
// wait for an observable state with this instead of sleeping a fixed time that a loaded machine
// can overrun.
inline bool wait_until(const std::function<bool()>& ready, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!ready()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace snaptest
