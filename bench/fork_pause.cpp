// fork() pause per GiB of populated memory: the time the parent is inside fork() (copying page
// tables), for 256 MiB and 1 GiB regions with THP off and on; the child exits at once. And what the
// child then pays to read each page for the first time (fork-cow's saver runs in that child).
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <string>

#include "bench/bench_support.h"
#include "core/clock.h"
#include "core/units.h"

namespace snapbench_micro {

namespace {

// Arguments: region MiB, THP (0 off, 1 on). Each iteration is one fork(), timed from the call to its
// return in the parent; reaping the child is untimed.
void BM_ForkPause(benchmark::State& state) try {
  const uint64_t bytes = uint64_t(state.range(0)) * kMiB;
  const bool thp = state.range(1) != 0;
  if (thp && (thp_mode().empty() || thp_mode() == "never")) {
    state.SkipWithError("transparent huge pages are disabled on this system");
    return;
  }
  snap::Region& region = cached_region(bytes, thp);
  uint64_t timed_ns = 0;
  for (auto _ : state) {
    const uint64_t t0 = snap::now_ns();
    const pid_t pid = fork();
    if (pid == 0) _exit(0);
    const uint64_t t1 = snap::now_ns();
    if (pid < 0) {
      state.SkipWithError((std::string("fork: ") + std::strerror(errno)).c_str());
      break;
    }
    state.SetIterationTime(snap::ns_to_s(t1 - t0));
    timed_ns += t1 - t0;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  set_ms_per_gib(state, timed_ns, state.iterations() * region.bytes());
  // How much of the region the kernel really backs with huge pages (THP "on" is only advice).
  set_counter(state, "huge_fraction", double(anon_huge_bytes(region.base(), region.bytes())) / double(region.bytes()));
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK(BM_ForkPause)
    ->ArgNames({"MiB", "thp"})
    ->Args({256, 0})
    ->Args({1024, 0})
    ->Args({256, 1})
    ->Args({1024, 1})
    ->Unit(benchmark::kMillisecond)
    ->UseManualTime();

// The child of a fork reading one word of every page, twice: fork gives the child's PTEs the
// Accessed bit clear, so its first read of each page makes the page walker set it (on a virtual
// machine that can cost far more than the walk itself); the second read is the same walk with the bit
// already set. The child sends both times through a pipe; the iteration time is the first read.
// Argument: region MiB (THP off, the harness's default).
void BM_ForkChildFirstRead(benchmark::State& state) try {
  const uint64_t bytes = uint64_t(state.range(0)) * kMiB;
  snap::Region& region = cached_region(bytes, false);
  uint64_t first_ns = 0, second_ns = 0;
  for (auto _ : state) {
    int fds[2];
    if (pipe(fds) != 0) {
      state.SkipWithError((std::string("pipe: ") + std::strerror(errno)).c_str());
      break;
    }
    const pid_t pid = fork();
    if (pid == 0) {
      uint64_t times[3] = {0, 0, 0};
      volatile uint64_t sink = 0;
      for (int pass = 0; pass < 2; ++pass) {
        const uint64_t t0 = snap::now_ns();
        const uint64_t sum = read_word_per_page(region);
        times[pass] = snap::now_ns() - t0;
        sink = sink + sum;
      }
      times[2] = sink;
      _exit(write(fds[1], times, sizeof times) == ssize_t(sizeof times) ? 0 : 1);
    }
    close(fds[1]);
    if (pid < 0) {
      close(fds[0]);
      state.SkipWithError((std::string("fork: ") + std::strerror(errno)).c_str());
      break;
    }
    uint64_t times[3] = {0, 0, 0};
    const ssize_t got = read(fds[0], times, sizeof times);
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (got != ssize_t(sizeof times)) {
      state.SkipWithError("the child did not report its read times");
      break;
    }
    state.SetIterationTime(snap::ns_to_s(times[0]));
    first_ns += times[0];
    second_ns += times[1];
  }
  const double pages = double(state.iterations()) * double(region.pages());
  if (pages > 0) {
    set_counter(state, "first_ns_per_page", double(first_ns) / pages);
    set_counter(state, "second_ns_per_page", double(second_ns) / pages);
  }
} catch (const std::exception& e) {
  state.SkipWithError(e.what());
}
BENCHMARK(BM_ForkChildFirstRead)->ArgName("MiB")->Arg(256)->Unit(benchmark::kMillisecond)->UseManualTime();

}  // namespace

}  // namespace snapbench_micro
