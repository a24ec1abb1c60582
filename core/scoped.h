// Small owners written once and shared: a file descriptor, an mmap'd buffer, and a pause of the writers.
#pragma once
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <utility>

#include "core/error.h"

namespace snap {

// Owns a file descriptor: closes it on destruction (or reset()), moves, never copies.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  // Gives the descriptor up without closing it (the caller closes it, e.g. to check close()'s error).
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_ = -1;
};

// Owns an mmap'd range: unmaps it on destruction, moves, never copies. Throws (errno, naming
// `what`) when the mapping fails.
class Mapping {
 public:
  Mapping() = default;
  Mapping(size_t bytes, int prot, int flags, const std::string& what, int fd = -1) : bytes_(bytes) {
    void* p = ::mmap(nullptr, bytes, prot, flags, fd, 0);
    if (p == MAP_FAILED) throw_errno("mmap of " + what);
    base_ = static_cast<uint8_t*>(p);
  }
  // Adopts a mapping made by the caller (one that reports a failed mmap its own way).
  Mapping(void* base, size_t bytes) : base_(static_cast<uint8_t*>(base)), bytes_(bytes) {}
  ~Mapping() { reset(); }
  Mapping(Mapping&& other) noexcept
      : base_(std::exchange(other.base_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  Mapping& operator=(Mapping&& other) noexcept {
    if (this != &other) {
      reset();
      base_ = std::exchange(other.base_, nullptr);
      bytes_ = std::exchange(other.bytes_, 0);
    }
    return *this;
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  uint8_t* data() const { return base_; }
  size_t size() const { return bytes_; }
  void reset() {
    if (base_) ::munmap(base_, bytes_);
    base_ = nullptr;
    bytes_ = 0;
  }

 private:
  uint8_t* base_ = nullptr;
  size_t bytes_ = 0;
};

// Holds the writers paused: pauses in the constructor (or at pause(), when built with
// std::defer_lock) and resumes in the destructor unless resume() came first, so every exit path,
// a throwing sink included, leaves them running. A template on the control (WorkloadControl, or a
// workload) because core/ knows no workload.
template <class Control>
class PauseScope {
 public:
  explicit PauseScope(Control& control) : control_(control) { pause(); }
  PauseScope(Control& control, std::defer_lock_t) : control_(control) {}
  ~PauseScope() {
    if (!paused_) return;
    try {
      resume();
    } catch (...) {
      // Already unwinding or done: the first failure is the one to report.
    }
  }
  PauseScope(const PauseScope&) = delete;
  PauseScope& operator=(const PauseScope&) = delete;
  void pause() {
    control_.pause();
    paused_ = true;
  }
  // Idempotent, so clean-up paths may always call it.
  void resume() {
    if (!paused_) return;
    paused_ = false;
    control_.resume();
  }
  bool paused() const { return paused_; }

 private:
  Control& control_;
  bool paused_ = false;
};

}  // namespace snap
