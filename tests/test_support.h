// Helpers shared by the strategy and tracker tests: the one test WorkloadControl, a small verified run
// spec, the page-table uffd-wp bit from /proc/self/pagemap, the current SIGSEGV disposition, thread
// states and counts, open descriptors, and the writers' stamp check.
#pragma once
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
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
#include "core/pagemap.h"
#include "core/region.h"
#include "core/units.h"
#include "harness/run.h"
#include "strategies/strategy.h"
#include "strategies/tracking/tracker.h"
#include "workloads/workload.h"

namespace snaptest {

// The one WorkloadControl the tests give a strategy they call directly. It checks the protocol a
// strategy owes (no double pause, the consistency point only while paused) and counts the calls.
// Given a region, it copies it at the consistency point (the reference the image must match) and can
// run writer threads of its own into it (pause parks them); `after_resume` runs at every resume (a
// test writes there while, e.g., a forked child is alive).
class TestControl final : public snap::WorkloadControl {
 public:
  TestControl() = default;
  explicit TestControl(snap::Region& region, int writers = 0,
                       std::chrono::microseconds interval = std::chrono::microseconds(0))
      : region_(&region) {
    for (int w = 0; w < writers; ++w) threads_.emplace_back([this, w, interval] { run(w, interval); });
  }
  ~TestControl() override { stop(); }
  TestControl(const TestControl&) = delete;
  TestControl& operator=(const TestControl&) = delete;

  void pause() override {
    if (paused) throw std::logic_error("paused twice");
    pause_.store(true);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (parked_.load() != int(threads_.size())) {
      if (std::chrono::steady_clock::now() > deadline) {
        pause_.store(false);
        throw std::runtime_error("test writers did not park");
      }
      std::this_thread::yield();
    }
    paused = true;
    ++pauses;
  }
  void resume() override {
    if (paused) ++resumes;
    paused = false;
    pause_.store(false);
    if (after_resume) after_resume();
  }
  void consistency_point() override {
    if (!paused) throw std::logic_error("consistency point while running");
    ++consistency_points;
    if (region_ != nullptr) reference.assign(region_->base(), region_->base() + region_->bytes());
  }
  // Stops and joins the writer threads (idempotent).
  void stop() {
    stop_.store(true);
    pause_.store(false);
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  uint64_t writes() const { return writes_.load(); }

  std::function<void()> after_resume;
  bool paused = false;
  int pauses = 0, resumes = 0, consistency_points = 0;
  std::vector<uint8_t> reference;  // the region at the consistency point (empty without a region)

 private:
  // Each write stores its sequence number in a random page, at a slot that moves with it.
  void run(int w, std::chrono::microseconds interval) {
    uint64_t x = 0x9e3779b97f4a7c15ull * uint64_t(w + 1);
    while (!stop_.load(std::memory_order_relaxed)) {
      if (pause_.load()) {
        parked_.fetch_add(1);
        while (pause_.load() && !stop_.load()) std::this_thread::yield();
        parked_.fetch_sub(1);
        continue;
      }
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      const size_t page = size_t(x % region_->pages());
      const uint64_t n = writes_.fetch_add(1) + 1;
      std::memcpy(region_->page(page) + (n % 255) * 16, &n, sizeof n);
      if (interval.count()) std::this_thread::sleep_for(interval);
    }
  }

  snap::Region* region_ = nullptr;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false}, pause_{false};
  std::atomic<int> parked_{0};
  std::atomic<uint64_t> writes_{0};
};

// Why this machine cannot run `strategy` (with `tracker`, "" for none) on `workload`, decided as the
// harness decides it before a run: the combination, the workload's, the strategy's and the tracker's
// probes. Empty when it can.
inline std::string unsupported_reason(const std::string& strategy, const std::string& tracker,
                                      const std::string& workload) {
  const snap::StrategyEntry& entry = snap::strategy_registry().get(strategy);
  const snap::TrackerEntry* t = tracker.empty() ? nullptr : &snap::tracker_registry().get(tracker);
  if (snap::Support s = snap::combination_support(entry, t, workload); !s.supported) return s.reason;
  if (snap::Support s = snap::workload_registry().get(workload).probe(); !s.supported) return "workload " + workload + ": " + s.reason;
  if (snap::Support s = entry.make()->probe(); !s.supported) return s.reason;
  if (t != nullptr)
    if (snap::Support s = t->make()->probe(); !s.supported) return "tracker " + tracker + ": " + s.reason;
  return "";
}

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


// The /proc/self/pagemap entries of [base, base + pages); throws if the file cannot be read.
inline std::vector<uint64_t> pagemap_entries(const void* base, size_t pages) {
  std::vector<uint64_t> entries(pages);
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open /proc/self/pagemap");
  const bool ok = snap::read_pagemap(fd, base, pages, entries.data());
  close(fd);
  if (!ok) throw std::runtime_error("short read of /proc/self/pagemap");
  return entries;
}

// Whether a read fault on never-touched private anonymous memory maps the kernel's shared zero page
// (no memory behind it, as on the Intel machine) or allocates a page of its own (the AMD machine's
// 6.18.44-fc-v1272: after reading 16 fresh pages the mapping's smaps shows Rss 64 kB, Private_Dirty,
// Anonymous). A test that counts memory (copy-on-write copies, RSS) asks this instead of assuming.
inline bool read_fault_maps_zero_page() {
  constexpr size_t kPages = 4;
  void* p = mmap(nullptr, kPages * snap::kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("read_fault_maps_zero_page: mmap");
  madvise(p, kPages * snap::kPageSize, MADV_NOHUGEPAGE);
  volatile const uint8_t* bytes = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < kPages; ++i) (void)bytes[i * snap::kPageSize];
  char start[32];
  std::snprintf(start, sizeof start, "%lx-", static_cast<unsigned long>(reinterpret_cast<uintptr_t>(p)));
  std::ifstream smaps("/proc/self/smaps");
  long rss_kb = -1;
  bool in_block = false;
  for (std::string line; std::getline(smaps, line);) {
    if (line.rfind(start, 0) == 0) in_block = true;
    else if (in_block && line.rfind("Rss:", 0) == 0) {
      rss_kb = std::stol(line.substr(4));
      break;
    }
  }
  munmap(p, kPages * snap::kPageSize);
  if (rss_kb < 0) throw std::runtime_error("read_fault_maps_zero_page: the mapping is not in /proc/self/smaps");
  return rss_kb == 0;
}

// Pages of [base, base + pages) still write-protected by userfaultfd.
inline size_t pages_still_write_protected(const void* base, size_t pages) {
  size_t n = 0;
  for (uint64_t e : pagemap_entries(base, pages)) n += (e & snap::kPagemapUffdWp) != 0;
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

// The ids of this process's threads whose name (pthread_setname_np) starts with `prefix`.
inline std::vector<pid_t> threads_named(const std::string& prefix) {
  std::vector<pid_t> tids;
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) throw std::runtime_error("cannot open /proc/self/task");
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(std::string("/proc/self/task/") + e->d_name + "/comm");
    std::string comm;
    if (std::getline(in, comm) && comm.rfind(prefix, 0) == 0) tids.push_back(pid_t(std::stol(e->d_name)));
  }
  closedir(d);
  return tids;
}

// How many of this process's threads have a name starting with `prefix`.
inline int count_threads_named(const std::string& prefix) { return int(threads_named(prefix).size()); }

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
