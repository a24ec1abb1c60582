// A thread that serves synchronous userfaultfd write-protect faults one at a time (optionally copying
// each page aside first), shared by the fault round-trip micro-benchmark and `snapbench machine`.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "core/uffd.h"

namespace snap {

// How the server waits for the next fault message.
enum class FaultService { kPoll, kRead, kBusyPoll };

// Serves faults on [base, base+len), registered on `uffd` (non-blocking unless kRead), until it has
// served a fault on `spare` (a protected page of the range): the writer ends it with one write
// there. (A stop flag checked after each fault would race: the woken writer may set it before the
// server looks, and the server would leave too early.) Each fault is served by un-protecting its page
// with mode 0, which also wakes the writer.
class WpFaultServer {
 public:
  WpFaultServer(Uffd& uffd, void* base, size_t len, void* spare, FaultService service, bool copy_aside);
  // Ends the server even when the caller leaves early (an exception): the spare page stays protected
  // until this write, and if the server already died the write simply succeeds.
  ~WpFaultServer() { finish(); }
  WpFaultServer(const WpFaultServer&) = delete;
  WpFaultServer& operator=(const WpFaultServer&) = delete;
  void finish();
  uint64_t served() const { return served_.load(std::memory_order_relaxed); }
  const std::string& error() const { return error_; }  // read after finish() or failed()
  bool failed() const { return failed_.load(std::memory_order_acquire); }

 private:
  bool receive(void* msg);  // fills a uffd_msg; throws on an unexpected error
  void run();

  static constexpr size_t kCopyRingPages = 64;
  Uffd& uffd_;
  void* base_;
  size_t len_;
  void* spare_;
  FaultService service_;
  bool copy_aside_;
  std::vector<uint8_t> ring_;
  std::atomic<bool> failed_{false};
  std::atomic<uint64_t> served_{0};
  std::string error_;
  std::thread thread_;
};

// One store to `page` that the compiler can neither drop nor move across the clock reads around it.
inline void store_word_fenced(uint8_t* page, uint64_t value) {
  asm volatile("" ::: "memory");
  *reinterpret_cast<volatile uint64_t*>(page) = value;
  asm volatile("" ::: "memory");
}

}  // namespace snap
