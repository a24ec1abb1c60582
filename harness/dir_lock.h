// An exclusive lock on a results directory (flock on DIR/.snapbench.lock), so two matrices (a Slurm
// job resubmitted while the first still runs, two `--resume` at once) never write one directory.
#pragma once
#include <string>

#include "core/scoped.h"

namespace snap {

class DirLock {
 public:
  // Takes the lock or throws UsageError saying who holds it (pid, host, since when, command). The
  // lock goes with the process (flock): a crash or kill -9 releases it, nothing stale is left.
  DirLock(const std::string& dir, const std::string& command);

 private:
  UniqueFd fd_;
};

}  // namespace snap
