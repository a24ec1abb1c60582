// Helpers shared by the strategy and tracker tests: a small verified run spec, the page-table
// uffd-wp bit from /proc/self/pagemap, the current SIGSEGV disposition, thread states and counts, open
// descriptors, and the writers' stamp check.
#pragma once
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <set>
#include <cstdint>
#include <fstream>
#include <functional>
#include <thread>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/image.h"
#include "core/region.h"
#include "core/units.h"
#include "harness/run.h"
#include "workloads/workload.h"

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

// A small never-touched region: every non-zero page afterwards was written by the workload.
inline snap::RegionOptions small_region(uint64_t bytes = 16ull << 20) {
  snap::RegionOptions r;
  r.bytes = bytes;
  r.populate = 0;
  return r;
}

// How many descriptors this process holds open (entries of /proc/self/fd).
inline int count_open_fds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) throw std::runtime_error("cannot open /proc/self/fd");
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

// How many of this process's threads have a name (pthread_setname_np) starting with `prefix`.
inline int count_threads_named(const std::string& prefix) {
  int n = 0;
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) throw std::runtime_error("cannot open /proc/self/task");
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string comm;
    if (std::getline(in, comm) && comm.rfind(prefix, 0) == 0) ++n;
  }
  closedir(d);
  return n;
}

// Checks every written page of `region` for the writers' stamps (workloads/workload.h), for any
// workload whose writers stamp the same way (host threads, a guest's vCPUs); returns how many stamps
// were found. A stamp is valid when its slot matches stamp_offset(seq), its writer id is below
// `writers` and it names the page it is in; every seq is written once, so no seq may appear twice,
// and a non-zero page without a stamp was written by something else.
inline size_t check_stamps(const snap::Region& region, int writers) {
  std::set<uint64_t> seen;
  size_t written_pages = 0;
  for (size_t i = 0; i < region.pages(); ++i) {
    const uint8_t* page = region.page(i);
    if (snap::page_is_zero(page)) continue;
    ++written_pages;
    size_t stamps = 0;
    for (size_t slot = 0; slot < 255; ++slot) {
      uint64_t seq, index;
      std::memcpy(&seq, page + slot * 16, 8);
      std::memcpy(&index, page + slot * 16 + 8, 8);
      if (seq == 0 && index == 0) continue;
      EXPECT_NE(seq, 0u) << "page " << i << " slot " << slot;
      EXPECT_EQ(snap::stamp_offset(seq), slot * 16) << "page " << i;
      EXPECT_LT(int(seq & 0xff), writers) << "page " << i;
      EXPECT_EQ(index, i) << "page " << i << " slot " << slot;
      EXPECT_TRUE(seen.insert(seq).second) << "seq " << seq << " written twice";
      ++stamps;
    }
    EXPECT_GT(stamps, 0u) << "page " << i << " is non-zero but has no stamp";
  }
  EXPECT_GT(written_pages, 0u);
  return seen.size();
}

}  // namespace snaptest
