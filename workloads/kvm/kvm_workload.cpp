// The `kvm` workload: starts the VM with one pattern plan per vCPU and keeps the per-phase books.
#include "workloads/kvm/kvm_workload.h"

#include <cstdio>

#include "core/clock.h"
#include "core/error.h"
#include "workloads/kvm/guest_abi.h"
#include "workloads/pattern_kit.h"

namespace snap {

namespace {

kvm::VmOptions vm_options(Region& region, const WorkloadOptions& opts) {
  if (opts.writers < 1 || opts.writers > int(guest::kMaxVcpus))
    throw UsageError("--writers: the kvm workload runs 1 to " + std::to_string(guest::kMaxVcpus) +
                     " vCPUs (got " + std::to_string(opts.writers) + ")");
  if (!(opts.rate_pages >= 0 || opts.rate_pages == kRateMax))
    throw UsageError("--rate: must be 0 (idle), a positive rate or max");
  if (opts.numa_node >= 0) throw UsageError("--numa-node: the kvm workload does not bind its vCPU threads");
  check_pattern_spec(opts.pattern);
  kvm::VmOptions v;
  v.data = region.base();
  v.data_bytes = region.bytes();
  for (int i = 0; i < opts.writers; ++i)
    v.plans.push_back(plan_pattern(opts.pattern, region.pages(), opts.seed, i, opts.writers));
  v.rate_pages = opts.rate_pages;
  v.sample_seed = opts.seed;
  v.dirty_ring_entries = opts.dirty_ring_entries;
  return v;
}

}  // namespace

KvmWorkload::KvmWorkload(Region& region, const WorkloadOptions& opts)
    : vm_(std::make_unique<kvm::Vm>(vm_options(region, opts))) {
  phase_started_ns_ = now_ns();
}

KvmWorkload::~KvmWorkload() { stop(); }

void KvmWorkload::set_phase(Phase p) {
  std::lock_guard lock(mutex_);
  if (stopped_ || phase_ == int(p)) return;
  const uint64_t now = now_ns();
  phase_seconds_[phase_] += ns_to_s(now - phase_started_ns_);
  phase_started_ns_ = now;
  phase_ = int(p);
  vm_->set_phase(phase_);
}

void KvmWorkload::pause() { vm_->pause(); }
void KvmWorkload::resume() { vm_->resume(); }
bool KvmWorkload::paused() const { return vm_->paused(); }

void KvmWorkload::stop() {
  std::lock_guard lock(mutex_);
  if (stopped_) return;
  vm_->stop();
  phase_seconds_[phase_] += ns_to_s(now_ns() - phase_started_ns_);
  stopped_ = true;
}

PhaseStats KvmWorkload::stats(Phase p) const {
  std::lock_guard lock(mutex_);
  if (!stopped_) throw std::logic_error("KvmWorkload::stats() before stop()");
  if (std::string why = vm_->failure(); !why.empty()) throw std::runtime_error("kvm: " + why);
  PhaseStats out;
  std::vector<uint64_t> counts;
  uint64_t total, max, sum;
  vm_->latency(int(p), counts, total, max, sum);
  out.latency.merge_raw(counts.data(), total, max, sum);
  out.writes = vm_->writes(int(p));
  out.seconds = phase_seconds_[int(p)];
  return out;
}

uint64_t KvmWorkload::total_writes() const { return vm_->total_writes(); }

std::string KvmWorkload::notes() const {
  std::string out;
  for (const auto& [reason, n] : vm_->exit_counts()) {
    if (!out.empty()) out += ';';
    out.append("exits_").append(reason).append("=").append(std::to_string(n));
  }
  char khz[64];
  std::snprintf(khz, sizeof khz, ";tsc_khz=%.0f", vm_->tsc_hz() / 1e3);
  out += khz;
  return out;
}

std::string KvmWorkload::failure() const { return vm_->failure(); }

const WorkloadEntry& kvm_workload() {
  static const WorkloadEntry entry{
      "kvm",
      "a KVM guest whose vCPUs (--writers) write the region: its memory is the guest's RAM",
      {},
      [] {
        const std::string why = kvm::kvm_unavailable_reason();
        return why.empty() ? Support::yes() : Support::no(why);
      },
      [](Region& region, const WorkloadOptions& opts, const ParamValues&) -> std::unique_ptr<Workload> {
        return std::make_unique<KvmWorkload>(region, opts);
      },
  };
  return entry;
}

}  // namespace snap
