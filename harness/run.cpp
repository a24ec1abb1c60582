// One run, end to end: validate the spec, build region + writers + sink, time the strategy's snapshot,
// collect writer statistics, verify the image against the reference taken at the consistency point.
#include "harness/run.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/clock.h"
#include "core/error.h"
#include "core/image.h"
#include "core/pagemap.h"
#include "core/prefault.h"
#include "core/region.h"
#include "core/run_stop.h"
#include "core/scoped.h"
#include "core/sink.h"
#include "core/sink_tee.h"
#include "core/units.h"
#include "harness/calibration.h"
#include "harness/run_limits.h"
#include "harness/restore_run.h"
#include "harness/spec_fields.h"
#include "restore/restore.h"
#include "strategies/strategy.h"
#include "strategies/tracking/tracker.h"
#include "workloads/workload.h"

namespace snap {

const char* status_name(RunStatus s) {
  switch (s) {
    case RunStatus::kOk: return "ok";
    case RunStatus::kUnsupported: return "unsupported";
    case RunStatus::kFailed: return "failed";
  }
  return "?";
}

namespace {

// The reference copy for --verify: an anonymous buffer pre-faulted before the snapshot, so the copy
// at the consistency point is a plain memcpy (its time is excluded from the downtime and completion).
//
// Only pages with memory behind them are read. A never-touched page of a private region is zero, and
// reading it would change the region: where a read fault allocates a page of its own instead of
// mapping the shared zero page (the AMD machine's kernel), the verifier would populate every hole, and
// the strategy would then save (and fork-cow copy, and uffd-wp protect) pages that without --verify
// have no memory. /proc/self/pagemap says which pages are present (or swapped) without touching them.
class Reference {
 public:
  Reference(const Region& region)
      : region_(region),
        map_(region.bytes(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, "the verify reference") {
    madvise(map_.data(), region.bytes(), MADV_NOHUGEPAGE);
    // Only the parent compares; a fork-cow child need not inherit (and fork need not copy) its tables.
    madvise(map_.data(), region.bytes(), MADV_DONTFORK);
    prefault_write(map_.data(), region.bytes());
    if (region.fd() < 0) {
      // A shared region's pages may have been written through another mapping (QEMU's): copy it all.
      pagemap_.reset(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
      entries_.assign(region.pages(), 0);  // touched now, not at the consistency point
    }
  }
  uint8_t* data() const { return map_.data(); }

  // The copy at the consistency point (writers paused). The buffer is fresh (zeros), taken once.
  void take() {
    const uint8_t* base = region_.base();
    const size_t pages = region_.pages();
    if (pagemap_.get() < 0 || !read_pagemap(pagemap_.get(), base, pages, entries_.data())) {
      std::memcpy(map_.data(), base, region_.bytes());
      return;
    }
    for (size_t i = 0; i < pages;) {
      if (!pagemap_has_memory(entries_[i])) {
        ++i;
        continue;
      }
      size_t j = i + 1;
      while (j < pages && pagemap_has_memory(entries_[j])) ++j;
      std::memcpy(map_.data() + i * kPageSize, base + i * kPageSize, (j - i) * kPageSize);
      i = j;
    }
  }

 private:
  const Region& region_;
  Mapping map_;
  UniqueFd pagemap_;
  std::vector<uint64_t> entries_;
};

// The WorkloadControl strategies see: pauses the real writers, measures the downtime, and takes the
// verify reference at the consistency point.
class HarnessControl final : public WorkloadControl {
 public:
  HarnessControl(Workload& w, Reference* ref, TeeSink* tee) : workload_(w), ref_(ref), tee_(tee) {}
  void pause() override {
    if (paused_) throw std::logic_error("strategy paused the writers twice");
    pause_start_ = now_ns();
    workload_.pause();
    paused_ = true;
    if (tee_) tee_->set_paused(true);
  }
  void resume() override {
    if (!paused_) return;  // resuming is idempotent so cleanup paths can always call it
    if (tee_) tee_->set_paused(false);
    workload_.resume();
    downtime_ns_ += now_ns() - pause_start_;
    paused_ = false;
  }
  kvm::Vm* kvm_vm() override { return workload_.kvm_vm(); }
  void consistency_point() override {
    if (!paused_) throw std::logic_error("consistency_point() called while the writers run");
    ++consistency_points_;
    if (ref_) {
      uint64_t t = now_ns();
      ref_->take();
      reference_ns_ += now_ns() - t;
    }
  }
  bool paused() const { return paused_; }
  int consistency_points() const { return consistency_points_; }
  // The verifier's time inside the pauses (the reference copy, the tee's copy) is not downtime.
  double downtime_s() const {
    return std::max(0.0, ns_to_s(downtime_ns_ - reference_ns_) - (tee_ ? tee_->copy_paused_s() : 0.0));
  }
  double reference_s() const { return ns_to_s(reference_ns_); }

 private:
  Workload& workload_;
  Reference* ref_;
  TeeSink* tee_;
  bool paused_ = false;
  uint64_t pause_start_ = 0, downtime_ns_ = 0, reference_ns_ = 0;
  int consistency_points_ = 0;
};

// The kept image: on a failed write (a full disk) the partial file is removed and the reason given.
void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error("--image: cannot write '" + path + "': " + std::strerror(errno));
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size() && std::fflush(f) == 0;
  const int err = errno;
  if (std::fclose(f) != 0 || !ok) {
    const int why = ok ? errno : err;
    std::remove(path.c_str());
    throw std::runtime_error("--image: cannot write '" + path + "': " + std::strerror(why) + " (removed)");
  }
}

// --image is written after the snapshot: check now that it can be, so a typo fails in a moment with
// exit 2 instead of after the whole run.
void check_image_path(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw UsageError("--image: '" + path + "' is a directory");
  const fs::path parent = fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path();
  if (!fs::is_directory(parent, ec))
    throw UsageError("--image: cannot write '" + path + "': directory '" + parent.string() + "' does not exist");
  if (::access(parent.c_str(), W_OK) != 0)
    throw UsageError("--image: cannot write '" + path + "' in '" + parent.string() + "': " + std::strerror(errno));
}

double us(uint64_t ns) { return double(ns) / 1000.0; }

// Where the restore phase keeps the run's image when --image names no file: the temporary directory
// (TMPDIR), one name per process and repetition; removed after the restore.
std::string restore_temp_path(const RunSpec& spec) {
  std::error_code ec;
  std::filesystem::path dir = std::filesystem::temp_directory_path(ec);
  if (ec) dir = ".";
  return (dir / ("snapbench-restore-" + std::to_string(::getpid()) + "-" + std::to_string(spec.rep) + ".img")).string();
}

// Checks a --set unit and its values against the unit's declared parameters.
std::vector<ParamSpec> params_of_unit(const std::string& unit, bool& known) {
  known = true;
  if (const auto* e = strategy_registry().find(unit)) return e->params;
  if (const auto* e = tracker_registry().find(unit)) return e->params;
  if (const auto* e = workload_registry().find(unit)) return e->params;
  if (const auto* e = restore_registry().find(unit)) return e->params;
  known = false;
  return {};
}

}  // namespace

void validate_params(const ParamAssignments& params) {
  for (const auto& [unit, values] : params) {
    bool known;
    auto specs = params_of_unit(unit, known);
    if (!known)
      throw UsageError("--set " + unit + ".*: unknown unit '" + unit + "' (a strategy, tracker, workload or restore name)");
    ParamValues check(unit, specs, values);  // throws on unknown or out-of-range values
  }
}

namespace {

// A validated spec with the units it names, built once and used by both resolve_spec and run_once.
struct Resolved {
  RunResult result;
  std::unique_ptr<Strategy> strategy;
  std::unique_ptr<DirtyTracker> tracker;  // null unless the strategy uses one
  const StrategyEntry* strategy_entry = nullptr;
  const TrackerEntry* tracker_entry = nullptr;
  const WorkloadEntry* workload = nullptr;
  ParamValues strategy_params, tracker_params, workload_params;
};

Resolved resolve(const RunSpec& spec) {
  // Every problem here is the user's, so it throws UsageError (exit 2).
  Resolved r;
  RunResult& res = r.result;
  res.spec = spec;
  r.workload = &workload_registry().get(spec.workload);
  r.strategy_entry = &strategy_registry().get(spec.strategy);
  r.strategy = r.strategy_entry->make();
  if (r.strategy_entry->uses_tracker) {
    res.tracker = spec.tracker.empty() ? kDefaultTracker : spec.tracker;
    r.tracker_entry = &tracker_registry().get(res.tracker);
    r.tracker = r.tracker_entry->make();
  } else if (!spec.tracker.empty()) {
    throw UsageError("--tracker: strategy '" + spec.strategy + "' uses no dirty tracker");
  }
  validate_params(spec.params);
  for (const auto& [unit, values] : spec.params)
    if (unit != spec.strategy && unit != res.tracker && unit != spec.workload && unit != spec.restore)
      throw UsageError("--set " + unit + "." + (values.empty() ? "*" : values.begin()->first) + ": " + unit +
                       " is not in this run (strategy " + spec.strategy +
                       (res.tracker.empty() ? "" : ", tracker " + res.tracker) + ", workload " + spec.workload + ")");
  auto values_for = [&](const std::string& unit, const std::vector<ParamSpec>& specs) {
    auto it = spec.params.find(unit);
    return ParamValues(unit, specs, it == spec.params.end() ? std::map<std::string, std::string>{} : it->second);
  };
  r.strategy_params = values_for(r.strategy_entry->name, r.strategy_entry->params);
  res.params = r.strategy_params.describe();
  if (r.tracker) {
    r.tracker_params = values_for(res.tracker, r.tracker_entry->params);
    std::string t = r.tracker_params.describe();
    if (!t.empty()) res.params += (res.params.empty() ? "" : ";") + t;
  }
  r.workload_params = values_for(r.workload->name, r.workload->params);
  if (std::string w = r.workload_params.describe(); !w.empty()) res.params += (res.params.empty() ? "" : ";") + w;
  check_spec_fields(spec);  // the bounds of every flag, for specs built in code too
  if (spec.fsync && spec.sink.rfind("file:", 0) != 0)
    throw UsageError("--fsync: only the file sink syncs (this run's sink is " + spec.sink + ")");
  res.rate_target_pages_s = parse_rate_pages(spec.rate, "--rate");
  res.bandwidth_bytes_s = parse_bandwidth(spec.bandwidth, "--bandwidth");
  if (!spec.image_path.empty()) {
    // The file sink keeps the image itself: a second copy elsewhere would be written by nobody.
    if (spec.sink.rfind("file:", 0) == 0 && spec.sink.substr(5) != spec.image_path)
      throw UsageError("--image: the file sink already keeps the image in '" + spec.sink.substr(5) +
                       "'; --image is for sinks that keep none (null, memory, exec) or names the same file");
    check_image_path(spec.image_path);
  }
  res.region_bytes = (spec.mem_bytes + kPageSize - 1) / kPageSize * kPageSize;
  if (!spec.restore.empty()) {
    const RestoreEntry& re = restore_registry().get(spec.restore);
    if (!r.strategy_entry->produces_image)
      throw UsageError("--restore: strategy '" + spec.strategy + "' saves no image to restore");
    if (r.workload->run_whole)
      throw UsageError("--restore: the " + spec.workload + " workload's snapshot is not a snapbench image");
    auto it = spec.params.find(re.name);
    std::string d = ParamValues(re.name, re.params, it == spec.params.end() ? std::map<std::string, std::string>{} : it->second).describe();
    if (!d.empty()) res.params += (res.params.empty() ? "" : ";") + d;
  }
  return r;
}

}  // namespace

RunResult resolve_spec(const RunSpec& spec) { return resolve(spec).result; }

Support combination_support(const StrategyEntry& strategy, const TrackerEntry* tracker, const std::string& workload) {
  if (!accepts(strategy.workloads, workload))
    return Support::no("strategy " + strategy.name + " cannot snapshot the " + workload + " workload");
  if (tracker && !accepts(strategy.trackers, tracker->name))
    return Support::no("strategy " + strategy.name + " does not take the " + tracker->name + " tracker");
  if (tracker && !accepts(tracker->workloads, workload))
    return Support::no("tracker " + tracker->name + " cannot track the " + workload + " workload");
  return Support::yes();
}

void set_writer_columns(RunResult& res, const PhaseStats& before, const PhaseStats& during) {
  res.rate_before_pages_s = before.rate_pages();
  res.rate_during_pages_s = during.rate_pages();
  res.write_count = during.writes;
  res.write_p50_us = us(during.latency.percentile(0.50));
  res.write_p99_us = us(during.latency.percentile(0.99));
  res.write_p999_us = us(during.latency.percentile(0.999));
  res.write_max_us = us(during.latency.max());
  res.write_before_p99_us = us(before.latency.percentile(0.99));
}

RunResult run_once(const RunSpec& spec) {
  Resolved resolved = resolve(spec);
  check_run_limits(spec);  // memory and time, before anything is allocated (UsageError)
  // From here the run ends at its time limit (or a SIGTERM): every wait that can last checks it.
  RunWatchdog watchdog(run_time_limit_s(spec));
  if (resolved.workload->run_whole)
    return resolved.workload->run_whole(spec, resolved.result, resolved.strategy_params, resolved.workload_params);
  RunResult res = resolved.result;
  auto& strategy = resolved.strategy;
  auto& tracker = resolved.tracker;
  const ParamValues& strategy_params = resolved.strategy_params;
  const ParamValues& tracker_params = resolved.tracker_params;
  const uint64_t pages = res.region_bytes / kPageSize;
  // An upper bound of the stream for in-memory sinks, from the strategy's own bound on its records
  // (a header and a trailer around them). The mapping is MAP_NORESERVE: only the bytes actually
  // written cost memory.
  auto stream_bytes = [](uint64_t records) { return 4096 + records * (kPageSize + 16) + 4096; };
  const uint64_t capacity = stream_bytes(resolved.strategy_entry->record_bound(pages, strategy_params));
  SinkOptions sink_opts{spec.sink, spec.fsync, res.bandwidth_bytes_s, capacity};
  std::unique_ptr<Sink> sink = make_sink(sink_opts);  // UsageError on a bad spec or missing directory

  // ---- support: a result with a reason, never a crash ----
  Support sup = combination_support(*resolved.strategy_entry, resolved.tracker_entry, spec.workload);
  if (sup.supported) {
    Support ws = resolved.workload->probe();
    if (!ws.supported) sup = Support::no("workload " + spec.workload + ": " + ws.reason);
  }
  if (sup.supported) sup = strategy->probe();
  if (sup.supported && tracker) {
    Support ts = tracker->probe();
    if (!ts.supported) sup = Support::no("tracker " + res.tracker + ": " + ts.reason);
  }
  if (!sup.supported) {
    res.status = RunStatus::kUnsupported;
    res.reason = sup.reason;
    res.verified = "off";
    return res;
  }

  try {
    RegionOptions ropts{spec.mem_bytes, spec.populate, spec.thp, spec.numa_node, spec.seed};
    auto region_owner = std::make_unique<Region>(ropts);
    Region& region = *region_owner;
    const bool want_image = resolved.strategy_entry->produces_image;
    const bool verify = spec.verify && want_image;
    const bool keep_image = want_image && !spec.image_path.empty() && spec.sink.rfind("file:", 0) != 0;
    const bool restoring = want_image && !spec.restore.empty();
    TeeSink* tee = nullptr;
    if ((verify || keep_image || restoring) && !sink->readable()) {
      auto t = std::make_unique<TeeSink>(std::move(sink), capacity);
      tee = t.get();
      sink = std::move(t);
    }
    std::unique_ptr<Reference> reference;
    if (verify) reference = std::make_unique<Reference>(region);
    // Nothing of the harness inside the stopwatch: back the stream's memory and the image writer's
    // buffer now. One whole image, two for a strategy that may re-send pages: precopy at 200 MiB/s on
    // 1 GiB ran 5-8 % past one image on the AMD machine (results/verify-overhead), and each page past
    // what is backed is a first touch in the snapshot (timed apart for the tee, but it still stretches
    // the pass and so the next pass's dirty set).
    if (want_image) {
      const uint64_t one_image = stream_bytes(pages);
      sink->prepare(std::min<uint64_t>(capacity, one_image * (resolved.strategy_entry->may_save_duplicates ? 2 : 1)));
      ImageWriter::warm_buffer();
    }

    WorkloadOptions wopts{spec.writers, res.rate_target_pages_s, spec.pattern,
                          spec.seed * 0x9e3779b97f4a7c15ull + uint64_t(spec.rep), spec.numa_node};
    if (tracker) wopts.dirty_ring_entries = resolved.tracker_entry->dirty_ring_entries(tracker_params);
    std::unique_ptr<Workload> running = resolved.workload->make(region, wopts, resolved.workload_params);
    Workload& workload = *running;
    workload.set_phase(Phase::kWarmup);
    // In slices, so a stop request (SIGTERM, the time limit) ends a long warm-up at once.
    for (const uint64_t warm_end = now_ns() + uint64_t(spec.warmup_s * 1e9); now_ns() < warm_end;) {
      throw_if_run_stopped();
      std::this_thread::sleep_for(std::chrono::nanoseconds(std::min<uint64_t>(warm_end - now_ns(), 20000000)));
    }
    // The machine's speed right now, for compare to judge this run's times against (not for `none`:
    // its time is its duration parameter, not work the machine does).
    if (want_image) res.calib_bytes_s = calibrate_save_rate(region);

    HarnessControl control(workload, reference.get(), tee);
    StrategyMetrics metrics;
    SnapshotContext ctx{region, control, *sink, metrics, strategy_params, tracker.get(), tracker_params};
    workload.set_phase(Phase::kSnapshot);
    const uint64_t t0 = now_ns();
    std::string failure;
    try {
      strategy->snapshot(ctx);
    } catch (const std::exception& e) {
      failure = e.what();
    }
    const uint64_t t1 = now_ns();
    // A snapshot that ended as the run was stopped is not a measurement, even if it got to its end.
    if (failure.empty() && run_stop_requested()) {
      try {
        throw_if_run_stopped();
      } catch (const RunStopped& e) {
        failure = e.what();
      }
    }
    workload.set_phase(Phase::kAfter);
    if (control.paused()) {
      control.resume();
      if (failure.empty()) failure = "strategy left the writers paused";
    }
    workload.stop();

    if (failure.empty() && want_image && control.consistency_points() != 1)
      failure = "strategy marked " + std::to_string(control.consistency_points()) +
                " consistency points (expected exactly 1)";

    // The verifier's own work inside the timed phase (the reference copy at the consistency point, the
    // tee's copy of the stream) is taken out and reported in notes; what it does to the writers and to
    // the strategy's threads (caches, memory bandwidth) stays in, and is measured by verify-overhead.
    const double verifier_s = control.reference_s() + (tee ? tee->copy_s() : 0.0);
    res.completion_s = std::max(0.0, ns_to_s(t1 - t0) - verifier_s);
    res.downtime_s = control.downtime_s();
    res.freeze_s = metrics.freeze_s;
    res.passes = metrics.passes;
    res.converged = metrics.converged;
    res.faults = metrics.faults;
    res.extra_rss_bytes = metrics.extra_rss_bytes;
    res.notes = metrics.notes;
    if (reference || tee) {
      char buf[96];
      std::snprintf(buf, sizeof buf, "verify_reference_s=%.6f;verify_copy_s=%.6f", control.reference_s(),
                    tee ? tee->copy_s() : 0.0);
      res.notes += (res.notes.empty() ? "" : ";") + std::string(buf);
    }
    if (std::string w = workload.notes(); !w.empty()) res.notes += (res.notes.empty() ? "" : ";") + w;
    res.image = metrics.image;
    const PhaseStats before = workload.stats(Phase::kWarmup);
    const PhaseStats during = workload.stats(Phase::kSnapshot);
    set_writer_columns(res, before, during);

    if (!failure.empty()) {
      // No finished image, so nothing was verified (verified=off, not fail: a verify failure is a
      // wrong image); image_bytes is what the sink took before the failure.
      res.status = RunStatus::kFailed;
      res.reason = failure;
      res.verified = "off";
      res.verify_detail = spec.verify && want_image ? "snapshot failed: no image to verify" : "";
      res.image.image_bytes = sink->bytes_written();
      return res;
    }

    uint64_t nonzero_pages = 0;
    std::string restore_path;  // the image file the restore phase reads
    bool restore_path_is_temp = false;
    if (want_image && (verify || keep_image || restoring)) {
      std::vector<uint8_t> bytes = sink->read_back();
      if (keep_image) write_file(spec.image_path, bytes);
      if (restoring) {
        restore_path = keep_image ? spec.image_path : restore_temp_path(spec);
        restore_path_is_temp = !keep_image;
        if (!keep_image) write_file(restore_path, bytes);
      }
      if (verify) {
        try {
          FlatImage flat = flatten_image(bytes);
          VerifyResult v = verify_image(flat, reference->data(), region.pages());
          res.verified = v.pass ? "pass" : "fail";
          res.verify_detail = v.message;
          if (res.image.pages_saved == 0) res.image = flat.stats;
        } catch (const ImageError& e) {
          res.verified = "fail";
          res.verify_detail = e.what();
        }
        for (size_t i = 0; i < region.pages(); ++i) nonzero_pages += !page_is_zero(reference->data() + i * kPageSize);
      }
    }
    if (!verify) nonzero_pages = region.count_nonzero_pages();  // at the end: an upper bound
    res.nonzero_rss_bytes = nonzero_pages * kPageSize;
    if (res.image.image_bytes == 0) res.image.image_bytes = sink->bytes_written();
    res.image_ratio = res.nonzero_rss_bytes ? double(res.image.image_bytes) / double(res.nonzero_rss_bytes) : 0.0;
    if (res.verified == "fail") {
      res.status = RunStatus::kFailed;
      res.reason = "verify failed: " + res.verify_detail;
    }
    if (restoring && res.status == RunStatus::kOk) {
      // The snapshot's memory is given back first: the restore maps a region of its own.
      running.reset();
      reference.reset();
      sink.reset();
      region_owner.reset();
      run_restore(spec, res, restore_path);
      if (!res.restore_notes.empty()) res.notes += (res.notes.empty() ? "" : ";") + res.restore_notes;
    }
    if (restore_path_is_temp) ::unlink(restore_path.c_str());
  } catch (const UsageError&) {
    throw;
  } catch (const UnsupportedError& e) {
    res.status = RunStatus::kUnsupported;
    res.reason = e.what();
    res.verified = "off";
  } catch (const std::exception& e) {
    res.status = RunStatus::kFailed;
    res.reason = e.what();
  }
  return res;
}

}  // namespace snap
