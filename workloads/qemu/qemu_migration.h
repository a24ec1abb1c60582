// One QEMU migration into a snapbench sink: the stream leaves QEMU through a pipe handed over with
// QMP `getfd` + `migrate fd:`, a pump thread copies it into the sink and through the stream parser,
// and query-migrate is polled until QEMU reports completion (or failure, death, hang or timeout).
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/sink.h"
#include "workloads/qemu/migration_stream.h"
#include "workloads/qemu/qemu_vm.h"

namespace snap::qemu {

// QEMU's max-bandwidth when snapbench sets no cap: far above any rate here. (QEMU's own default is
// 128 MiB/s, which would be a silent cap.)
constexpr uint64_t kUnlimitedBandwidth = 1ull << 40;

struct MigrationOptions {
  bool background_snapshot = false;   // the background-snapshot capability (userfaultfd write-protect)
  uint64_t max_bandwidth = 0;         // bytes/s applied by QEMU (max-bandwidth); 0 = none
  int64_t downtime_limit_ms = -1;     // downtime-limit; -1 = QEMU's default
  // Precopy that does not converge runs forever in QEMU: once dirty-sync-count reaches this, the
  // downtime limit is raised so the next iteration completes (snapbench precopy's max_passes). 0 = never.
  uint64_t max_passes = 0;
  double timeout_s = 600;             // the whole migration
  double qmp_timeout_s = 10;          // one QMP command (a hang of QEMU)
  double poll_interval_s = 0.02;      // query-migrate period
};

struct MigrationOutcome {
  nlohmann::json parameters;          // query-migrate-parameters as in force for this migration
  nlohmann::json capabilities;        // query-migrate-capabilities
  nlohmann::json final_query;         // the last query-migrate (status completed)
  double total_time_s = 0;            // QEMU's total-time
  double downtime_s = 0;              // QEMU's downtime
  double setup_time_s = 0;
  uint64_t dirty_sync_count = 0;      // QEMU's bitmap syncs: precopy's passes
  uint64_t normal_pages = 0;          // QEMU's ram.normal
  uint64_t zero_pages = 0;            // QEMU's ram.duplicate (its name for zero pages)
  uint64_t transferred_bytes = 0;     // QEMU's ram.transferred
  bool forced_completion = false;     // the downtime limit was raised at max_passes
  double wall_s = 0;                  // snapbench's clock: migrate command to the stream's end
};

// Runs one migration of `vm` into `sink`, feeding `parser`; finishes the sink and the parser.
// Throws std::runtime_error with the reason on any failure (QEMU's error-desc, its exit and last
// stderr line, a QMP timeout, the sink's error, a malformed stream). On failure QEMU may be left
// in any state: the caller shuts it down.
MigrationOutcome migrate_to_sink(QemuVm& vm, const MigrationOptions& opts, Sink& sink,
                                 MigrationStreamParser& parser);

// Cross-checks QEMU's counters with the parsed stream; empty when they agree, else what differs.
std::string cross_check(const MigrationOutcome& out, const MigrationStreamParser& parser);

}  // namespace snap::qemu
