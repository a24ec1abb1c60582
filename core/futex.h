// futex wait/wake on a std::atomic<uint32_t> (private futexes), with an optional absolute deadline.
#pragma once
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdint>
#include <ctime>

namespace snap {

inline uint32_t* futex_address(std::atomic<uint32_t>& a) {
  static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) && std::atomic<uint32_t>::is_always_lock_free);
  return reinterpret_cast<uint32_t*>(&a);
}

// Sleeps while `a` == expected, until woken, a signal, or the absolute CLOCK_MONOTONIC time
// `deadline_ns` (0 = none). Spurious returns happen: callers re-check their condition.
inline void futex_wait_until(std::atomic<uint32_t>& a, uint32_t expected, uint64_t deadline_ns) {
  if (deadline_ns == 0) {
    syscall(SYS_futex, futex_address(a), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
    return;
  }
  timespec ts{time_t(deadline_ns / 1000000000ull), long(deadline_ns % 1000000000ull)};
  syscall(SYS_futex, futex_address(a), FUTEX_WAIT_BITSET_PRIVATE, expected, &ts, nullptr, FUTEX_BITSET_MATCH_ANY);
}

inline void futex_wake_every(std::atomic<uint32_t>& a) {
  syscall(SYS_futex, futex_address(a), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace snap
