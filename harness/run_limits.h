// What a run may take before it starts: the memory it needs against what the machine has, and its
// wall-clock limit against its estimate; and the watchdog that ends a run at its limit.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "harness/run.h"

namespace snap {

// The memory a run needs at its worst, with its parts named ("region 1 TiB + verify reference 1 TiB").
struct MemoryNeed {
  uint64_t bytes = 0;
  std::string parts;
};
MemoryNeed run_memory_need(const RunSpec& spec);

// MemAvailable (bounded by RLIMIT_AS), or the environment variable SNAPBENCH_MEMAVAILABLE (a size,
// e.g. "8G") when set: read by this check only, so a test can refuse a run without allocating.
uint64_t memory_available_for_runs();

// The run's wall-clock limit: spec.time_limit_s, or ten times its estimate within [60 s, 1 day].
double run_time_limit_s(const RunSpec& spec);

// Throws UsageError naming both sizes when the run needs more memory than is available (unless
// spec.skip_memory_check), or when its estimate exceeds its time limit.
void check_run_limits(const RunSpec& spec);

// Ends the run in progress at its time limit: past it, a stop request "timed out after N s" (the
// run's clean-up then runs as for any failure). The destructor disarms it and clears the request.
class RunWatchdog {
 public:
  explicit RunWatchdog(double limit_s);
  ~RunWatchdog();
  RunWatchdog(const RunWatchdog&) = delete;
  RunWatchdog& operator=(const RunWatchdog&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace snap
