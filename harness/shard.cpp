// Cost estimate per case, balanced shards (largest first into the lightest shard), and the spec hash.
#include "harness/shard.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>

#include "core/error.h"
#include "harness/csv.h"

namespace snap {

namespace {

// Rates measured with `snapbench run` on the development machine (nested VM, 2 shared cores, load
// ~10): a 4 MiB run takes 0.03-0.06 s; first touch of fresh memory (populate, and each of the three
// region-sized buffers --verify fills: reference copy, tee'd stream, flattened image) ~340 MiB/s;
// saving into the null sink ~2 GiB/s (256 MiB in 0.13 s).
constexpr double kSetupS = 0.05;
constexpr double kTouchBytesS = double(384ull << 20);
constexpr double kCopyBytesS = double(2ull << 30);
constexpr double kPageBytes = 4096;

// One numeric parameter ("unit.param") out of a resolved params column ("unit.param=value;..."), or `fallback`.
double param_of(const std::string& params, const std::string& key, double fallback) {
  const std::string needle = key + "=";
  size_t at = 0;
  while ((at = params.find(needle, at)) != std::string::npos) {
    if (at == 0 || params[at - 1] == ';') return std::strtod(params.c_str() + at + needle.size(), nullptr);
    at += needle.size();
  }
  return fallback;
}

}  // namespace

double expected_saved_images(const RunSpec& spec, const RunResult& r) {
  if (spec.strategy != "precopy") return 1;
  const double save_rate =
      r.bandwidth_bytes_s > 0 ? std::min(double(r.bandwidth_bytes_s), kCopyBytesS) : kCopyBytesS;
  // rate_target_pages_s is -1 for unpaced writers: they out-dirty any saver.
  const double write_rate = r.rate_target_pages_s < 0 ? save_rate : r.rate_target_pages_s * kPageBytes;
  const double q = std::min(1.0, write_rate / save_rate);
  const int passes = int(param_of(r.params, "precopy.max_passes", 30));
  double factor = 0, term = 1;
  for (int p = 0; p < passes && term > 1e-3; ++p, term *= q) factor += term;
  return factor;
}

double estimate_run_seconds(const RunSpec& spec) {
  const RunResult r = resolve_spec(spec);
  const double region = double(r.region_bytes);
  double s = kSetupS + spec.warmup_s + region * spec.populate / kTouchBytesS;
  if (spec.strategy == "none") return s + param_of(r.params, "none.duration_ms", 1000) / 1000.0;
  const double save_rate =
      r.bandwidth_bytes_s > 0 ? std::min(double(r.bandwidth_bytes_s), kCopyBytesS) : kCopyBytesS;
  s += region * expected_saved_images(spec, r) / save_rate;
  if (spec.verify) s += 3 * region / kTouchBytesS;
  return s;
}

std::vector<size_t> shard_indices(const std::vector<MatrixCase>& cases, int index, int count) {
  std::vector<double> cost(cases.size());
  for (size_t i = 0; i < cases.size(); ++i) cost[i] = estimate_run_seconds(cases[i].spec);
  std::vector<size_t> order(cases.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return cost[a] > cost[b]; });
  std::vector<double> load(size_t(count), 0.0);
  std::vector<size_t> mine;
  for (size_t i : order) {
    const size_t lightest = size_t(std::min_element(load.begin(), load.end()) - load.begin());
    load[lightest] += cost[i];
    if (int(lightest) == index - 1) mine.push_back(i);
  }
  std::sort(mine.begin(), mine.end());
  return mine;
}

std::vector<MatrixCase> shard_cases(const std::vector<MatrixCase>& cases, int index, int count) {
  std::vector<MatrixCase> out;
  for (size_t i : shard_indices(cases, index, count)) out.push_back(cases[i]);
  return out;
}

std::string matrix_hash(const Matrix& m) {
  // FNV-1a 64 over one line per case: stable across builds and platforms, no dependency needed.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const std::string& text) {
    for (unsigned char c : text) {
      h ^= c;
      h *= 1099511628211ull;
    }
  };
  mix("reps=" + std::to_string(m.reps) + "\n");
  for (const auto& c : m.cases) {
    const RunSpec& s = c.spec;
    char warmup[32];
    std::snprintf(warmup, sizeof warmup, "%.9g", s.warmup_s);
    mix(run_key(resolve_spec(s), false) + s.sink + "|" + std::to_string(s.seed) + "|" + (s.verify ? "v" : "-") +
        "|" + warmup + "|" + (s.fsync ? "f" : "-") + "\n");
  }
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

void parse_shard(const std::string& text, int& index, int& count) {
  auto slash = text.find('/');
  char* e1 = nullptr;
  char* e2 = nullptr;
  if (slash != std::string::npos) {
    std::string a = text.substr(0, slash), b = text.substr(slash + 1);
    index = int(std::strtol(a.c_str(), &e1, 10));
    count = int(std::strtol(b.c_str(), &e2, 10));
    if (!a.empty() && !b.empty() && !*e1 && !*e2 && count >= 1 && index >= 1 && index <= count) return;
  }
  throw UsageError("--shard: expected i/N with 1 <= i <= N, got '" + text + "'");
}

}  // namespace snap
