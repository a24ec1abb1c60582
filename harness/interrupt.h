// Ctrl-C / SIGTERM during a run or matrix. A first Ctrl-C (SIGINT) lets the run in progress finish
// (so its row is written) and stops after it; a first SIGTERM (timeout, Slurm, systemd) stops the run
// in progress now: its clean-up runs (no page left protected, no command left running), it writes no
// row, and nothing more runs. A second signal of either kind kills the sink commands and exits at once.
#pragma once

namespace snap {

class InterruptGuard {
 public:
  InterruptGuard();   // installs the handlers
  ~InterruptGuard();  // restores the defaults
  static bool interrupted();
  // What the command exits with once interrupted: 128 + the first signal (130 SIGINT, 143 SIGTERM).
  static int exit_code();
};

}  // namespace snap
