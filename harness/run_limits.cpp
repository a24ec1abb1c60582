// The memory check, the time limit and its watchdog (see run_limits.h).
#include "harness/run_limits.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "core/error.h"
#include "core/image.h"
#include "core/run_stop.h"
#include "core/units.h"
#include "harness/shard.h"
#include "strategies/strategy.h"

namespace snap {

namespace {
constexpr double kLimitPerEstimate = 10;     // a run may take ten times its estimate (a loaded machine)
constexpr double kMinDefaultLimitS = 60;     // ... and at least a minute (estimates of tiny runs are ms)
constexpr double kMaxDefaultLimitS = 86400;  // ... and at most a day unless --time-limit says more
}  // namespace

MemoryNeed run_memory_need(const RunSpec& spec) {
  const RunResult r = resolve_spec(spec);
  const StrategyEntry& strategy = strategy_registry().get(spec.strategy);
  const uint64_t region = r.region_bytes;
  const uint64_t pages = region / kPageSize;
  // The stream of one whole image (records of a page and 16 bytes, a header and a trailer). A strategy
  // that re-sends pages (precopy) streams what its passes save: twice the estimate's 1 + q + q² + …
  // images (the writers may dirty more than the model says), at least the two images run_once backs
  // up front, at most what its max_records allows.
  const uint64_t one_image = 8192 + pages * (kPageSize + 16);
  uint64_t stream = one_image;
  if (strategy.may_save_duplicates) {
    double images = std::max(2.0, 2 * expected_saved_images(spec, r));
    if (strategy.max_records) {
      const auto it = spec.params.find(strategy.name);
      const ParamValues params(strategy.name, strategy.params,
                               it == spec.params.end() ? std::map<std::string, std::string>{} : it->second);
      images = std::min(images, double(strategy.max_records(pages, params)) / double(std::max<uint64_t>(pages, 1)));
    }
    stream = uint64_t(double(one_image) * images);
  }
  MemoryNeed need;
  auto add = [&](const char* what, uint64_t bytes) {
    need.bytes += bytes;
    need.parts += (need.parts.empty() ? "" : " + ") + std::string(what) + " " + format_bytes(double(bytes));
  };
  add("region", region);
  const bool image = strategy.produces_image;
  const bool in_memory_sink = spec.sink == "memory";
  const bool file_sink = spec.sink.rfind("file:", 0) == 0;
  const bool verify = image && spec.verify;
  const bool keep = image && !spec.image_path.empty();
  // The restore phase reads the image from a file, so without a file sink the stream is kept in memory
  // and read back to write it. Its own region (and an index of 8 bytes a page) is mapped after the
  // snapshot's region, reference and stream are freed, so it never needs more than the snapshot did.
  const bool restore = image && !spec.restore.empty();
  if (image && (in_memory_sink || ((verify || keep || restore) && !file_sink))) add("in-memory stream", stream);
  if (verify) {
    add("verify reference", region);
    add("flattened image", region + pages / 8);
  }
  if (verify || keep || (restore && !file_sink)) add("image read back", stream);
  // fork-cow's child keeps the region as it was while the writers change it: at worst every page twice.
  if (spec.strategy == "fork-cow") add("fork-cow copy-on-write worst case", region);
  return need;
}

uint64_t memory_available_for_runs() {
  if (const char* env = std::getenv("SNAPBENCH_MEMAVAILABLE"); env && *env)
    return parse_size(env, "SNAPBENCH_MEMAVAILABLE");
  return available_memory_bytes();
}

double run_time_limit_s(const RunSpec& spec) {
  if (spec.time_limit_s > 0) return spec.time_limit_s;
  return std::clamp(kLimitPerEstimate * estimate_run_seconds(spec), kMinDefaultLimitS, kMaxDefaultLimitS);
}

void check_run_limits(const RunSpec& spec) {
  if (!spec.skip_memory_check) {
    const MemoryNeed need = run_memory_need(spec);
    const uint64_t avail = memory_available_for_runs();
    const char* source = std::getenv("SNAPBENCH_MEMAVAILABLE") && *std::getenv("SNAPBENCH_MEMAVAILABLE")
                             ? "SNAPBENCH_MEMAVAILABLE" : "MemAvailable";
    if (need.bytes > avail)
      throw UsageError("--mem: the run needs " + format_bytes(double(need.bytes)) + " (" + need.parts +
                       ") but the machine has " + format_bytes(double(avail)) +
                       " available (" + source + "); shrink the run, or pass --skip-memory-check (matrix key "
                       "skip_memory_check = true) to run it anyway");
  }
  const double est = estimate_run_seconds(spec);
  const double limit = run_time_limit_s(spec);
  if (est > limit) {
    char b[320];
    std::snprintf(b, sizeof b,
                  "--time-limit: the run's estimate (%.0f s) exceeds its time limit (%.0f s%s); shrink the run or "
                  "raise --time-limit (matrix key time_limit)",
                  est, limit, spec.time_limit_s > 0 ? "" : ", the default: at most a day");
    throw UsageError(b);
  }
}

RunWatchdog::RunWatchdog(double limit_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(limit_s);
  thread_ = std::thread([this, deadline, limit_s] {
    std::unique_lock lock(mu_);
    if (cv_.wait_until(lock, deadline, [this] { return done_; })) return;
    // One run at a time per process: the reason outlives the request (run_stop.h).
    static char reason[64];
    std::snprintf(reason, sizeof reason, "timed out after %.6g s", limit_s);
    request_run_stop(reason, false);
  });
}

RunWatchdog::~RunWatchdog() {
  {
    std::lock_guard lock(mu_);
    done_ = true;
  }
  cv_.notify_all();
  thread_.join();
  clear_run_stop();
}

}  // namespace snap
