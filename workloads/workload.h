// The workload interface (what writes the region during a snapshot) and its registry, the access
// patterns, and the control (pause/resume) that the harness and strategies use to stop the writing
// at a consistency point.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/histogram.h"
#include "core/params.h"
#include "core/region.h"
#include "core/unit.h"

namespace snap {

namespace kvm {
class Vm;  // workloads/kvm/vm.h: the kvm workload's virtual machine
}
struct RunSpec;
struct RunResult;

// Chooses the next page to write. One instance per writer thread (no sharing, no locks).
class AccessPattern {
 public:
  virtual ~AccessPattern() = default;
  virtual uint64_t next() = 0;  // a page index in [0, pages)
};

// A registered pattern kind: `uniform`, `hotset:HOT_FRACTION:WRITE_SHARE`, `zipf:THETA`, `sequential`.
struct PatternInfo {
  std::string name, syntax, help;
};
const std::vector<PatternInfo>& pattern_kinds();
// Validates a --pattern spec (throws UsageError naming --pattern).
void check_pattern_spec(const std::string& spec);
// Builds the pattern for writer `writer` of `writers`, deterministic in `seed`.
std::unique_ptr<AccessPattern> make_pattern(const std::string& spec, uint64_t pages, uint64_t seed,
                                            int writer, int writers);

// Pause and resume the writers. Strategies call these only; the harness implements the
// consistency-point hook (reference copy for --verify) behind `consistency_point()`.
class WorkloadControl {
 public:
  virtual ~WorkloadControl() = default;
  // Returns when every writer is parked (bounded; throws runtime_error on timeout).
  virtual void pause() = 0;
  virtual void resume() = 0;
  // Called by the strategy while the writers are paused, at the moment the image's content is
  // defined (stop-copy: the pause; uffd-wp/fork-cow: before resuming; precopy: the final pause).
  virtual void consistency_point() = 0;
  // The KVM virtual machine whose vCPUs are the writers (the kvm workload), else null: the kvm
  // trackers reach KVM's dirty log and dirty ring through it.
  virtual kvm::Vm* kvm_vm() { return nullptr; }
};

struct WorkloadOptions {
  int writers = 2;
  double rate_pages = 0;  // total target pages/s over all writers; kRateMax = unlimited; 0 = idle
  std::string pattern = "uniform";
  uint64_t seed = 1;
  int numa_node = -1;  // bind writer threads to this node's CPUs
  // kvm: entries of the per-vCPU dirty ring the VM is created with (0: none); set by the harness
  // from the run's tracker (kvm-dirty-ring), since KVM takes it only before any vCPU exists.
  uint32_t dirty_ring_entries = 0;
};

// Phases, so that latency and throughput before and during the snapshot are told apart.
enum class Phase : int { kWarmup = 0, kSnapshot = 1, kAfter = 2 };

struct PhaseStats {
  Histogram latency;       // per-write latency in ns (includes any fault stall)
  uint64_t writes = 0;
  double seconds = 0;      // wall time spent in this phase
  double rate_pages() const { return seconds > 0 ? double(writes) / seconds : 0.0; }
};

// A running workload: what writes the region while a snapshot is taken. The harness drives it
// (phases, pause/resume for the control it hands strategies, stop, statistics); strategies never
// see it, only the WorkloadControl. One implementation per file, listed in workloads/registry.cpp.
class Workload {
 public:
  virtual ~Workload() = default;  // implementations stop (and resume first if paused)
  virtual void set_phase(Phase p) = 0;
  // Bounded wait until nothing writes the region any more; throws on timeout (writers then resumed).
  virtual void pause() = 0;
  virtual void resume() = 0;
  virtual bool paused() const = 0;
  virtual void stop() = 0;                   // ends the writing; idempotent
  virtual PhaseStats stats(Phase p) const = 0;  // merged over writers; call after stop()
  virtual uint64_t total_writes() const = 0;    // live counter (relaxed)
  // Workload-specific facts ("key=value;..."), appended to the CSV's notes column.
  virtual std::string notes() const { return ""; }
  // The kvm workload's virtual machine (null for the others); see WorkloadControl::kvm_vm().
  virtual kvm::Vm* kvm_vm() { return nullptr; }
};

// A registered workload: the facts `snapbench list` shows, and its factory.
struct WorkloadEntry {
  std::string name;                  // registry key, --workload value and CSV value
  std::string help;                  // one line for `snapbench list`
  std::vector<ParamSpec> params;     // settable with --set NAME.PARAM=VALUE
  Support (*probe)();                // may this machine run it?
  // Starts the workload on the region (throws UsageError for bad options, runtime_error otherwise).
  std::unique_ptr<Workload> (*make)(Region& region, const WorkloadOptions& opts, const ParamValues& params);
  // A workload whose memory belongs to another process (qemu) takes the whole run itself, the
  // snapshot with that process's own mechanism for the strategy: given the resolved result, it
  // returns the finished one. Null: the harness runs the strategy on the region.
  RunResult (*run_whole)(const RunSpec& spec, const RunResult& resolved, const ParamValues& strategy_params,
                         const ParamValues& workload_params) = nullptr;
};

// The workload a run uses when none is named (--workload, matrix specs, CSVs without the column).
inline constexpr const char* kDefaultWorkload = "threads";

// The registry: one line per workload, in workloads/registry.cpp.
const Registry<WorkloadEntry>& workload_registry();

// Stamp layout written by each write, so a torn or stale page is detectable: at byte offset
// (seq % 255) * 16 of the page, the 64-bit sequence number then the 64-bit page index.
constexpr size_t stamp_offset(uint64_t seq) { return size_t(seq % 255) * 16; }

}  // namespace snap
