// qemu_snapshot: one snapshot of the QEMU guest's data area with QEMU's mechanism for the strategy
// (see qemu_snapshot.h), its counts from the parsed stream and its verification.
#include "workloads/qemu/qemu_snapshot.h"

#include <cstring>
#include <sstream>
#include <vector>

#include "core/clock.h"
#include "core/region.h"
#include "workloads/qemu/guest_ram_copy.h"
#include "workloads/qemu/stamp_check.h"
#include "workloads/workload.h"

namespace snap::qemu {

std::string qemu_strategy_unsupported(const std::string& strategy) {
  if (strategy == "stop-copy" || strategy == "precopy" || strategy == "uffd-wp") return "";
  if (strategy == "fork-cow") return "QEMU has no fork-based snapshot (its mechanisms: stop + migrate, precopy, background-snapshot)";
  return "strategy " + strategy + " has no QEMU mechanism";
}

namespace {

std::string fmt(double v) {
  std::ostringstream s;
  s.precision(6);
  s << v;
  return s.str();
}

// Stamps check of a background snapshot: every data page saved exactly once, each slot of it the
// page's set-up content or its own stamp.
void check_background(const GuestRamCopy& ram, const RamBlock& data, const Region& region, QemuSnapshotResult& r) {
  std::vector<uint8_t> initial(kTargetPageSize);
  uint64_t bad = 0;
  std::string first;
  for (uint64_t i = 0; i < ram.pages(); ++i) {
    std::string why;
    if (ram.saves(i) != 1) {
      why = "page " + std::to_string(i) + " saved " + std::to_string(ram.saves(i)) + " times";
    } else {
      region_initial_page(region.options(), i, initial.data());
      why = check_page_stamps(ram.page(i), i, initial.data());
    }
    if (!why.empty() && bad++ == 0) first = why;
  }
  (void)data;
  r.verified = bad ? "fail" : "stamps";
  r.verify_detail = bad ? std::to_string(bad) + " pages fail the stamps check; first: " + first
                        : std::to_string(ram.pages()) + " pages saved once each, every slot set-up content or the page's own stamp";
}

// The newest stamp of page `index` in `page` (its seq, the writer's count in the high bits), 0 if none.
uint64_t newest_stamp(const uint8_t* page, uint64_t index) {
  uint64_t newest = 0;
  for (size_t slot = 0; slot < 255; ++slot) {
    uint64_t seq, idx;
    std::memcpy(&seq, page + slot * 16, 8);
    std::memcpy(&idx, page + slot * 16 + 8, 8);
    if (idx == index && stamp_offset(seq) == slot * 16 && seq > newest) newest = seq;
  }
  return newest;
}

// Names the pages of a failed precopy comparison (up to 8) with the write each copy holds: a copy
// that is an intact but older version of its page is a lost dirty page (the write after the page's
// last save never reached the stream), not a parser or rebuild fault, which would tear or misplace.
// Sets `all_stale` when every differing page is such a version.
std::string describe_differences(const GuestRamCopy& ram, const Region& region, bool& all_stale) {
  std::vector<uint8_t> initial(kTargetPageSize);
  std::string out;
  uint64_t named = 0;
  all_stale = true;
  for (uint64_t i = 0; i < ram.pages(); ++i) {
    const uint8_t* mem = region.base() + i * kTargetPageSize;
    if (std::memcmp(ram.page(i), mem, kTargetPageSize) == 0) continue;
    region_initial_page(region.options(), i, initial.data());
    const uint64_t saved = newest_stamp(ram.page(i), i), now = newest_stamp(mem, i);
    const bool stale = check_page_stamps(ram.page(i), i, initial.data()).empty() && saved < now;
    all_stale = all_stale && stale;
    if (named++ < 8)
      out += std::string(out.empty() ? "" : ", ") + std::to_string(i) + " (saved " + std::to_string(ram.saves(i)) +
             "x, image has write " + std::to_string(saved >> 8) + ", memory " + std::to_string(now >> 8) +
             (stale ? ": an older intact version)" : ": not an older version of the page)");
  }
  if (named > 8) out += ", ...";
  return "pages " + out;
}

}  // namespace

QemuSnapshotResult qemu_snapshot(QemuGuest& guest, const QemuSnapshotRequest& req, Sink& sink) {
  if (std::string why = qemu_strategy_unsupported(req.strategy); !why.empty()) throw std::logic_error(why);
  QemuSnapshotResult r;
  Region& region = guest.region();
  GuestRamCopy ram(kDataRamBlock);
  MigrationStreamParser parser(&ram);
  MigrationOptions mo;
  mo.background_snapshot = req.strategy == "uffd-wp";
  mo.max_bandwidth = req.bandwidth;
  mo.timeout_s = req.timeout_s;
  mo.qmp_timeout_s = req.qmp_timeout_s;
  if (req.strategy == "precopy") {
    mo.downtime_limit_ms = req.downtime_limit_ms;
    mo.max_passes = req.max_passes;
  }
  std::vector<uint8_t> reference;  // stop-copy with verify: the region at the stop
  const uint64_t t0 = now_ns();
  if (req.strategy == "stop-copy") {
    guest.pause();
    const uint64_t stopped = now_ns();
    uint64_t reference_ns = 0;
    if (req.verify) {
      const uint64_t c0 = now_ns();
      reference.assign(region.base(), region.base() + region.bytes());
      reference_ns = now_ns() - c0;
    }
    r.migration = migrate_to_sink(guest.vm(), mo, sink, parser);
    guest.resume();
    r.downtime_s = ns_to_s(now_ns() - stopped - reference_ns);
  } else {
    r.migration = migrate_to_sink(guest.vm(), mo, sink, parser);
    r.downtime_s = r.migration.downtime_s;
    if (req.strategy == "precopy") guest.stopped_by_qemu();
  }
  r.completion_s = ns_to_s(now_ns() - t0);

  const int b = parser.block_index(kDataRamBlock);
  if (b < 0) throw std::runtime_error("QEMU's stream has no RAM block " + std::string(kDataRamBlock));
  r.data = parser.blocks()[size_t(b)];
  r.data.seen.clear();
  r.bytes = parser.bytes();
  r.other_pages_saved = parser.pages_saved() - r.data.pages_saved;
  if (req.strategy == "precopy") {
    r.passes = r.migration.dirty_sync_count;
    r.converged = !r.migration.forced_completion;
  }
  if (r.data.unique_pages != region.pages())
    throw std::runtime_error("QEMU's stream saved " + std::to_string(r.data.unique_pages) + " of the " +
                             std::to_string(region.pages()) + " data pages");
  for (uint64_t i = 0; i < ram.pages(); ++i) r.nonzero_pages += !page_is_zero(ram.page(i));

  if (req.verify) {
    if (req.strategy == "stop-copy") {
      RamCompare c = ram.compare_with_memory(reference.data(), reference.size());
      r.verified = c.pass ? "pass" : "fail";
      r.verify_detail = c.message;
    } else if (req.strategy == "precopy") {
      // QEMU leaves the guest stopped after precopy (postmigrate): the data area is the image's
      // consistency point, compared before the guest runs on.
      RamCompare c = ram.compare_with_memory(region.base(), region.bytes());
      r.verified = c.pass ? "pass" : "fail";
      r.verify_detail = c.message;
      if (!c.pass && c.pages_differing) {
        bool all_stale = false;
        r.verify_detail += "; " + describe_differences(ram, region, all_stale);
        if (all_stale && guest.accel() == "tcg")
          r.verify_detail += "; lost dirty pages: QEMU before 9.0 misses TCG stores in its migration dirty bitmap "
                             "(upstream commit 03bfc2188f, README: Verification)";
      }
    } else {
      check_background(ram, r.data, region, r);
    }
  }
  // After precopy QEMU keeps the guest stopped (postmigrate); the run goes on with it running.
  if (req.strategy == "precopy") guest.resume();

  const std::string cc = cross_check(r.migration, parser);
  const auto& p = r.migration.parameters;
  r.notes = "qemu_total_time_s=" + fmt(r.migration.total_time_s) + ";qemu_setup_time_s=" + fmt(r.migration.setup_time_s) +
            ";qemu_downtime_s=" + fmt(r.migration.downtime_s) + ";qemu_dirty_syncs=" + std::to_string(r.migration.dirty_sync_count) +
            ";qemu_transferred_bytes=" + std::to_string(r.migration.transferred_bytes) +
            ";qemu_max_bandwidth=" + p.value("max-bandwidth", nlohmann::json(0)).dump() +
            ";qemu_downtime_limit_ms=" + p.value("downtime-limit", nlohmann::json(0)).dump() +
            ";forced_completion=" + std::to_string(int(r.migration.forced_completion)) +
            ";other_ram_pages=" + std::to_string(r.other_pages_saved) +
            ";stream_ram_bytes=" + std::to_string(r.bytes.ram) + ";stream_device_bytes=" + std::to_string(r.bytes.devices) +
            ";stream_vmdesc_bytes=" + std::to_string(r.bytes.vmdesc) + ";cross_check=" + (cc.empty() ? "ok" : cc);
  if (!cc.empty()) throw std::runtime_error("QEMU's counters disagree with its stream: " + cc);
  return r;
}

}  // namespace snap::qemu
