// Signal handling shared by `run` and `matrix` (see interrupt.h).
#include "harness/interrupt.h"

#include <unistd.h>

#include <atomic>
#include <csignal>

#include "core/run_stop.h"

namespace snap {

namespace {
std::atomic<int> g_interrupts{0};
std::atomic<int> g_first_signal{0};
void on_interrupt(int sig) {
  static const char finish_msg[] = "\nsnapbench: interrupted; finishing the run in progress (again to quit now)\n";
  static const char stop_msg[] = "\nsnapbench: SIGTERM; stopping the run in progress (again to quit now)\n";
  if (g_interrupts.fetch_add(1) >= 1) {
    kill_child_groups();  // no sink command outlives us (their groups are not ours)
    _exit(130);
  }
  g_first_signal.store(sig);
  if (sig == SIGTERM) {
    request_run_stop("interrupted by SIGTERM", true);
    (void)!write(STDERR_FILENO, stop_msg, sizeof stop_msg - 1);
  } else {
    (void)!write(STDERR_FILENO, finish_msg, sizeof finish_msg - 1);
  }
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

int InterruptGuard::exit_code() { return 128 + (g_first_signal.load() ? g_first_signal.load() : SIGINT); }

}  // namespace snap
