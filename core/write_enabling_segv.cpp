// The write-enabling SIGSEGV handler (see write_enabling_segv.h).
#include "core/write_enabling_segv.h"

#include <sys/mman.h>

#include <atomic>

#include "core/units.h"

namespace snap {

namespace {

std::atomic<uintptr_t> g_tracked_begin{0}, g_tracked_end{0};
std::atomic<uint64_t> g_handled{0};

void on_segv(int sig, siginfo_t* info, void*) {
  const uintptr_t addr = reinterpret_cast<uintptr_t>(info->si_addr);
  if (addr >= g_tracked_begin.load(std::memory_order_relaxed) && addr < g_tracked_end.load(std::memory_order_relaxed) &&
      mprotect(reinterpret_cast<void*>(addr & ~uintptr_t(kPageSize - 1)), kPageSize, PROT_READ | PROT_WRITE) == 0) {
    g_handled.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  signal(sig, SIG_DFL);  // not ours: the retried access crashes as it would have without us
}

}  // namespace

WriteEnablingSegvHandler::WriteEnablingSegvHandler(void* begin, size_t len) {
  g_tracked_begin = reinterpret_cast<uintptr_t>(begin);
  g_tracked_end = reinterpret_cast<uintptr_t>(begin) + len;
  struct sigaction sa {};
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &old_);
}

WriteEnablingSegvHandler::~WriteEnablingSegvHandler() {
  sigaction(SIGSEGV, &old_, nullptr);
  g_tracked_begin = g_tracked_end = 0;
}

uint64_t WriteEnablingSegvHandler::handled() { return g_handled.load(); }

}  // namespace snap
