// Splitting a matrix over machines: each case's expected cost, shards of about equal cost, and the
// spec hash that tells which matrix a shard belongs to.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "harness/matrix.h"

namespace snap {

// Expected wall time of one run of a case, in seconds, from the spec alone (nothing is measured):
//   0.05 s setup + warmup + populated bytes / 384 MiB/s (first touch and fill)
//   + none: duration_ms; otherwise saved bytes / save rate, where the save rate is the bandwidth cap
//     or 2 GiB/s, whichever is lower, and saved bytes = region × (precopy: 1 + q + q² + … over
//     max_passes passes, q = write rate / save rate capped at 1, since each pass re-saves what the
//     writers dirtied during the previous one; other strategies: 1)
//   + with verify, 3 region-sized buffers first touched at 384 MiB/s (reference copy, the stream kept
//     in memory, the flattened image).
// The rates were measured on the development machine (shard.cpp); only the ratios between cases
// matter for balancing, the absolute figure is a rough guide on other machines.
double estimate_run_seconds(const RunSpec& spec);

// How many region-sized images the strategy is expected to save (the estimate's saved bytes / region):
// precopy 1 + q + q² + … as above (`r` is resolve_spec(spec)), every other strategy 1.
double expected_saved_images(const RunSpec& spec, const RunResult& r);

// The case indices (into `cases`, ascending) of shard `index` (1-based) of `count`. Cases are dealt
// by expected cost, largest first, each to the shard with the least total so far (ties: the lower
// shard, then spec order), so shards take about equal time. Deterministic for a given spec and
// count; every case lands in exactly one shard, with all its repetitions.
std::vector<size_t> shard_indices(const std::vector<MatrixCase>& cases, int index, int count);
std::vector<MatrixCase> shard_cases(const std::vector<MatrixCase>& cases, int index, int count);

// A hash (16 hex digits) of what a matrix runs: every case's identity (its parameters, seed, verify,
// warm-up, sink) and the repetitions, not its name, comments or run order. Shards, resumed runs and
// merges check it so results of different specs never mix.
std::string matrix_hash(const Matrix& m);

// Parses "i/N" for --shard; throws UsageError.
void parse_shard(const std::string& text, int& index, int& count);

}  // namespace snap
