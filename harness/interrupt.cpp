// Signal handling shared by `run` and `matrix` (see interrupt.h).
#include "harness/interrupt.h"

#include <unistd.h>

#include <atomic>
#include <csignal>

namespace snap {

namespace {
std::atomic<int> g_interrupts{0};
void on_interrupt(int) {
  static const char msg[] = "\nsnapbench: interrupted; finishing the run in progress (again to quit now)\n";
  if (g_interrupts.fetch_add(1) >= 1) _exit(130);
  (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
}
}  // namespace

InterruptGuard::InterruptGuard() {
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

InterruptGuard::~InterruptGuard() {
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
}

bool InterruptGuard::interrupted() { return g_interrupts.load() != 0; }

}  // namespace snap
