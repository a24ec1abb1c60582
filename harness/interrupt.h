// Ctrl-C / SIGTERM during a run or matrix: the first signal lets the run in progress finish (so its
// clean-up runs and its row is written) and stops after it; a second one exits at once.
#pragma once

namespace snap {

class InterruptGuard {
 public:
  InterruptGuard();   // installs the handlers
  ~InterruptGuard();  // restores the defaults
  static bool interrupted();
};

}  // namespace snap
