// Matrix specs (TOML): axes and fixed values expanded into runs, and their run order (sharding: shard.h).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "harness/run.h"

namespace snap {

// One configuration of the matrix (all its repetitions share it).
struct MatrixCase {
  RunSpec spec;      // rep = 0
  std::string label; // short, for progress lines: "precopy/uffd-async rate=100MiB/s ..."
};

struct Matrix {
  std::string name;
  int reps = 1;
  uint64_t shuffle_seed = 1;
  std::vector<MatrixCase> cases;    // after skipping senseless combinations, de-duplicated
  std::vector<std::string> skipped; // one line per kind of skipped combination, with a count
};

// Parses a spec file (throws UsageError naming the file and the key on any problem). Format:
//   name = "demo"            reps = 2             shuffle_seed = 7
//   [fixed]  key = scalar ...                      (one value for every run)
//   [axes]   key = [values ...]                    (the cross product is taken)
// Keys: those of the run-spec field table (harness/spec_fields.cpp), and "UNIT.PARAM" for a
// strategy's, tracker's or workload's parameter.
// A spec with more than `max_runs` runs (axes' product x reps, counted before expanding) is refused.
inline constexpr uint64_t kDefaultMaxRuns = 100000;
Matrix load_matrix(const std::string& path, uint64_t max_runs = kDefaultMaxRuns);
Matrix parse_matrix(const std::string& toml_text, const std::string& origin, uint64_t max_runs = kDefaultMaxRuns);

// Run order for one repetition: a deterministic shuffle (the machine drifts; do not run a strategy's
// cases back to back).
std::vector<size_t> shuffled_order(size_t n, uint64_t seed, int rep);

}  // namespace snap
