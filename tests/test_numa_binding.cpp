// The writers' NUMA binding calls libnuma from one thread only: its node-to-CPU cache is not
// thread-safe, and writer threads calling numa_run_on_node at once raced inside it (found by TSan).
// This test binary's own numa_run_on_node (it takes precedence over libnuma's) counts the calls made
// from writer threads and forwards to the real one.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <numa.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "core/region.h"
#include "workloads/threads.h"

namespace {
std::atomic<int> calls_from_writers{0};
}

extern "C" int numa_run_on_node(int node) {
  char name[32] = {};
  pthread_getname_np(pthread_self(), name, sizeof name);
  if (std::strncmp(name, "snap-writer", 11) == 0) calls_from_writers.fetch_add(1);
  using Fn = int (*)(int);
  static Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "numa_run_on_node"));
  return real ? real(node) : -1;
}

using namespace snap;

TEST(WorkloadNuma, WritersBindWithoutCallingLibnumaThemselves) {
  if (numa_available() < 0) GTEST_SKIP() << "libnuma reports NUMA unavailable here";
  RegionOptions ro;
  ro.bytes = 4ull << 20;
  Region region(ro);
  WorkloadOptions opts;
  opts.writers = 4;
  opts.rate_pages = 1000;
  opts.numa_node = 0;
  calls_from_writers = 0;
  {
    ThreadWorkload wl(region, opts);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    wl.stop();
  }
  EXPECT_EQ(calls_from_writers.load(), 0) << "writer threads called numa_run_on_node";
}
