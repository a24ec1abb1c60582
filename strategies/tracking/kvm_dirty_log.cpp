// `kvm-dirty-log` dirty tracker (kvm workload): KVM's dirty bitmap of the data memslot, with manual
// protection and initially-all-set; collect = KVM_GET_DIRTY_LOG then KVM_CLEAR_DIRTY_LOG in chunks.
#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/error.h"
#include "strategies/tracking/tracker.h"
#include "workloads/kvm/vm.h"

namespace snap {

namespace {

class KvmDirtyLogTracker final : public DirtyTracker {
 public:
  ~KvmDirtyLogTracker() override {
    try {
      stop();
    } catch (...) {
      // The VM going away drops the logging with it.
    }
  }

  using DirtyTracker::DirtyTracker;
  Support probe() const override {
    if (std::string why = kvm::kvm_unavailable_reason(); !why.empty()) return Support::no(why);
    if (!kvm::kvm_manual_dirty_log_available())
      return Support::no("KVM lacks KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 with KVM_DIRTY_LOG_INITIALLY_SET");
    return Support::yes();
  }

  void start(Region&, WorkloadControl& control, const ParamValues& params) override {
    stop();
    vm_ = control.kvm_vm();
    if (!vm_) throw std::runtime_error("kvm-dirty-log tracks a KVM guest's memory: use --workload kvm");
    chunk_ = uint64_t(params.get_int("clear_chunk_pages"));
    if (chunk_ % 64 != 0) throw UsageError("kvm-dirty-log.clear_chunk_pages: must be a multiple of 64");
    if (!vm_->manual_dirty_log())
      throw std::runtime_error("kvm-dirty-log: the VM has no manual dirty-log protection (it was created with a dirty ring)");
    vm_->set_dirty_logging(true);
    logging_ = true;
    // Initially-all-set: logging starts with every bit set and no page write-protected. Clearing it
    // all now write-protects every page, so from here on only real writes are reported.
    std::vector<uint64_t> discard;
    collect(discard);
  }

  void collect(std::vector<uint64_t>& dirty) override {
    vm_->get_dirty_log(bitmap_);
    const uint64_t pages = vm_->data_pages();
    // Clear (re-protect) only the chunks with dirty bits, each before its pages are reported, so a
    // write after the clear is seen at the next collect; a write between GET and CLEAR hit a page
    // that is reported now and saved after this returns.
    for (uint64_t first = 0; first < pages; first += chunk_) {
      const uint64_t n = std::min(chunk_, pages - first);
      const uint64_t* words = bitmap_.data() + first / 64;
      const uint64_t nwords = (n + 63) / 64;
      bool any = false;
      for (uint64_t w = 0; w < nwords && !any; ++w) any = words[w] != 0;
      if (!any) continue;
      vm_->clear_dirty_log(first, n, words);
      for (uint64_t w = 0; w < nwords; ++w)
        for (uint64_t bits = words[w]; bits; bits &= bits - 1) dirty.push_back(first + w * 64 + uint64_t(__builtin_ctzll(bits)));
    }
  }

  void stop() override {
    if (!logging_) return;
    logging_ = false;
    vm_->set_dirty_logging(false);
  }

  uint64_t memory_bytes() const override { return bitmap_.capacity() * sizeof(uint64_t); }

 private:
  kvm::Vm* vm_ = nullptr;
  uint64_t chunk_ = 262144;
  bool logging_ = false;
  std::vector<uint64_t> bitmap_;
};

}  // namespace

const TrackerEntry& kvm_dirty_log_tracker() {
  static const TrackerEntry entry{
      .name = "kvm-dirty-log",
      .help = "KVM's dirty bitmap on the guest's memslot (KVM_MEM_LOG_DIRTY_PAGES, manual protect with "
              "initially-all-set; GET_DIRTY_LOG then CLEAR_DIRTY_LOG in chunks, QEMU's way); kvm workload only",
      .params = {
          {"clear_chunk_pages", ParamSpec::Type::kInt, "262144", 64, double(1ull << 30),
           "pages per KVM_CLEAR_DIRTY_LOG call (a multiple of 64; QEMU clears 1 GiB = 262144 pages at a time)"},
      },
      .workloads = {"kvm"},
      .factory = make_tracker_of<KvmDirtyLogTracker>,
  };
  return entry;
}

}  // namespace snap
