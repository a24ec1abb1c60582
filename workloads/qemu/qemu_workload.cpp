// The `qemu` workload's registry entry and its whole run: QEMU boots the kvm workload's guest program
// on a shared Region, the writers are its vCPU, and the snapshot is QEMU's own mechanism for each
// strategy (workloads/qemu/qemu_snapshot.h), so QEMU's precopy and background-snapshot become rows
// of the same CSV as snapbench's strategies.

#include <chrono>
#include <thread>

#include "core/clock.h"
#include "core/error.h"
#include "core/region.h"
#include "core/run_stop.h"
#include "core/sink.h"
#include "harness/csv.h"
#include "harness/run.h"
#include "strategies/strategy.h"
#include "workloads/qemu/qemu_guest.h"
#include "workloads/qemu/qemu_snapshot.h"
#include "workloads/workload.h"

namespace snap::qemu {

namespace {

// Entries per vCPU when --tracker kvm-dirty-ring is asked without --set qemu.dirty_ring (the
// kvm-dirty-ring tracker's own default).
constexpr uint32_t kDefaultDirtyRing = 4096;

// The tracker column of QEMU's precopy under TCG: TCG marks the pages its stores hit in QEMU's own
// dirty bitmap (no KVM, no tracker of snapbench's), so neither KVM tracker's name fits.
constexpr const char* kTcgTracker = "qemu-dirty-bitmap";

// Unsupported before anything starts: a strategy without a QEMU mechanism, no QEMU, no KVM when
// kvm is asked, a KVM tracker under TCG, more than one writer.
std::string unsupported_reason(const RunSpec& spec, const ParamValues& wp, const std::string& accel) {
  if (spec.strategy != "none")
    if (std::string why = qemu_strategy_unsupported(spec.strategy); !why.empty()) return why;
  if (std::string why = qemu_unavailable_reason(wp.get_string("binary"), accel); !why.empty()) return why;
  if (accel == "tcg" && spec.strategy == "precopy" && !spec.tracker.empty())
    return "--tracker " + spec.tracker + ": under TCG (qemu.accel=" + wp.get_string("accel") +
           ") QEMU's precopy tracks with its own dirty bitmap (tracker " + kTcgTracker + "); leave --tracker out";
  if (spec.writers != 1)
    return "the guest program runs on the boot vCPU only when QEMU's multiboot loader starts it (--writers 1)";
  return "";
}

RunResult run_qemu(const RunSpec& spec, const RunResult& resolved, const ParamValues& sp, const ParamValues& wp) {
  RunResult res = resolved;
  const std::string accel = resolve_accel(wp.get_string("accel"));
  res.accel = accel;
  // QEMU's precopy tracks with KVM's dirty log or dirty ring itself: the tracker names which one
  // (the same two the kvm workload offers), and nothing else can track inside QEMU. Under TCG it is
  // QEMU's own bitmap.
  uint32_t dirty_ring = uint32_t(wp.get_int("dirty_ring"));
  res.tracker.clear();
  if (spec.strategy == "precopy" && !spec.tracker.empty() && spec.tracker != "kvm-dirty-log" &&
      spec.tracker != "kvm-dirty-ring")
    throw UsageError("--tracker " + spec.tracker + ": QEMU's precopy tracks with KVM's dirty log or dirty ring itself "
                     "(kvm-dirty-log, kvm-dirty-ring), under TCG with its own dirty bitmap (no --tracker)");
  if (spec.strategy == "precopy" && accel == "tcg") {
    if (dirty_ring != 0) throw UsageError("--set qemu.dirty_ring: KVM's dirty ring, and this run is under TCG");
    res.tracker = kTcgTracker;
  } else if (spec.strategy == "precopy") {
    const std::string t = !spec.tracker.empty() ? spec.tracker : dirty_ring ? "kvm-dirty-ring" : "kvm-dirty-log";
    if (t == "kvm-dirty-ring") {
      if (dirty_ring == 0) dirty_ring = kDefaultDirtyRing;
    } else if (t == "kvm-dirty-log") {
      if (dirty_ring != 0)
        throw UsageError("--tracker kvm-dirty-log: --set qemu.dirty_ring=" + std::to_string(dirty_ring) +
                         " asks for KVM's dirty ring; use --tracker kvm-dirty-ring");
    } else {
      throw UsageError("--tracker " + t + ": QEMU's precopy tracks with KVM's dirty log or dirty ring itself "
                       "(kvm-dirty-log, kvm-dirty-ring)");
    }
    res.tracker = t;
  }
  if (spec.numa_node >= 0) throw UsageError("--numa-node: the qemu workload does not bind QEMU");
  if (res.region_bytes % (2 << 20)) throw UsageError("--mem: the qemu workload needs a multiple of 2 MiB");
  if (!spec.image_path.empty())
    throw UsageError("--image: the qemu workload's image is QEMU's migration stream; keep it with --sink file:PATH");
  if (std::string why = unsupported_reason(spec, wp, accel); !why.empty()) {
    res.status = RunStatus::kUnsupported;
    res.reason = why;
    return res;
  }
  const uint64_t pages = res.region_bytes / kPageSize;
  // The cap is QEMU's max-bandwidth: snapbench's sink throttle stays off so it is applied once.
  const uint64_t capacity = 4096 + pages * (kPageSize + 64) * 64 + (16 << 20);
  std::unique_ptr<Sink> sink = make_sink({spec.sink, spec.fsync, 0, capacity});
  try {
    RegionOptions ro{spec.mem_bytes, spec.populate, spec.thp, -1, spec.seed, true};
    Region region(ro);
    QemuGuestOptions go;
    go.binary = wp.get_string("binary");
    go.accel = accel;
    go.firmware = wp.get_string("firmware");
    go.dirty_ring = dirty_ring;
    go.boot_timeout_s = wp.get_double("boot_timeout_s");
    go.pattern = spec.pattern;
    go.rate_pages = res.rate_target_pages_s;
    go.seed = spec.seed * 0x9e3779b97f4a7c15ull + uint64_t(spec.rep);
    QemuGuest guest(region, go);

    const uint64_t w0 = now_ns();
    sleep_unless_stopped(spec.warmup_s);  // a SIGTERM or the time limit ends the run now (run_stop.h)
    guest.set_phase(1);
    const uint64_t s0 = now_ns();
    std::string failure;
    QemuSnapshotResult snap;
    if (spec.strategy == "none") {
      sleep_unless_stopped(double(sp.get_int("duration_ms")) / 1000);
    } else {
      QemuSnapshotRequest req;
      req.strategy = spec.strategy;
      req.bandwidth = res.bandwidth_bytes_s;
      req.verify = spec.verify;
      req.timeout_s = wp.get_double("timeout_s");
      if (spec.strategy == "precopy") {
        req.downtime_limit_ms = sp.get_int("downtime_ms");
        req.max_passes = uint64_t(sp.get_int("max_passes"));
      }
      try {
        snap = qemu_snapshot(guest, req, *sink);
      } catch (const std::exception& e) {
        failure = e.what();
      }
    }
    const uint64_t s1 = now_ns();
    if (failure.empty()) {
      guest.set_phase(2);
      guest.pause();
      if (std::string f = guest.guest_failure(); !f.empty()) failure = f;
    }
    if (failure.empty()) {
      PhaseStats before{guest.latency(0), guest.writes(0), ns_to_s(s0 - w0)};
      PhaseStats during{guest.latency(1), guest.writes(1), ns_to_s(s1 - s0)};
      set_writer_columns(res, before, during);
    }
    guest.vm().shutdown();  // no QEMU outlives the run
    if (!failure.empty()) {
      // As for the other workloads: no finished stream, so nothing was verified (off, not fail),
      // and image_bytes is what the sink took before the failure.
      res.status = RunStatus::kFailed;
      res.reason = failure;
      res.verified = "off";
      res.verify_detail = spec.verify && strategy_registry().get(spec.strategy).produces_image ? "snapshot failed: no image to verify" : "";
      res.image.image_bytes = sink->bytes_written();
      return res;
    }
    if (spec.strategy == "none") {
      res.nonzero_rss_bytes = region.count_nonzero_pages() * kPageSize;
      res.notes = "qemu_accel=" + go.accel + ";tsc_hz=" + csv_number(guest.tsc_hz()) + ";tsc_from=" + guest.tsc_source();
      return res;
    }
    res.image.image_bytes = snap.bytes.total;
    res.image.pages_saved = snap.data.pages_saved;
    res.image.unique_pages = snap.data.unique_pages;
    res.image.duplicate_pages = snap.data.duplicate_pages();
    res.image.zero_pages = snap.data.zero_pages;
    res.nonzero_rss_bytes = snap.nonzero_pages * kPageSize;
    res.image_ratio = res.nonzero_rss_bytes ? double(res.image.image_bytes) / double(res.nonzero_rss_bytes) : 0.0;
    res.completion_s = snap.completion_s;
    res.downtime_s = snap.downtime_s;
    res.passes = snap.passes;
    res.converged = snap.converged;
    res.verified = snap.verified;
    res.verify_detail = snap.verify_detail;
    res.notes = snap.notes + ";qemu_accel=" + go.accel + ";tsc_hz=" + csv_number(guest.tsc_hz()) +
                ";tsc_from=" + guest.tsc_source() +
                ";qemu_firmware=" + (go.firmware.empty() ? "default" : go.firmware) +
                ";qemu_dirty_ring=" + std::to_string(go.dirty_ring);
    if (res.verified == "fail") {
      res.status = RunStatus::kFailed;
      res.reason = "verify failed: " + res.verify_detail;
    }
  } catch (const UsageError&) {
    throw;
  } catch (const std::exception& e) {
    res.status = RunStatus::kFailed;
    res.reason = e.what();
    res.verified = "off";
    res.verify_detail = spec.verify && strategy_registry().get(spec.strategy).produces_image ? "snapshot failed: no image to verify" : "";
    res.image.image_bytes = sink->bytes_written();
  }
  return res;
}

}  // namespace

}  // namespace snap::qemu

namespace snap {

using namespace qemu;

const WorkloadEntry& qemu_workload() {
  static const WorkloadEntry entry{
      "qemu",
      "the kvm workload's guest program under Debian's QEMU; stop-copy, precopy and uffd-wp are QEMU's own "
      "(stop+migrate, precopy, background-snapshot); --bandwidth is QEMU's max-bandwidth",
      {
          {"binary", ParamSpec::Type::kString, kDefaultQemu, 0, 0, "QEMU binary: a name searched on PATH, or a path"},
          {"accel", ParamSpec::Type::kString, "auto", 0, 0,
           "accelerator: auto = kvm when /dev/kvm opens, else tcg (the CSV's accel column says which ran)",
           {"auto", "kvm", "tcg"}},
          {"firmware", ParamSpec::Type::kString, "qboot.rom", 0, 0,
           "QEMU's -bios: qboot.rom boots the guest in ~2 s, SeaBIOS (empty value: QEMU's default) in ~15 s"},
          {"dirty_ring", ParamSpec::Type::kInt, "0", 0, 65536,
           "KVM dirty ring entries per vCPU for QEMU's dirty logging (0: KVM's dirty bitmap, or 4096 with "
           "--tracker kvm-dirty-ring)"},
          {"boot_timeout_s", ParamSpec::Type::kDouble, "120", 1, 3600, "seconds for the guest to reach its write loop"},
          {"timeout_s", ParamSpec::Type::kDouble, "600", 1, 86400, "seconds for QEMU's migration to complete"},
      },
      [] {
        const std::string why = qemu_unavailable_reason(kDefaultQemu, "auto");
        return why.empty() ? Support::yes() : Support::no(why);
      },
      [](Region&, const WorkloadOptions&, const ParamValues&) -> std::unique_ptr<Workload> {
        throw std::logic_error("the qemu workload runs whole (run_whole), never on a harness region");
      },
      run_qemu,
  };
  return entry;
}

}  // namespace snap
