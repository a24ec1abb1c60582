// The restore phase: index the image (timed), make the flat file where asked (not timed), drop or
// keep the page cache, restore into a fresh region and run the access workload on it, then bring the
// rest in, measure the same workload on resident memory, and check every page against the image.
#include "harness/restore_run.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "core/clock.h"
#include "core/error.h"
#include "core/fd_io.h"
#include "core/histogram.h"
#include "core/image.h"
#include "core/scoped.h"
#include "core/units.h"
#include "restore/restore.h"
#include "workloads/pattern_math.h"
#include "workloads/workload.h"

namespace snap {

double parse_restore_access(const std::string& text, const std::string& where) {
  if (text == "read") return 1.0;
  if (text == "write") return 0.0;
  if (text.rfind("mix:", 0) == 0) {
    char* end = nullptr;
    const std::string f = text.substr(4);
    const double v = std::strtod(f.c_str(), &end);
    if (!f.empty() && *end == '\0' && std::isfinite(v) && v >= 0 && v <= 1) return v;
  }
  throw UsageError(where + ": expected read, write or mix:F (F, the share of reads, from 0 to 1), got '" + text + "'");
}

namespace {

constexpr uint64_t kBucketNs = 10'000'000;  // throughput is counted in 10 ms buckets
constexpr int kReadySmoothing = 5;          // ready: a 50 ms mean back to 90 % of the resident rate
constexpr double kReadyShare = 0.9;

// One bit per page, shared by the access threads.
class PageBits {
 public:
  explicit PageBits(uint64_t pages) : words_((pages + 63) / 64) {}
  bool test(uint64_t p) const { return (words_[p / 64].load(std::memory_order_acquire) >> (p % 64)) & 1; }
  bool test_and_set(uint64_t p) {
    const uint64_t bit = uint64_t(1) << (p % 64);
    return words_[p / 64].fetch_or(bit, std::memory_order_acq_rel) & bit;
  }

 private:
  std::vector<std::atomic<uint64_t>> words_;
};

// What the access threads share: the region, the image to check reads against, the mix.
struct AccessShared {
  uint8_t* base = nullptr;
  uint64_t pages = 0;
  const uint8_t* image = nullptr;  // the flattened image (null: no checks, the recording restore)
  double read_share = 1.0;
  PageBits* written = nullptr;     // set before a page's first write (a check of a read then yields)
  PageBits* checked = nullptr;     // pages whose first read was compared with the image
  std::atomic<bool> go{false}, stop{false};
  uint64_t start_ns = 0, deadline_ns = 0;
  std::atomic<uint64_t> read_mismatches{0};
  std::atomic<int64_t> first_bad_page{-1};
};

struct AccessThreadStats {
  Histogram latency;
  std::vector<uint64_t> buckets;  // accesses completed per 10 ms since start_ns
  uint64_t accesses = 0;
};

void access_loop(AccessShared& sh, AccessThreadStats& st, AccessPattern& pattern, uint64_t seed) {
  sh.go.wait(false);
  uint64_t rng = splitmix64(seed);
  uint64_t seq = 0;
  const uint64_t read_threshold = sh.read_share >= 1.0 ? UINT64_MAX : uint64_t(sh.read_share * 18446744073709551616.0);
  while (!sh.stop.load(std::memory_order_relaxed)) {
    const uint64_t page = pattern.next();
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    const bool is_read = sh.read_share >= 1.0 || rng < read_threshold;
    uint8_t* p = sh.base + page * kPageSize + stamp_offset(seq);
    const uint64_t t0 = now_ns();
    if (is_read) {
      (void)*reinterpret_cast<volatile uint64_t*>(p);
    } else {
      if (sh.written) sh.written->test_and_set(page);  // before the write: see the read check
      *reinterpret_cast<volatile uint64_t*>(p) = seq;
      *reinterpret_cast<volatile uint64_t*>(p + 8) = page;
    }
    const uint64_t t1 = now_ns();
    ++seq;
    st.latency.record(t1 - t0);
    ++st.accesses;
    const uint64_t b = (t1 - sh.start_ns) / kBucketNs;
    if (b < st.buckets.size()) ++st.buckets[b];
    // A page read before anything wrote it must be the image's: compared once, off the clock.
    if (is_read && sh.image && !sh.written->test(page) && !sh.checked->test_and_set(page) &&
        std::memcmp(sh.base + page * kPageSize, sh.image + page * kPageSize, kPageSize) != 0) {
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (!sh.written->test(page)) {  // not a writer that raced the compare
        sh.read_mismatches.fetch_add(1);
        int64_t none = -1;
        sh.first_bad_page.compare_exchange_strong(none, int64_t(page));
      }
    }
    if (t1 >= sh.deadline_ns) break;
  }
}

// The access threads of one window: built (patterns, buckets backed) before it is timed, released
// together by go(), always joined (the destructor stops them).
class AccessRun {
 public:
  AccessRun(AccessShared& sh, const RunSpec& spec, uint64_t seed, double window_s) : sh_(sh) {
    const int n = std::max(1, spec.writers);
    stats_.resize(size_t(n));
    for (int w = 0; w < n; ++w) {
      stats_[size_t(w)].buckets.assign(size_t(window_s * 1e9 / double(kBucketNs)) + 2, 0);
      patterns_.push_back(make_pattern(spec.pattern, sh.pages, seed, w, n));
    }
    for (int w = 0; w < n; ++w)
      threads_.emplace_back([this, w, seed] { access_loop(sh_, stats_[size_t(w)], *patterns_[size_t(w)], seed + uint64_t(w) * 7919); });
  }
  ~AccessRun() {
    sh_.stop.store(true);
    go(now_ns(), 0);
    join();
  }
  void go(uint64_t start_ns, uint64_t deadline_ns) {
    if (sh_.go.load()) return;
    sh_.start_ns = start_ns;
    sh_.deadline_ns = deadline_ns;
    sh_.go.store(true);
    sh_.go.notify_all();
  }
  void join() {
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  Histogram latency() const {
    Histogram h;
    for (const auto& s : stats_) h.merge(s.latency);
    return h;
  }
  uint64_t accesses() const {
    uint64_t n = 0;
    for (const auto& s : stats_) n += s.accesses;
    return n;
  }
  std::vector<uint64_t> buckets() const {
    std::vector<uint64_t> b(stats_.empty() ? 0 : stats_[0].buckets.size(), 0);
    for (const auto& s : stats_)
      for (size_t i = 0; i < b.size(); ++i) b[i] += s.buckets[i];
    return b;
  }

 private:
  AccessShared& sh_;
  std::vector<AccessThreadStats> stats_;
  std::vector<std::unique_ptr<AccessPattern>> patterns_;
  std::vector<std::thread> threads_;
};

// Runs the window: releases the threads, and until they end watches the restorer (a handler that
// died: the threads are stopped and the restorer torn down, which wakes any thread in a fault).
std::string run_window(AccessRun& run, AccessShared& sh, Restorer* restorer, uint64_t start_ns, double window_s) {
  run.go(start_ns, start_ns + uint64_t(window_s * 1e9));
  std::string failure;
  const uint64_t deadline = start_ns + uint64_t(window_s * 1e9);
  while (now_ns() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (restorer && !(failure = restorer->failure()).empty()) break;
  }
  sh.stop.store(true);
  if (!failure.empty()) restorer->stop();
  run.join();
  if (failure.empty() && restorer) failure = restorer->failure();
  return failure;
}

UniqueFd open_read(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("open of the image " + path);
  return fd;
}

// Drops the file's pages from the page cache (the `cold` case), and says what share stayed.
double drop_cache(int fd) {
  fdatasync(fd);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  off_t size = lseek(fd, 0, SEEK_END);
  if (size <= 0) return 0;
  void* m = mmap(nullptr, size_t(size), PROT_READ, MAP_SHARED, fd, 0);
  if (m == MAP_FAILED) return -1;
  std::vector<unsigned char> vec((size_t(size) + kPageSize - 1) / kPageSize);
  uint64_t cached = 0;
  if (mincore(m, size_t(size), vec.data()) == 0)
    for (unsigned char c : vec) cached += c & 1;
  munmap(m, size_t(size));
  return double(cached) / double(vec.size());
}

bool on_tmpfs(int fd) {
  struct statfs s {};
  return fstatfs(fd, &s) == 0 && s.f_type == 0x01021994;  // TMPFS_MAGIC
}

// The flat memory file for mmap: the flattened region, zero pages left as holes.
void write_flat_file(const std::string& path, const FlatImage& flat) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) throw_errno("creating the flat memory file " + path);
  if (ftruncate(fd.get(), off_t(flat.memory.size())) != 0) throw_errno("ftruncate of the flat memory file");
  for (size_t i = 0; i < flat.memory.size() / kPageSize; ++i) {
    const uint8_t* p = flat.memory.data() + i * kPageSize;
    if (page_is_zero(p)) continue;
    if (::pwrite(fd.get(), p, kPageSize, off_t(i * kPageSize)) != ssize_t(kPageSize)) throw_errno("writing the flat memory file");
  }
}

Mapping fresh_region(uint64_t pages) {
  Mapping m(pages * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, "the restored region");
  madvise(m.data(), m.size(), MADV_NOHUGEPAGE);
  return m;
}

double us(uint64_t ns) { return double(ns) / 1000.0; }

}  // namespace

void run_restore(const RunSpec& spec, RunResult& res, const std::string& image_path) {
  const RestoreEntry& entry = restore_registry().get(spec.restore);
  std::unique_ptr<Restorer> probe_only = entry.make();
  if (Support s = probe_only->probe(); !s.supported) {
    res.status = RunStatus::kUnsupported;
    res.reason = "restore " + entry.name + ": " + s.reason;
    return;
  }
  const std::string flat_path = image_path + ".flat";
  bool made_flat = false;
  try {
    const double read_share = parse_restore_access(spec.restore_access, "--restore-access");
    const bool cold = spec.restore_cache == "cold";
    UniqueFd image_fd = open_read(image_path);
    uint64_t t = now_ns();
    const ImageIndex index = build_image_index(image_fd.get());
    res.restore_index_s = ns_to_s(now_ns() - t);
    const uint64_t pages = index.header.region_pages;
    if (pages == 0) throw ImageError("the image's region has no pages");
    // The reference the restored pages are checked against (not timed).
    const FlatImage flat = flatten_image(read_image_file(image_path));
    UniqueFd flat_fd;
    if (entry.needs_flat_file) {
      write_flat_file(flat_path, flat);
      made_flat = true;
      flat_fd = open_read(flat_path);
      res.restore_notes += "flat_file_made_untimed=1";
    }
    if (cold && on_tmpfs(image_fd.get())) res.restore_notes += std::string(res.restore_notes.empty() ? "" : ";") + "page_cache=tmpfs(cold_impossible)";
    const ParamValues params = [&] {
      auto it = spec.params.find(entry.name);
      return ParamValues(entry.name, entry.params, it == spec.params.end() ? std::map<std::string, std::string>{} : it->second);
    }();
    const double window_s = spec.restore_window_s;
    auto note = [&](const std::string& k, const std::string& v) {
      res.restore_notes += (res.restore_notes.empty() ? "" : ";") + k + "=" + v;
    };
    auto set_cache = [&] {
      if (!cold) return;
      char b[32];
      std::snprintf(b, sizeof b, "%.3f", drop_cache(image_fd.get()));
      note("cold_cached_share", b);
      if (flat_fd) drop_cache(flat_fd.get());
    };

    // REAP's first invocation: a restore whose faults, in the first record_s, are the working set.
    std::vector<uint64_t> working_set;
    if (entry.records_working_set) {
      Mapping region = fresh_region(pages);
      RestoreMetrics m;
      RestoreContext rc{region.data(), pages, image_fd.get(), index, flat_fd.get(), m, params, nullptr, true};
      auto recorder = entry.make();
      set_cache();
      AccessShared sh;
      sh.base = region.data();
      sh.pages = pages;
      sh.read_share = read_share;
      PageBits written(pages);
      sh.written = &written;
      const double record_s = params.get_double("record_s");
      AccessRun run(sh, spec, spec.seed * 0x2545f4914f6cdd1dull + 17, record_s);
      recorder->start(rc);
      const std::string f = run_window(run, sh, recorder.get(), now_ns(), record_s);
      recorder->stop();
      if (!f.empty()) throw std::runtime_error(f);
      working_set = recorder->recorded();
      note("working_set_pages", std::to_string(working_set.size()));
    }

    set_cache();
    Mapping region = fresh_region(pages);
    RestoreMetrics metrics;
    RestoreContext ctx{region.data(), pages, image_fd.get(), index, flat_fd.get(), metrics, params,
                       entry.records_working_set ? &working_set : nullptr, false};
    std::unique_ptr<Restorer> restorer = entry.make();
    AccessShared sh;
    sh.base = region.data();
    sh.pages = pages;
    // A read-only workload writes nothing, so every page is compared at the end; with writes, a
    // page's first read is compared in the access loop (before a write could change it), in the
    // window and, with the checked set cleared, in the resident baseline alike.
    sh.image = read_share < 1.0 ? flat.memory.data() : nullptr;
    sh.read_share = read_share;
    PageBits written(pages), checked(pages);
    sh.written = &written;
    sh.checked = &checked;
    const uint64_t seed = spec.seed * 0x9e3779b97f4a7c15ull + uint64_t(spec.rep);
    AccessRun run(sh, spec, seed, window_s);

    const uint64_t t0 = now_ns();
    std::string failure;
    try {
      restorer->start(ctx);
    } catch (const std::exception& e) {
      failure = std::string("restore ") + entry.name + ": " + e.what();
    }
    const uint64_t t_resume = now_ns();
    res.resume_s = ns_to_s(t_resume - t0);
    if (failure.empty()) failure = run_window(run, sh, restorer.get(), t_resume, window_s);
    else sh.stop.store(true), run.go(now_ns(), 0), run.join();
    const uint64_t resident_at = metrics.resident_at_ns.load();
    res.resident_s = resident_at ? ns_to_s(std::max(resident_at, t0) - t0) : -1;
    const Histogram lat = run.latency();
    res.access_p50_us = us(lat.percentile(0.50));
    res.access_p99_us = us(lat.percentile(0.99));
    res.access_p999_us = us(lat.percentile(0.999));
    res.access_max_us = us(lat.max());
    res.restore_accesses = run.accesses();
    if (failure.empty()) {
      try {
        restorer->measure(ctx);
        res.restore_faults = metrics.faults.load();
        res.restore_read_bytes = metrics.bytes_read.load();
        restorer->complete(ctx);  // the rest of the pages, not timed
      } catch (const std::exception& e) {
        failure = std::string("restore ") + entry.name + ": " + e.what();
      }
    } else {
      res.restore_faults = metrics.faults.load();
      res.restore_read_bytes = metrics.bytes_read.load();
    }
    res.restore_extra_bytes = metrics.extra_bytes;
    if (!metrics.notes.empty()) note("restore", metrics.notes);
    if (!failure.empty()) {
      restorer->stop();
      res.status = RunStatus::kFailed;
      res.reason = failure;
      res.restore_verified = "off";
      return;
    }

    // The same workload on resident memory: the rate ready_s is measured against.
    {
      const double base_s = std::min(window_s, 0.5);
      AccessShared bsh;
      bsh.base = region.data();
      bsh.pages = pages;
      bsh.image = sh.image;
      bsh.read_share = read_share;
      bsh.written = &written;
      PageBits baseline_checked(pages);
      bsh.checked = &baseline_checked;
      AccessRun brun(bsh, spec, seed ^ 0xb5ad4eceda1ce2a9ull, base_s);
      const uint64_t tb = now_ns();
      run_window(brun, bsh, nullptr, tb, base_s);
      const double secs = ns_to_s(now_ns() - tb);
      res.resident_ops_s = secs > 0 ? double(brun.accesses()) / secs : 0;
      sh.read_mismatches += bsh.read_mismatches.load();
      if (sh.first_bad_page.load() < 0) sh.first_bad_page.store(bsh.first_bad_page.load());
    }
    res.restore_ops_s = window_s > 0 ? double(res.restore_accesses) / window_s : 0;
    {
      const std::vector<uint64_t> b = run.buckets();
      const double target = kReadyShare * res.resident_ops_s * (double(kBucketNs) * 1e-9);
      const size_t whole = size_t(window_s * 1e9 / double(kBucketNs));  // buckets inside the window
      res.ready_s = -1;
      for (size_t i = 0; i + kReadySmoothing <= std::min(whole, b.size()); ++i) {
        double sum = 0;
        for (int k = 0; k < kReadySmoothing; ++k) sum += double(b[i + size_t(k)]);
        if (sum / kReadySmoothing >= target) {
          res.ready_s = res.resume_s + double(i + 1) * double(kBucketNs) * 1e-9;
          break;
        }
      }
    }
    restorer->stop();

    // Every page never written equals the image; reads before writes were checked as they happened.
    uint64_t mismatched = sh.read_mismatches.load();
    int64_t first_bad = sh.first_bad_page.load();
    for (uint64_t p = 0; p < pages; ++p) {
      if (written.test(p)) continue;
      if (std::memcmp(region.data() + p * kPageSize, flat.memory.data() + p * kPageSize, kPageSize) != 0) {
        ++mismatched;
        if (first_bad < 0) first_bad = int64_t(p);
      }
    }
    res.restore_verified = mismatched ? "fail" : "pass";
    if (mismatched) {
      res.status = RunStatus::kFailed;
      res.reason = "restore verify failed: " + std::to_string(mismatched) + " pages differ from the image (first: page " +
                   std::to_string(first_bad) + ")";
    }
  } catch (const UsageError&) {
    throw;
  } catch (const std::exception& e) {
    res.status = RunStatus::kFailed;
    res.reason = std::string("restore ") + spec.restore + ": " + e.what();
    res.restore_verified = "off";
  }
  if (made_flat) ::unlink(flat_path.c_str());
}

}  // namespace snap
