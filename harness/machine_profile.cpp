// Measures the machine profile's primitives (see machine_profile.h); each one maps its own memory
// with THP off, pre-faults it outside the stopwatch and leaves nothing protected or installed.
#include "harness/machine_profile.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>

#include "core/clock.h"
#include "core/error.h"
#include "core/fd_io.h"
#include "core/histogram.h"
#include "core/linux_compat.h"
#include "core/region.h"
#include "core/scoped.h"
#include "core/uffd.h"
#include "core/units.h"
#include "core/wp_fault_server.h"
#include "core/write_enabling_segv.h"
#include "harness/provenance.h"
#include "strategies/tracking/tracker.h"
#include "strategies/uffd_wp/page_state.h"
#include "strategies/uffd_wp/sigbus.h"
#include "workloads/qemu/qemu_process.h"

namespace snap {

namespace {

using nlohmann::json;

constexpr uint64_t kMiB = 1ull << 20;
constexpr double kGiB = double(1ull << 30);

// Sizes and sample counts: the full profile aims at about 10 s on a machine where a first touch costs
// 11 us/page (pre-faulting is most of it); --quick at 1-2 s.
struct Sizes {
  uint64_t memcpy_bytes;
  int memcpy_reps;
  uint64_t touch_bytes;
  int touch_reps;
  uint64_t fault_bytes;  // region of the fault round trips; one sample per page
  size_t fault_samples;
  size_t unprotect_pages;  // a multiple of 512
  uint64_t first_write_bytes;
  uint64_t scan_bytes;
  uint64_t fork_bytes;
  uint64_t file_bytes;
  int reps;  // of the cheap primitives (medians)
};
constexpr Sizes kFull{256 * kMiB, 5, 32 * kMiB, 3, 32 * kMiB, 5000, 4096, 16 * kMiB, 256 * kMiB, 256 * kMiB, 32 * kMiB, 5};
constexpr Sizes kQuick{16 * kMiB, 3, 4 * kMiB, 3, 4 * kMiB, 500, 1024, 2 * kMiB, 16 * kMiB, 16 * kMiB, 4 * kMiB, 3};

// A measurement's own "not supported here" (a result, not an error).
struct Unsupported : std::runtime_error {
  using std::runtime_error::runtime_error;
};

double median(std::vector<double> v) {
  if (v.empty()) throw std::runtime_error("no samples");
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double us(uint64_t ns) { return double(ns) / 1000.0; }

// Anonymous memory, THP off, every page written (so later timings see no first-touch fault).
Mapping prefaulted(uint64_t bytes, const std::string& what) {
  Mapping m(bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, what);
  madvise(m.data(), m.size(), MADV_NOHUGEPAGE);
  std::memset(m.data(), 1, m.size());
  return m;
}

void require_uffd_wp(uint64_t extra, const char* what) {
  const UffdFeatures& f = uffd_features();
  if (!f.available) throw Unsupported(f.reason);
  if (!f.has(UFFD_FEATURE_PAGEFAULT_FLAG_WP)) throw Unsupported("userfaultfd lacks write-protect (PAGEFAULT_FLAG_WP)");
  if (extra && !f.has(extra)) throw Unsupported(std::string("userfaultfd lacks ") + what);
}

void memcpy_rate(json& j, const Sizes& s) {
  Mapping src = prefaulted(s.memcpy_bytes, "the memcpy source"), dst = prefaulted(s.memcpy_bytes, "the memcpy target");
  std::vector<double> rates;
  for (int r = 0; r < s.memcpy_reps; ++r) {
    const uint64_t t0 = now_ns();
    std::memcpy(dst.data(), src.data(), src.size());
    const uint64_t t1 = now_ns();
    asm volatile("" ::"r"(dst.data()) : "memory");  // the copy is used
    rates.push_back(double(src.size()) / double(std::max<uint64_t>(t1 - t0, 1)));  // bytes/ns = GB/s
  }
  j["memcpy_gb_s"] = median(rates);
}

void first_touch(json& j, const Sizes& s) {
  std::vector<double> per_page;
  for (int r = 0; r < s.touch_reps; ++r) {
    Mapping m(s.touch_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, "fresh memory");
    madvise(m.data(), m.size(), MADV_NOHUGEPAGE);
    const size_t pages = m.size() / kPageSize;
    const uint64_t t0 = now_ns();
    for (size_t i = 0; i < pages; ++i) reinterpret_cast<volatile uint8_t*>(m.data())[i * kPageSize] = 1;
    per_page.push_back(us(now_ns() - t0) / double(pages));
  }
  j["first_touch_us_per_page"] = median(per_page);
}

// A populated region for the fault round trips (the SIGBUS path wants a Region).
std::unique_ptr<Region> fault_region(const Sizes& s) {
  RegionOptions o;
  o.bytes = s.fault_bytes;
  o.populate = 1.0;
  o.thp = false;
  return std::make_unique<Region>(o);
}

void wp_fault_thread(json& j, const Sizes& s) {
  require_uffd_wp(0, "");
  auto region = fault_region(s);
  const size_t samples = std::min(s.fault_samples, region->pages() - 1);
  const size_t spare = region->pages() - 1;
  Uffd uffd(0, true);
  uffd.register_wp(region->base(), region->bytes());
  uffd.writeprotect(region->base(), region->bytes(), true);
  Histogram latency;
  uint64_t served = 0;
  std::string error;
  {
    WpFaultServer server(uffd, region->base(), region->bytes(), region->page(spare), FaultService::kPoll, true);
    for (size_t i = 0; i < samples && !server.failed(); ++i) {
      const uint64_t t0 = now_ns();
      store_word_fenced(region->page(i), t0);
      latency.record(now_ns() - t0);
    }
    server.finish();  // the write to the spare page ends it
    served = server.served();
    error = server.error();
  }
  uffd.writeprotect(region->base(), region->bytes(), false);
  if (!error.empty()) throw std::runtime_error(error);
  if (served < samples) throw Unsupported("the pages were not write-protected (" + std::to_string(served) + " faults for " +
                                          std::to_string(samples) + " writes)");
  j["wp_fault_thread_p50_us"] = us(latency.percentile(0.50));
  j["wp_fault_thread_p99_us"] = us(latency.percentile(0.99));
}

void wp_fault_sigbus(json& j, const Sizes& s) {
  const std::string why = uffd_wp::sigbus_unsupported_reason();
  if (!why.empty()) throw Unsupported(why);
  require_uffd_wp(UFFD_FEATURE_SIGBUS, "UFFD_FEATURE_SIGBUS");
  auto region = fault_region(s);
  const size_t samples = std::min(s.fault_samples, region->pages());
  Uffd uffd(UFFD_FEATURE_SIGBUS, true);
  uffd.register_wp(region->base(), region->bytes());
  uffd_wp::CopyAsideRing ring(64);
  uffd_wp::ClaimBitmap claims(region->pages()), released(region->pages());
  Histogram latency;
  uint64_t copies = 0;
  {
    uffd.writeprotect(region->base(), region->bytes(), true);
    uffd_wp::SigbusFaultPath path(uffd.fd(), *region, claims, released, ring);
    try {
      for (size_t i = 0; i < samples; ++i) {
        const uint64_t t0 = now_ns();
        store_word_fenced(region->page(i), t0);
        latency.record(now_ns() - t0);
        ring.drain([](uint64_t, const uint8_t*) {});  // as the saver would, outside the stopwatch
      }
      path.rethrow_if_failed();
    } catch (...) {
      uffd.writeprotect(region->base(), region->bytes(), false);  // the path's destructor expects it released
      throw;
    }
    copies = path.counters().copies;
    uffd.writeprotect(region->base(), region->bytes(), false);
  }
  if (copies < samples) throw Unsupported("the pages were not write-protected (" + std::to_string(copies) +
                                          " copies for " + std::to_string(samples) + " writes)");
  j["wp_fault_sigbus_p50_us"] = us(latency.percentile(0.50));
  j["wp_fault_sigbus_p99_us"] = us(latency.percentile(0.99));
}

void unprotect_cost(json& j, const Sizes& s) {
  require_uffd_wp(0, "");
  Mapping m = prefaulted(s.unprotect_pages * kPageSize, "the un-protect region");
  Uffd uffd(0, true);
  uffd.register_wp(m.data(), m.size());
  for (size_t chunk : {size_t(1), size_t(64), size_t(512)}) {
    std::vector<double> per_page;
    for (int r = 0; r < s.reps; ++r) {
      uffd.writeprotect(m.data(), m.size(), true);
      const uint64_t t0 = now_ns();
      for (size_t p = 0; p < s.unprotect_pages; p += chunk) uffd.writeprotect(m.data() + p * kPageSize, chunk * kPageSize, false);
      per_page.push_back(us(now_ns() - t0) / double(s.unprotect_pages));
    }
    j["unprotect_" + std::to_string(chunk) + "_us_per_page"] = median(per_page);
  }
  // The whole region in one call each way: what uffd-wp's freeze (arm) and a lazy release's end
  // cost per page, with one TLB flush per call.
  std::vector<double> arm, all;
  for (int r = 0; r < s.reps; ++r) {
    uint64_t t0 = now_ns();
    uffd.writeprotect(m.data(), m.size(), true);
    arm.push_back(us(now_ns() - t0) / double(s.unprotect_pages));
    t0 = now_ns();
    uffd.writeprotect(m.data(), m.size(), false);
    all.push_back(us(now_ns() - t0) / double(s.unprotect_pages));
  }
  j["wp_arm_us_per_page"] = median(arm);
  j["unprotect_all_us_per_page"] = median(all);
}

void mprotect_first_write(json& j, const Sizes& s) {
  Mapping m = prefaulted(s.first_write_bytes, "the mprotect region");
  const size_t pages = m.size() / kPageSize;
  std::vector<double> per_write;
  {
    WriteEnablingSegvHandler handler(m.data(), m.size());
    for (int r = 0; r < s.reps; ++r) {
      if (mprotect(m.data(), m.size(), PROT_READ) != 0) throw_errno("mprotect(PROT_READ)");
      const uint64_t before = WriteEnablingSegvHandler::handled();
      const uint64_t t0 = now_ns();
      for (size_t i = 0; i < pages; ++i) *reinterpret_cast<volatile uint64_t*>(m.data() + i * kPageSize) = t0 + i;
      const uint64_t t1 = now_ns();
      if (WriteEnablingSegvHandler::handled() - before != pages)
        throw std::runtime_error("the SIGSEGV handler did not see one fault per first write");
      per_write.push_back(us(t1 - t0) / double(pages));
    }
  }
  mprotect(m.data(), m.size(), PROT_READ | PROT_WRITE);
  j["mprotect_first_write_us"] = median(per_write);
}

void async_wp_first_write(json& j, const Sizes& s) {
  require_uffd_wp(UFFD_FEATURE_WP_ASYNC, "UFFD_FEATURE_WP_ASYNC");
  Mapping m = prefaulted(s.first_write_bytes, "the async-WP region");
  const size_t pages = m.size() / kPageSize;
  Uffd uffd(UFFD_FEATURE_WP_ASYNC, true);
  uffd.register_wp(m.data(), m.size());
  std::vector<double> per_write;
  for (int r = 0; r < s.reps; ++r) {
    uffd.writeprotect(m.data(), m.size(), true);
    const uint64_t t0 = now_ns();
    for (size_t i = 0; i < pages; ++i) *reinterpret_cast<volatile uint64_t*>(m.data() + i * kPageSize) = t0 + i;
    per_write.push_back(us(now_ns() - t0) / double(pages));
  }
  uffd.writeprotect(m.data(), m.size(), false);
  j["async_wp_first_write_us"] = median(per_write);
}

void pagemap_scan_cost(json& j, const Sizes& s) {
  require_uffd_wp(UFFD_FEATURE_WP_ASYNC, "UFFD_FEATURE_WP_ASYNC");
  std::string why;
  if (!pagemap_scan_available(&why)) throw Unsupported(why);
  Mapping m = prefaulted(s.scan_bytes, "the PAGEMAP_SCAN region");
  Uffd uffd(UFFD_FEATURE_WP_ASYNC, true);
  uffd.register_wp(m.data(), m.size());
  uffd.writeprotect(m.data(), m.size(), true);
  PagemapScanner scanner;
  std::vector<uint64_t> found;
  std::vector<double> ms_per_gib;
  for (int r = 0; r < s.reps; ++r) {
    found.clear();
    const uint64_t t0 = now_ns();
    scanner.collect_written(m.data(), m.data(), m.data() + m.size(), true, found);
    ms_per_gib.push_back(double(now_ns() - t0) * 1e-6 / (double(m.size()) / kGiB));
    if (!found.empty()) throw std::runtime_error("PAGEMAP_SCAN reported written pages in a region nobody wrote");
  }
  uffd.writeprotect(m.data(), m.size(), false);
  j["pagemap_scan_ms_per_gib"] = median(ms_per_gib);
}

void fork_cost(json& j, const Sizes& s) {
  Mapping m = prefaulted(s.fork_bytes, "the fork region");
  std::vector<double> ms_per_gib;
  for (int r = 0; r < s.reps; ++r) {
    const uint64_t t0 = now_ns();
    const pid_t pid = fork();
    if (pid == 0) _exit(0);
    const uint64_t t1 = now_ns();
    if (pid < 0) throw_errno("fork");
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    ms_per_gib.push_back(double(t1 - t0) * 1e-6 / (double(m.size()) / kGiB));
  }
  j["fork_ms_per_gib"] = median(ms_per_gib);
}

void fdatasync_write(json& j, const Sizes& s, const std::string& dir_opt) {
  const std::string dir = dir_opt.empty() ? std::filesystem::temp_directory_path().string() : dir_opt;
  Mapping block = prefaulted(kMiB, "the file-write block");
  std::vector<double> rates;
  for (int r = 0; r < s.reps; ++r) {
    std::string path = dir + "/snapbench-machine-XXXXXX";
    UniqueFd fd(mkstemp(path.data()));
    if (!fd) throw_errno("cannot create a file in " + dir);
    // Removed on every exit path, a failed write included.
    struct Unlink {
      std::string p;
      ~Unlink() { ::unlink(p.c_str()); }
    } unlink_guard{path};
    const uint64_t t0 = now_ns();
    for (uint64_t done = 0; done < s.file_bytes; done += block.size())
      if (const int err = write_all(fd.get(), block.data(), block.size())) {
        errno = err;
        throw_errno("write to " + path);
      }
    if (fdatasync(fd.get()) != 0) throw_errno("fdatasync of " + path);
    const uint64_t t1 = now_ns();
    rates.push_back(double(s.file_bytes) * 1e3 / double(std::max<uint64_t>(t1 - t0, 1)));  // bytes/ns * 1e3 = MB/s
  }
  j["fdatasync_write_mb_s"] = median(rates);
}

void presence(json& j, const char* key, bool present, const std::string& detail) {
  j[key] = present;
  j[std::string(key) + "_detail"] = detail;
}

void presences(json& j) {
  {
    const int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
    const int err = errno;
    if (fd >= 0) ::close(fd);
    presence(j, "dev_kvm", fd >= 0, fd >= 0 ? "opened /dev/kvm" : std::string("cannot open /dev/kvm: ") + std::strerror(err));
  }
  {
    qemu::QemuBinary bin;
    std::string why;
    const bool found = qemu::find_qemu(qemu::kDefaultQemu, bin, why);
    presence(j, "qemu", found, found ? bin.path + ": " + bin.version : why);
  }
  if (const TrackerEntry* e = tracker_registry().find("soft-dirty")) {
    const Support sd = e->make()->probe();
    presence(j, "soft_dirty", sd.supported, sd.supported ? "the soft-dirty tracker's probe passed" : sd.reason);
  } else {
    presence(j, "soft_dirty", false, "no soft-dirty tracker is registered");
  }
  const UffdFeatures& f = uffd_features();
  const std::string sigbus_why = uffd_wp::sigbus_unsupported_reason();
  presence(j, "uffd_sigbus", sigbus_why.empty(), sigbus_why.empty() ? "UFFD_FEATURE_SIGBUS offered" : sigbus_why);
  presence(j, "uffd_wp_async", f.has(UFFD_FEATURE_WP_ASYNC),
           !f.available ? f.reason : f.has(UFFD_FEATURE_WP_ASYNC) ? "UFFD_FEATURE_WP_ASYNC offered" : "userfaultfd lacks UFFD_FEATURE_WP_ASYNC (Linux 6.7+)");
  std::string pm_why;
  const bool pm = pagemap_scan_available(&pm_why);
  presence(j, "pagemap_scan", pm, pm ? "PAGEMAP_SCAN answered" : pm_why);
}

std::string boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  if (!(in >> id)) return "unknown";
  return id;
}

}  // namespace

json measure_machine_profile(const ProfileOptions& opts) {
  const uint64_t start = now_ns();
  const Sizes& s = opts.quick ? kQuick : kFull;
  const MachineFacts& m = this_machine();
  json j;
  j["schema"] = kMachineProfileSchema;
  j["host"] = m.host;
  j["kernel"] = m.kernel;
  j["cpu_model"] = m.cpu_model;
  j["cores"] = sysconf(_SC_NPROCESSORS_ONLN);
  j["thp_enabled"] = thp_enabled_mode();
  j["boot_id"] = boot_id();
  j["quick"] = opts.quick;
  j["measured_utc"] = utc_timestamp();
  struct Primitive {
    std::vector<std::string> keys;
    std::function<void(json&)> run;
  };
  const std::vector<Primitive> primitives = {
      {{"memcpy_gb_s"}, [&](json& o) { memcpy_rate(o, s); }},
      {{"first_touch_us_per_page"}, [&](json& o) { first_touch(o, s); }},
      {{"wp_fault_thread_p50_us", "wp_fault_thread_p99_us"}, [&](json& o) { wp_fault_thread(o, s); }},
      {{"wp_fault_sigbus_p50_us", "wp_fault_sigbus_p99_us"}, [&](json& o) { wp_fault_sigbus(o, s); }},
      {{"unprotect_1_us_per_page", "unprotect_64_us_per_page", "unprotect_512_us_per_page", "wp_arm_us_per_page",
        "unprotect_all_us_per_page"},
       [&](json& o) { unprotect_cost(o, s); }},
      {{"mprotect_first_write_us"}, [&](json& o) { mprotect_first_write(o, s); }},
      {{"async_wp_first_write_us"}, [&](json& o) { async_wp_first_write(o, s); }},
      {{"pagemap_scan_ms_per_gib"}, [&](json& o) { pagemap_scan_cost(o, s); }},
      {{"fork_ms_per_gib"}, [&](json& o) { fork_cost(o, s); }},
      {{"fdatasync_write_mb_s"}, [&](json& o) { fdatasync_write(o, s, opts.dir); }},
  };
  bool complete = true;
  for (const auto& p : primitives) {
    std::string why;
    if (complete && opts.stop && opts.stop()) complete = false;
    if (!complete) {
      why = "not measured: interrupted";
    } else {
      try {
        json got;
        p.run(got);
        for (const auto& k : p.keys) {
          // A number that is not finite and positive would be a fake: say so instead.
          if (!got.contains(k) || !got[k].is_number() || !std::isfinite(got[k].get<double>()) || got[k].get<double>() <= 0)
            throw std::runtime_error("measured no positive number for " + k + " (the clock's resolution?)");
          j[k] = got[k];
        }
        continue;
      } catch (const Unsupported& e) {
        why = std::string("unsupported: ") + e.what();
      } catch (const std::exception& e) {
        why = std::string("failed: ") + e.what();
      }
    }
    for (const auto& k : p.keys) j[k] = why;
  }
  presences(j);
  j["complete"] = complete;
  j["duration_s"] = ns_to_s(now_ns() - start);
  return j;
}

}  // namespace snap
