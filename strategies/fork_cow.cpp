// `fork-cow`: pause, fork(), resume; the child writes its frozen copy-on-write view (Redis BGSAVE).
//
// Protocol between the two processes (everything is set up before the writers are paused):
//   parent                                   child
//   pause, consistency_point, fork  ───────► (one thread: the forking one; memory frozen at fork)
//   resume                                   save every page through the pre-built ImageWriter,
//   poll(ready), sample COW memory           finish the writer (and so the sink's child side),
//                                            put the stats in the shared report page,
//                 ◄─────────────────────────  write 1 byte to `ready`, block reading `release`
//   final COW sample (the peak, see below)
//   close(release) ────────────────────────► read() returns EOF → _exit(0)
//   waitpid, then sink.finish() in the parent (closes its descriptors; exec: reaps the command)
// A child that fails writes its message into the report page and _exit(1)s without waiting; one that
// crashes shows up as EOF on `ready` plus a signal in waitpid's status. The parent kills and reaps
// the child on every path where it would otherwise leave it behind.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>

#include "core/clock.h"
#include "core/error.h"
#include "core/pagemap.h"
#include "core/run_stop.h"
#include "core/units.h"
#include "core/scoped.h"
#include "strategies/strategy.h"

namespace snap {

namespace {

// What the child tells the parent; lives in a MAP_SHARED page mapped before fork, so the child
// fills it with plain stores (no allocation, no lock) and the parent reads it after the handshake.
struct ChildReport {
  std::atomic<int> outcome;  // kRunning, then kSaved or kFailed
  ImageStats stats;
  uint64_t save_ns;          // the child's time from its first instruction to the finished sink
  char message[3072];        // NUL-terminated error text when kFailed
};
constexpr int kRunning = 0, kSaved = 1, kFailed = 2;
static_assert(sizeof(ChildReport) <= kPageSize, "the report must fit its shared page");
static_assert(std::atomic<int>::is_always_lock_free, "the outcome is shared across processes");

struct Pipe {
  UniqueFd read_end, write_end;
};

Pipe make_pipe(const char* what) {
  int fds[2];
  // O_CLOEXEC: a command started meanwhile (an exec sink) must not hold our ends open.
  if (pipe2(fds, O_CLOEXEC) != 0) throw_errno(std::string("fork-cow: pipe for ") + what);
  Pipe p;
  p.read_end = UniqueFd(fds[0]);
  p.write_end = UniqueFd(fds[1]);
  return p;
}

// The forked child in the parent: reaps it exactly once; killing it first if the parent leaves
// early (an exception, a timeout), so no path leaves a zombie or an orphan still writing the sink.
class ChildProcess {
 public:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  ~ChildProcess() {
    if (reaped_) return;
    kill(pid_, SIGKILL);
    int status;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  pid_t pid() const { return pid_; }
  int wait() {
    int status = 0;
    pid_t r;
    while ((r = waitpid(pid_, &status, 0)) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    if (r < 0) throw_errno("fork-cow: waitpid for the child " + std::to_string(pid_));
    return status;
  }

 private:
  pid_t pid_;
  bool reaped_ = false;
};

// Memory that exists only because of the fork, read from the child's /proc/PID/smaps.
//
// Which measure is honest: after fork every anonymous page is mapped by both processes. When either
// side writes one, the writer gets a new copy and the OTHER side's copy becomes exclusively its own.
// So the pages mapped by the child alone are exactly the duplicated pages (those the parent's writers
// dirtied, plus the few the child itself wrote: its stack, the image writer's buffer). That is the
// child's Private_Dirty + Private_Clean, summed over its non-shared mappings: shared ones (`sh` in
// VmFlags: the memory sink's stream, the report page) hold no duplicates — a shmem page that only
// the child touched would otherwise count as "private". The parent's side can not be read this way:
// its private memory includes everything it allocated on its own. This kernel has CONFIG_PAGE_MAPCOUNT
// (precise per-page mapcounts), so smaps classifies each 4 KiB of a THP separately; with
// CONFIG_NO_PAGE_MAPCOUNT a partly shared THP would read as all shared and this would under-count.
// The page tables fork copied are not in smaps; they are reported apart (VmPTE in /proc/PID/status).
struct CowSample {
  uint64_t private_bytes = 0;         // all duplicated memory of the child (extra_rss)
  uint64_t region_private_bytes = 0;  // the part inside the snapshot region
};

std::optional<CowSample> sample_child_cow(pid_t pid, uintptr_t region_begin, uintptr_t region_end) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
  if (!in) return std::nullopt;
  CowSample sample;
  uint64_t vma_private = 0;
  bool vma_in_region = false;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (std::isxdigit(static_cast<unsigned char>(line[0])) && line.find('-') < line.find(' ')) {
      // "start-end perms offset dev inode [name]": a new mapping starts.
      const uintptr_t begin = std::stoull(line.substr(0, line.find('-')), nullptr, 16);
      const uintptr_t end = std::stoull(line.substr(line.find('-') + 1), nullptr, 16);
      vma_private = 0;
      vma_in_region = begin < region_end && end > region_begin;
    } else if (line.rfind("Private_Clean:", 0) == 0 || line.rfind("Private_Dirty:", 0) == 0) {
      vma_private += std::stoull(line.substr(line.find(':') + 1)) * 1024;  // "   123 kB"
    } else if (line.rfind("VmFlags:", 0) == 0) {
      // The last line of a mapping's block.
      std::istringstream flags(line.substr(8));
      bool shared = false;
      for (std::string f; flags >> f;) shared |= f == "sh";
      if (!shared) {
        sample.private_bytes += vma_private;
        if (vma_in_region) sample.region_private_bytes += vma_private;
      }
    }
  }
  return sample;
}

// The child's page tables (VmPTE), which fork() copied: a cost apart from the duplicated pages.
uint64_t child_page_table_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmPTE:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

std::string describe_wait_status(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = strsignal(sig);
    return "child killed by signal " + std::to_string(sig) + (name ? std::string(" (") + name + ")" : "");
  }
  if (WIFEXITED(status)) return "child exited with status " + std::to_string(WEXITSTATUS(status));
  return "child ended with wait status " + std::to_string(status);
}

// Copies `text` into the report's fixed buffer: no allocation, always NUL-terminated.
void put_message(ChildReport* report, const char* text) {
  const size_t n = std::min(std::strlen(text), sizeof report->message - 1);
  std::memcpy(report->message, text, n);
  report->message[n] = '\0';
}

// Everything the child uses, built by the parent before fork.
struct ChildPlan {
  const Region* region;
  ImageWriter* writer;
  ChildReport* report;
  size_t chunk_pages;
  int ready_fd;    // child's end: one byte when saved
  int release_fd;  // child's end: EOF when the parent has taken its final sample
  pid_t parent;
  bool private_region;  // anonymous, not a memfd another process may write: holes are zero
};

// Saves every page of a private anonymous region without reading the pages that have no memory
// behind them (neither present nor swapped in the child's page tables, which fork copied: such a page
// was never touched, so it is zero). Reading one would cost memory where a read fault allocates a
// page instead of mapping the shared zero page (the AMD machine's kernel runs with
// pvm_no_zero_page=1): the child's reads of a 70 %-empty 32 MiB region took 23 MB of its own. A hole is
// saved from a zero page here instead, which the writer turns into a zero record as it would have.
void save_present_pages(const Region& region, ImageWriter& writer, size_t chunk_pages, int pagemap_fd) {
  alignas(64) static const uint8_t zero_page[kPageSize] = {};
  constexpr size_t kBlock = 512;  // pagemap entries read at once: 4 KiB on the stack
  uint64_t entries[kBlock];
  const size_t pages = region.pages();
  for (size_t block = 0; block < pages; block += kBlock) {
    const size_t n = std::min(kBlock, pages - block);
    if (!read_pagemap(pagemap_fd, region.page(block), n, entries))
      for (size_t i = 0; i < n; ++i) entries[i] = kPagemapPresent;  // unreadable: read every page
    for (size_t i = 0; i < n;) {
      if (!pagemap_has_memory(entries[i])) {
        writer.save_page(block + i, zero_page);
        ++i;
        continue;
      }
      size_t j = i + 1;
      while (j < n && j - i < chunk_pages && pagemap_has_memory(entries[j])) ++j;
      writer.save_pages(block + i, region.page(block + i), j - i);
      i = j;
    }
  }
}

// The child's whole life. It never returns and never unwinds into the harness: only _exit, so no
// atexit handler, no destructor of a parent object and no stdio flush runs here. The child has one
// thread; glibc's fork() resets the malloc arenas' locks in the child, so the exception machinery
// and the error strings below are safe even if a writer thread had been allocating at fork time
// (the writers do not allocate in their loop anyway). The ImageWriter and its 1 MiB buffer were
// allocated by the parent; the sinks write through descriptors and mappings inherited from it.
[[noreturn]] void run_child(const ChildPlan& plan) {
  const uint64_t t0 = now_ns();
  // Die with the parent rather than keep writing an image nobody will read.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != plan.parent) _exit(3);
  prctl(PR_SET_NAME, "snap-fork-cow");
  // A broken exec-sink pipe must be a SinkError with a message, not a silent death.
  signal(SIGPIPE, SIG_IGN);
  ChildReport* report = plan.report;
  try {
    const Region& region = *plan.region;
    const size_t pages = region.pages();
    // Opened here: a pagemap descriptor reads the page tables of the process that opened it.
    const int pagemap_fd = plan.private_region ? ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC) : -1;
    if (pagemap_fd >= 0)
      save_present_pages(region, *plan.writer, plan.chunk_pages, pagemap_fd);
    else
      for (size_t i = 0; i < pages; i += plan.chunk_pages)
        plan.writer->save_pages(i, region.page(i), std::min(plan.chunk_pages, pages - i));
    // Writes the trailer and runs the child's side of sink.finish() (fdatasync for a file sink,
    // closing the child's copy of an exec sink's pipe); the parent finishes its own copy later.
    plan.writer->finish();
    report->stats = plan.writer->stats();
    report->save_ns = now_ns() - t0;
    report->outcome.store(kSaved, std::memory_order_release);
  } catch (const std::exception& e) {
    put_message(report, e.what());
    report->outcome.store(kFailed, std::memory_order_release);
    _exit(1);
  } catch (...) {
    put_message(report, "unknown exception");
    report->outcome.store(kFailed, std::memory_order_release);
    _exit(1);
  }
  // Handshake: stay alive (memory intact) until the parent has measured the duplicated pages.
  const char byte = 1;
  while (::write(plan.ready_fd, &byte, 1) < 0 && errno == EINTR) {
  }
  char sink_byte;
  while (::read(plan.release_fd, &sink_byte, 1) < 0 && errno == EINTR) {
  }
  _exit(0);
}

class ForkCowStrategy final : public Strategy {
 public:
  using Strategy::Strategy;
  Support probe() const override { return Support::yes(); }

  void snapshot(SnapshotContext& ctx) override {
    Region& region = ctx.region;
    const size_t chunk = size_t(ctx.params.get_int("chunk_pages"));
    const int sample_ms = int(ctx.params.get_int("sample_ms"));
    const double timeout_s = ctx.params.get_double("timeout_s");

    // All the child needs exists before the pause, so the pause holds only fork() itself.
    Mapping report_page(kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, "fork-cow: the child's report page");
    ChildReport* report = new (report_page.data()) ChildReport{};
    ImageWriter writer(ctx.sink, image_header(region.pages()));
    Pipe ready = make_pipe("the child's ready signal");
    Pipe release = make_pipe("the child's release");
    const pid_t parent = getpid();

    PauseScope paused(ctx.control);  // resumed right after fork(), or on an exception before it
    ctx.control.consistency_point();
    const uint64_t fork_start = now_ns();
    const pid_t pid = fork();
    const uint64_t fork_end = now_ns();
    if (pid == 0) {
      ::close(ready.read_end.get());
      ::close(release.write_end.get());
      run_child({&region, &writer, report, chunk, ready.write_end.get(), release.read_end.get(), parent, region.fd() < 0});
    }
    paused.resume();
    if (pid < 0) throw_errno("fork-cow: fork");
    ChildProcess child(pid);
    ctx.metrics.freeze_s = ns_to_s(fork_end - fork_start);
    // Our copies of the child's ends: closing them lets EOF tell us the child is gone.
    ready.write_end.reset();
    release.read_end.reset();

    const uintptr_t region_begin = reinterpret_cast<uintptr_t>(region.base());
    const uintptr_t region_end = region_begin + region.bytes();
    CowSample peak;
    uint64_t samples = 0;
    auto take_sample = [&] {
      if (auto s = sample_child_cow(pid, region_begin, region_end)) {
        peak.private_bytes = std::max(peak.private_bytes, s->private_bytes);
        peak.region_private_bytes = std::max(peak.region_private_bytes, s->region_private_bytes);
        ++samples;
      }
    };

    const bool saved = wait_for_child(ready.read_end.get(), sample_ms, timeout_s, fork_end, take_sample);
    uint64_t pte_bytes = 0;
    const uint64_t measure_start = now_ns();
    if (saved) {
      // Duplication only grows while the child lives (the parent keeps writing, nothing gets
      // un-shared back), so this sample, with the child saved but still alive, is the peak.
      take_sample();
      pte_bytes = child_page_table_bytes(pid);
    }
    // The child's exit tears down its copy of the page tables; waitpid waits for that too.
    const uint64_t reap_start = now_ns();
    release.write_end.reset();
    const int status = child.wait();
    const uint64_t reap_end = now_ns();

    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      if (report->outcome.load(std::memory_order_acquire) == kFailed)
        throw std::runtime_error(std::string("image writer in child failed: ") + report->message);
      throw std::runtime_error("fork-cow: " + describe_wait_status(status));
    }
    if (!saved || report->outcome.load(std::memory_order_acquire) != kSaved)
      throw std::runtime_error("fork-cow: child exited 0 without reporting a saved image");

    // The parent's copy of the sink has not been finished: close its descriptors, and for an exec
    // sink wait for the command (it is our child, not the forked one's) and check its exit status.
    ctx.sink.finish();

    ctx.metrics.image = report->stats;
    ctx.metrics.passes = 1;
    ctx.metrics.extra_rss_bytes = peak.private_bytes;
    ctx.metrics.note("cow_region_bytes", std::to_string(peak.region_private_bytes));
    ctx.metrics.note("child_pte_bytes", std::to_string(pte_bytes));
    ctx.metrics.note("child_save_s", std::to_string(ns_to_s(report->save_ns)));
    ctx.metrics.note("cow_samples", std::to_string(samples));
    // Parts of completion_s that are not saving: the final measurement and the child's teardown.
    ctx.metrics.note("cow_measure_s", std::to_string(ns_to_s(reap_start - measure_start)));
    ctx.metrics.note("reap_s", std::to_string(ns_to_s(reap_end - reap_start)));
  }

 private:
  // Waits for the child's ready byte (true) or its end without one (false: it failed or died),
  // sampling every sample_ms meanwhile. On timeout it throws (the ChildProcess kills and reaps).
  template <typename Sample>
  static bool wait_for_child(int ready_fd, int sample_ms, double timeout_s, uint64_t start_ns, Sample&& sample) {
    const uint64_t deadline = timeout_s > 0 ? start_ns + uint64_t(timeout_s * 1e9) : 0;
    uint64_t next_sample_ns = 0;
    for (;;) {
      throw_if_run_stopped();  // SIGTERM or the run's time limit: the ChildProcess kills and reaps
      // Slices of at most 100 ms, so a stop request is seen within them; samples stay sample_ms apart.
      int wait_ms = 100;
      if (sample_ms > 0) {
        const uint64_t now = now_ns();
        if (next_sample_ns == 0) next_sample_ns = now + uint64_t(sample_ms) * 1000000;
        if (now >= next_sample_ns) {
          sample();
          next_sample_ns = now + uint64_t(sample_ms) * 1000000;
        }
        wait_ms = std::min<int>(wait_ms, int((next_sample_ns - std::min(now, next_sample_ns)) / 1000000) + 1);
      }
      if (deadline) {
        const uint64_t now = now_ns();
        if (now >= deadline)
          throw std::runtime_error("fork-cow: the child did not finish within timeout_s=" +
                                   std::to_string(timeout_s) + " (killed)");
        const int left_ms = int((deadline - now) / 1000000) + 1;
        wait_ms = wait_ms < 0 ? left_ms : std::min(wait_ms, left_ms);
      }
      pollfd pfd{ready_fd, POLLIN, 0};
      const int r = poll(&pfd, 1, wait_ms);
      if (r < 0) {
        if (errno == EINTR) continue;
        throw_errno("fork-cow: poll on the child's ready pipe");
      }
      if (r == 0) continue;
      char byte;
      const ssize_t n = ::read(ready_fd, &byte, 1);
      if (n < 0 && errno == EINTR) continue;
      return n == 1;
    }
  }
};

}  // namespace

const StrategyEntry& fork_cow_strategy() {
  static const StrategyEntry entry{
      .name = "fork-cow",
      .help = "pause, fork(), resume; the child saves its frozen copy-on-write view (Redis BGSAVE)",
      .params = {
          {"chunk_pages", ParamSpec::Type::kInt, "256", 1, 1 << 20, "pages handed to the image writer per call"},
          // Off by default: the final sample is the peak already, and each sample walks the child's
          // page tables (~12 ms per GiB of 4 KiB pages here), CPU taken from the saver and writers.
          {"sample_ms", ParamSpec::Type::kInt, "0", 0, 60000,
           "also sample copy-on-write memory this often while the child saves (0: only the final "
           "sample, taken while the child is held alive after saving, which is the peak)"},
          {"timeout_s", ParamSpec::Type::kDouble, "0", 0, 1e7,
           "kill the child and fail after this many seconds (0: wait as long as it takes)"},
      },
      .consistency = ConsistencyPoint::kStart,
      .factory = make_strategy_of<ForkCowStrategy>,
  };
  return entry;
}

}  // namespace snap
