// The machine profile's keys, declared once with unit and meaning, and the table that prints them.
#include <cmath>
#include <cstdio>

#include "harness/machine_profile.h"

namespace snap {

const std::vector<ProfileKey>& machine_profile_keys() {
  using K = ProfileKeyKind;
  static const std::vector<ProfileKey> keys = {
      {"schema", "", K::kIdentity, "version of this key set"},
      {"host", "", K::kIdentity, "host name"},
      {"kernel", "", K::kIdentity, "kernel release (uname -r)"},
      {"cpu_model", "", K::kIdentity, "CPU model (/proc/cpuinfo model name)"},
      {"cores", "", K::kIdentity, "online CPUs"},
      {"thp_enabled", "", K::kIdentity, "system THP mode (every measurement maps with MADV_NOHUGEPAGE)"},
      {"boot_id", "", K::kIdentity, "/proc/sys/kernel/random/boot_id: the boot the profile belongs to"},
      {"quick", "", K::kIdentity, "measured with --quick (smaller sizes, fewer samples)"},
      {"complete", "", K::kIdentity, "every primitive ran (false when interrupted)"},
      {"measured_utc", "", K::kIdentity, "when it was measured"},
      {"duration_s", "s", K::kIdentity, "how long measuring took"},
      {"memcpy_gb_s", "GB/s", K::kMeasure, "memcpy between warm pre-faulted buffers, one thread, median"},
      {"first_touch_us_per_page", "us/page", K::kMeasure, "first write to fresh anonymous memory (page fault + zeroing)"},
      {"wp_fault_thread_p50_us", "us", K::kMeasure, "uffd write-protect fault served by a thread (copy aside + un-protect), p50"},
      {"wp_fault_thread_p99_us", "us", K::kMeasure, "the same, p99"},
      {"wp_fault_sigbus_p50_us", "us", K::kMeasure, "uffd write-protect fault as SIGBUS in the writer (copy aside + un-protect), p50"},
      {"wp_fault_sigbus_p99_us", "us", K::kMeasure, "the same, p99"},
      {"unprotect_1_us_per_page", "us/page", K::kMeasure, "UFFDIO_WRITEPROTECT release, 1 page per call"},
      {"unprotect_64_us_per_page", "us/page", K::kMeasure, "the same, 64 pages per call"},
      {"unprotect_512_us_per_page", "us/page", K::kMeasure, "the same, 512 pages per call"},
      {"wp_arm_us_per_page", "us/page", K::kMeasure, "UFFDIO_WRITEPROTECT protect of a whole populated region in one call"},
      {"unprotect_all_us_per_page", "us/page", K::kMeasure, "UFFDIO_WRITEPROTECT release of that whole region in one call"},
      {"mprotect_first_write_us", "us", K::kMeasure, "first write to a PROT_READ page: SIGSEGV, handler mprotects it writable"},
      {"async_wp_first_write_us", "us", K::kMeasure, "first write to a WP_ASYNC-protected page (the kernel resolves it)"},
      {"pagemap_scan_ms_per_gib", "ms/GiB", K::kMeasure, "PAGEMAP_SCAN + PM_SCAN_WP_MATCHING over a protected, unwritten region"},
      {"fork_ms_per_gib", "ms/GiB", K::kMeasure, "fork() of a process holding a populated region (THP off)"},
      {"fdatasync_write_mb_s", "MB/s", K::kMeasure, "sequential file write in 1 MiB blocks ended by fdatasync, median"},
      {"dev_kvm", "", K::kPresence, "/dev/kvm can be opened"},
      {"qemu", "", K::kPresence, "qemu-system-x86_64 on PATH (its version)"},
      {"soft_dirty", "", K::kPresence, "soft-dirty bits work (the soft-dirty tracker's probe)"},
      {"uffd_sigbus", "", K::kPresence, "userfaultfd offers UFFD_FEATURE_SIGBUS (write-protect faults as SIGBUS)"},
      {"uffd_wp_async", "", K::kPresence, "userfaultfd offers UFFD_FEATURE_WP_ASYNC"},
      {"pagemap_scan", "", K::kPresence, "the PAGEMAP_SCAN ioctl exists (Linux 6.7+)"},
  };
  return keys;
}

namespace {

std::string number(double v) {
  char b[64];
  if (v == std::floor(v) && std::fabs(v) < 1e9) {  // a count (cores) or a whole rate
    std::snprintf(b, sizeof b, "%.0f", v);
    return b;
  }
  const int decimals = v < 1 ? 3 : v < 10 ? 2 : v < 100 ? 1 : 0;
  std::snprintf(b, sizeof b, "%.*f", decimals, v);
  return b;
}

std::string text_of(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_number()) return number(v.get<double>());
  if (v.is_null()) return "(missing)";
  return v.dump();
}

}  // namespace

std::string format_machine_profile(const nlohmann::json& p) {
  auto get = [&](const char* k) { return p.contains(k) ? text_of(p[k]) : std::string("?"); };
  std::string out = "machine profile of " + get("host") + ": kernel " + get("kernel") + ", " + get("cpu_model") + ", " +
                    get("cores") + " cores, THP " + get("thp_enabled") + "; measured " + get("measured_utc") + " in " +
                    get("duration_s") + " s" + (p.value("quick", false) ? " (--quick)" : "") +
                    (p.value("complete", true) ? "" : " (interrupted)") + "\n";
  struct Row {
    std::string name, value, unit, meaning;
  };
  std::vector<Row> rows = {{"name", "value", "unit", "meaning"}};
  for (const auto& k : machine_profile_keys()) {
    if (k.kind == ProfileKeyKind::kIdentity) continue;
    std::string meaning = k.meaning;
    if (k.kind == ProfileKeyKind::kPresence) {
      const std::string detail_key = std::string(k.key) + "_detail";
      if (p.contains(detail_key)) meaning += ": " + text_of(p[detail_key]);
    }
    rows.push_back({k.key, get(k.key), k.unit, meaning});
  }
  size_t w[3] = {0, 0, 0};
  for (const auto& r : rows) {
    w[0] = std::max(w[0], r.name.size());
    // A long reason would push every meaning off the screen: such values do not widen the column.
    if (r.value.size() <= 24) w[1] = std::max(w[1], r.value.size());
    w[2] = std::max(w[2], r.unit.size());
  }
  for (const auto& r : rows) {
    auto pad = [](const std::string& s, size_t n) { return s.size() >= n ? s : s + std::string(n - s.size(), ' '); };
    if (r.value.size() > w[1]) {  // the value alone on its line, the rest below it
      out += pad(r.name, w[0]) + "  " + r.value + "\n" + std::string(w[0] + 2 + w[1] + 2, ' ') + pad(r.unit, w[2]) +
             "  " + r.meaning + "\n";
      continue;
    }
    out += pad(r.name, w[0]) + "  " + pad(r.value, w[1]) + "  " + pad(r.unit, w[2]) + "  " + r.meaning + "\n";
  }
  return out;
}

}  // namespace snap
