// uffd-wp's string parameters and their values (fault servicing, scheduling, staging), named once.
#pragma once
#include <cstddef>
#include <stdexcept>
#include <string>
#include <vector>

namespace snap::uffd_wp {

// How the fault thread waits for the next write fault (a latency/CPU trade-off benchmarked later).
// `saver` has no fault thread at all: the saver serves faults between chunks, as QEMU's migration
// thread does (fewer threads competing for cores, but a writer waits while the sink blocks).
enum class FaultWait { kSpin, kPoll, kRead, kSaver, kSigbus };

// Each string parameter's values, named once: the declared choices (which ParamValues checks before
// any snapshot starts), the parsing, and the names written back into the notes.
template <typename E>
struct Named {
  const char* name;
  E value;
};

template <typename E, size_t N>
std::vector<std::string> names_of(const Named<E> (&table)[N]) {
  std::vector<std::string> names;
  for (const auto& n : table) names.push_back(n.name);
  return names;
}

template <typename E, size_t N>
E by_name(const Named<E> (&table)[N], const std::string& text) {
  for (const auto& n : table)
    if (text == n.name) return n.value;
  throw std::logic_error("uffd-wp: '" + text + "' passed the declared choices but names no value");
}

template <typename E, size_t N>
const char* name_of(const Named<E> (&table)[N], E value) {
  for (const auto& n : table)
    if (n.value == value) return n.name;
  return "?";
}

constexpr Named<FaultWait> kFaultWaitNames[] = {
    {"read", FaultWait::kRead}, {"poll", FaultWait::kPoll}, {"spin", FaultWait::kSpin}, {"saver", FaultWait::kSaver},
    {"sigbus", FaultWait::kSigbus}};

// The fault thread's scheduling policy. `fifo` (real-time) wakes it ahead of everything the moment
// a fault arrives; `idle` lets a spinning thread poll only on an otherwise idle core, so a writer it
// wakes preempts it at once (but a busy machine can starve it: the saver then serves the faults).
// `auto` picks fifo for poll/read and normal for spin (a real-time spinner would monopolise its
// core). A refused policy (no permission) falls back to normal.
enum class FaultSched { kAuto, kNormal, kFifo, kIdle };

constexpr Named<FaultSched> kFaultSchedNames[] = {
    {"auto", FaultSched::kAuto}, {"normal", FaultSched::kNormal}, {"fifo", FaultSched::kFifo}, {"idle", FaultSched::kIdle}};

// Where the saver copies a chunk before un-protecting it (see save_chunk).
enum class Staging { kImage, kSeparate, kNone };

constexpr Named<Staging> kStagingNames[] = {
    {"image", Staging::kImage}, {"separate", Staging::kSeparate}, {"none", Staging::kNone}};

// When a page the saver saved is un-protected (see release.h): `chunk` right after its chunk's copy
// (a later write to it costs nothing, every chunk costs an ioctl and a TLB flush), `lazy` only when a
// writer faults on it (that write costs a bare un-protect, no copy), the rest in one call at the end.
enum class Release { kChunk, kLazy };

constexpr Named<Release> kReleaseNames[] = {{"chunk", Release::kChunk}, {"lazy", Release::kLazy}};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace snap::uffd_wp
