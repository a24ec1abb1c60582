// snapbench's strategies mapped onto QEMU's own mechanisms, for the qemu workload:
//   stop-copy -> QMP stop, migrate, cont;  precopy -> migrate with KVM dirty logging (downtime-limit,
//   max-bandwidth; QEMU's pass loop);  uffd-wp -> migrate with the background-snapshot capability
//   (userfaultfd write-protect);  fork-cow -> unsupported (QEMU has no fork-based snapshot).
// The stream goes through a snapbench sink and is parsed record by record for the image counts.
#pragma once
#include <cstdint>
#include <string>

#include "core/sink.h"
#include "workloads/qemu/migration_stream.h"
#include "workloads/qemu/qemu_guest.h"
#include "workloads/qemu/qemu_migration.h"

namespace snap::qemu {

// "" when QEMU has a mechanism for `strategy`, else why not.
std::string qemu_strategy_unsupported(const std::string& strategy);

struct QemuSnapshotRequest {
  std::string strategy;           // stop-copy | precopy | uffd-wp
  uint64_t bandwidth = 0;         // bytes/s, applied by QEMU as max-bandwidth (0: none)
  int64_t downtime_limit_ms = -1; // precopy: downtime-limit (-1: QEMU's default)
  uint64_t max_passes = 0;        // precopy: force the stop-and-copy at this dirty-sync-count (0: never)
  bool verify = false;
  double timeout_s = 600;
  double qmp_timeout_s = 10;
};

struct QemuSnapshotResult {
  MigrationOutcome migration;
  RamBlock data;                   // the parsed records of the data area (the Region)
  StreamBytes bytes;               // where the stream's bytes went
  uint64_t other_pages_saved = 0;  // page records of QEMU's other RAM blocks (low RAM, ROMs)
  double completion_s = 0;         // snapbench's clock: start of the snapshot to the stream's end
  double downtime_s = 0;           // guest stopped: stop-copy by snapbench's clock, else QEMU's downtime
  uint64_t passes = 1;
  bool converged = true;
  uint64_t nonzero_pages = 0;      // non-zero data pages in the image (= at the consistency point)
  std::string verified = "off";    // pass | fail | stamps | off
  std::string verify_detail;
  std::string notes;               // key=value;...
};

// Takes one snapshot of the guest's data area into `sink` (finished on success). Throws
// std::runtime_error with the reason on failure; the guest is left running or stopped.
QemuSnapshotResult qemu_snapshot(QemuGuest& guest, const QemuSnapshotRequest& req, Sink& sink);

}  // namespace snap::qemu
