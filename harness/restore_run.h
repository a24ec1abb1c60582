// The restore phase of a run (`run --restore R`): the run's image restored into a fresh region by a
// restore strategy while a workload reads and writes it, timed, measured and checked.
#pragma once
#include <string>

#include "harness/run.h"

namespace snap {

// The access mix of the workload after a restore: "read", "write" or "mix:F" (F = share of reads).
// Returns the share of reads; throws UsageError naming `where`.
double parse_restore_access(const std::string& text, const std::string& where);

// Restores the image in `image_path` with spec.restore and fills res's restore columns. Never throws
// for run-time failures (a truncated image, a dead handler: status=failed with the reason).
void run_restore(const RunSpec& spec, RunResult& res, const std::string& image_path);

}  // namespace snap
