// A SIGSEGV handler that makes a read-only page of one range writable again and lets the store retry:
// the price of a first write under mprotect tracking, shared by the micro-benchmark and `snapbench machine`.
#pragma once
#include <signal.h>

#include <cstddef>
#include <cstdint>

namespace snap {

// Installs the handler for [begin, begin+len) for its lifetime and restores the previous one after.
// One at a time per process (the range lives in globals, as a signal handler can only reach those).
// A fault outside the range falls back to the default action, so a real crash still crashes.
class WriteEnablingSegvHandler {
 public:
  WriteEnablingSegvHandler(void* begin, size_t len);
  ~WriteEnablingSegvHandler();
  WriteEnablingSegvHandler(const WriteEnablingSegvHandler&) = delete;
  WriteEnablingSegvHandler& operator=(const WriteEnablingSegvHandler&) = delete;
  // Faults the handler resolved since the process started (all instances).
  static uint64_t handled();

 private:
  struct sigaction old_ {};
};

}  // namespace snap
