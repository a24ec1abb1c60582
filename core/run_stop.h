// A request to stop the run in progress now (SIGTERM, the run's time limit), checked wherever a run
// can block or take long (the region's fill, pre-faulting, the warm-up, a sink's write), and the
// process groups of the commands a run started, for a signal handler to kill before it exits.
#pragma once
#include <stdexcept>
#include <string>
#include <sys/types.h>

namespace snap {

// Why the run was stopped becomes its failure reason ("timed out after 30 s", "interrupted by SIGTERM").
struct RunStopped : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Async-signal-safe: `reason` must outlive the run (a string literal or a static buffer). The first
// request wins; a signal's request (sticky=true) outlives clear_run_stop(), a time limit's does not.
void request_run_stop(const char* reason, bool sticky);
bool run_stop_requested();
// Whether a signal asked for the stop (the process is stopping: the run in progress is not recorded).
bool run_stop_sticky();
// Clears a time limit's request at the end of its run (a signal's stays: the process is stopping).
void clear_run_stop();
// Throws RunStopped with the reason when a stop was requested.
void throw_if_run_stopped();
// Sleeps `seconds`, in steps of at most 20 ms, throwing RunStopped as soon as a stop is requested.
void sleep_unless_stopped(double seconds);

// Process groups of live sink commands (at most a few at a time). kill_child_groups() is
// async-signal-safe: an exit from a signal handler calls it so no command outlives snapbench.
void register_child_group(pid_t pgid);
void unregister_child_group(pid_t pgid);
void kill_child_groups();

}  // namespace snap
