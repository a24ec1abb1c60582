// fork() pause per GiB of populated memory: the time the parent is inside fork() (copying page
// tables), for 256 MiB and 1 GiB regions with THP off and on; the child exits at once.
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

}  // namespace

}  // namespace snapbench_micro
