// The `threads` workload's class: paced writer threads in this process (the default workload).
#pragma once
#include <memory>

#include "workloads/workload.h"

namespace snap {

// Runs the writer threads; pause parks every writer (the harness's WorkloadControl sits on it).
class ThreadWorkload final : public Workload {
 public:
  ThreadWorkload(Region& region, const WorkloadOptions& opts);  // starts the threads
  ~ThreadWorkload() override;  // stops and joins (resumes first if paused)
  ThreadWorkload(const ThreadWorkload&) = delete;
  ThreadWorkload& operator=(const ThreadWorkload&) = delete;

  void set_phase(Phase p) override;
  void pause() override;  // bounded wait for all writers to park; throws on timeout (writers then resumed)
  void resume() override;
  bool paused() const override;
  void stop() override;  // ends the threads; idempotent
  PhaseStats stats(Phase p) const override;
  uint64_t total_writes() const override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace snap
