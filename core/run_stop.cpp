// The stop request and the registry of sink commands' process groups (see run_stop.h).
#include "core/run_stop.h"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

namespace snap {

namespace {
std::atomic<const char*> g_sticky_reason{nullptr};  // set by a signal: stays set
std::atomic<const char*> g_run_reason{nullptr};     // set by a time limit: cleared after its run
constexpr int kMaxGroups = 64;
std::atomic<pid_t> g_groups[kMaxGroups];
}  // namespace

void request_run_stop(const char* reason, bool sticky) {
  const char* none = nullptr;
  (sticky ? g_sticky_reason : g_run_reason).compare_exchange_strong(none, reason);
}

bool run_stop_requested() {
  return g_sticky_reason.load(std::memory_order_relaxed) || g_run_reason.load(std::memory_order_relaxed);
}

bool run_stop_sticky() { return g_sticky_reason.load() != nullptr; }

void clear_run_stop() { g_run_reason.store(nullptr); }

void throw_if_run_stopped() {
  if (!run_stop_requested()) return;
  const char* r = g_sticky_reason.load();
  if (!r) r = g_run_reason.load();
  throw RunStopped(r ? r : "stopped");
}

void sleep_unless_stopped(double seconds) {
  using clock = std::chrono::steady_clock;
  const clock::time_point end =
      clock::now() + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(std::max(0.0, seconds)));
  for (;;) {
    throw_if_run_stopped();
    const clock::time_point now = clock::now();
    if (now >= end) return;
    const clock::duration step = std::chrono::milliseconds(20);
    std::this_thread::sleep_for(std::min(clock::duration(end - now), step));
  }
}

void register_child_group(pid_t pgid) {
  for (auto& g : g_groups) {
    pid_t free_slot = 0;
    if (g.compare_exchange_strong(free_slot, pgid)) return;
  }
  // More live commands than slots: this one is still killed by its sink's destructor on every normal
  // exit path, only not by an exit from a signal handler.
}

void unregister_child_group(pid_t pgid) {
  for (auto& g : g_groups) {
    pid_t mine = pgid;
    if (g.compare_exchange_strong(mine, 0)) return;
  }
}

void kill_child_groups() {
  for (auto& g : g_groups)
    if (const pid_t p = g.load(); p > 0) kill(-p, SIGKILL);
}

}  // namespace snap
