// The contract between a VMM and the guest writer program: guest-physical layout, I/O ports, and the
// control/statistics block (the one place the guest's parameters come from). Freestanding.
#pragma once
#include <stdint.h>

#include "core/histogram_layout.h"
#include "workloads/pattern_math.h"

namespace snap::guest {

// ---- Guest-physical layout --------------------------------------------------------------------
// The guest ELF is linked at 1 MiB (where multiboot loaders put kernels); its image, stacks and page
// tables end well below kControlGpa. The data area (the snapshotted memory) starts at 4 GiB, above
// the 32-bit PCI hole a full machine has. The guest identity-maps [0, kMappedBytes) with 2 MiB pages.
constexpr uint64_t kImageGpa = 0x100000;
constexpr uint64_t kEntry64Gpa = kImageGpa + 0x40;  // the 64-bit entry (guest.ld places it)
constexpr uint64_t kImageLimitGpa = 0x300000;       // the image (bss included) ends below this
constexpr uint64_t kVmmTablesGpa = 0x300000;        // a VMM's own page tables and GDT, if it builds them
constexpr uint64_t kControlGpa = 0x400000;
constexpr uint64_t kDataGpa = 1ull << 32;
constexpr uint64_t kMappedBytes = 64ull << 30;
constexpr uint64_t kMaxDataBytes = kMappedBytes - kDataGpa;
constexpr uint32_t kMaxVcpus = 64;
constexpr uint64_t kPageBytes = 4096;

// ---- Entry --------------------------------------------------------------------------------------
// Either at the ELF's 32-bit entry in flat protected mode, paging off (the multiboot state): a
// multiboot loader passes EAX = kMultibootMagic (the vCPU is then number 0), a VMM EAX = kVmmMagic
// and ESI = the vCPU's number; the guest builds its page tables and enters long mode itself.
// Or at kEntry64Gpa in 64-bit mode with [0, kMappedBytes) identity-mapped, flat segments, CR4.OSFXSR
// set and ESI = the vCPU's number (the in-tree VMM does this: on a KVM that emulates the guest until
// it runs paged long mode, as the nested one here does, the 32-bit path costs seconds per boot).
constexpr uint32_t kMultibootMagic = 0x2badb002;
constexpr uint32_t kVmmMagic = 0x534e4150;  // "SNAP"

// ---- Ports (an OUT of 32 bits; a machine without a handler ignores them) -----------------------
// Only a VMM that handles them gets the sleep and idle requests (ControlHeader::vmm_ports): to one
// without a handler (QEMU) each OUT is an exit doing nothing, so the guest would spin on them.
constexpr uint16_t kPortSleep = 0x5b0;  // value: TSC ticks to sleep for (low 32 bits of the request
                                        // are in VcpuBlock::sleep_ticks; the OUT value is ignored)
constexpr uint16_t kPortReady = 0x5b1;  // value: the vCPU's number, once it runs its write loop
constexpr uint16_t kPortPanic = 0x5b2;  // value: a PanicCode; the guest goes no further
constexpr uint16_t kPortIdle = 0x5b3;   // rate 0: park until the control word changes

enum PanicCode : uint32_t { kPanicBadControl = 1, kPanicBadVcpu = 2, kPanicBadPattern = 3 };

// ---- Control word -------------------------------------------------------------------------------
// Written by the host, read by the guest before every write: the phase in the low bits, and a
// generation bumped on every change (phase, resume), so one comparison catches all of them.
constexpr uint32_t kPhaseMask = 3;
constexpr uint32_t kGenerationStep = 4;

constexpr uint64_t kControlMagic = 0x4c52544350414e53ull;  // "SNAPCTRL"
constexpr uint32_t kControlVersion = 2;  // 2: vmm_ports

// The header page at kControlGpa, host-written: set before the vCPUs start and never changed after,
// except `control`.
struct alignas(4096) ControlHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t vcpus;
  uint64_t data_gpa;            // first byte of the data area
  uint64_t data_pages;          // pages in the data area
  uint64_t ns_per_tick_q32;     // TSC tick -> ns, 32.32 fixed point (for the latency histograms)
  uint64_t interval_ticks;      // paced: ticks between two writes of one vCPU; 0 with `unpaced`
  uint64_t burst_ticks;         // paced: how far a vCPU may fall behind its schedule
  uint64_t min_sleep_ticks;     // paced: a wait shorter than this spins instead of sleeping
  uint64_t stall_min_ticks;     // unpaced: a stretch this much over the usual is a stall
  uint32_t idle;                // 1: never write (rate 0), halt instead
  uint32_t unpaced;             // 1: write as fast as possible, sampling the latency
  uint64_t sample_seed;         // seeds the random gaps between timed writes (unpaced)
  // 1: the VMM handles kPortSleep and kPortIdle (the in-tree VMM). 0 (QEMU): the idle guest halts
  // at CPL 0 before its write loop and a paced one waits by spinning on the TSC, without exits.
  uint32_t vmm_ports;
  alignas(64) uint32_t control;  // phase | generation (see kPhaseMask)
};

// One vCPU's part: its pattern plan (host-written), its counters and histograms (guest-written).
struct Hist {
  uint64_t counts[HistogramLayout::kBuckets];
  uint64_t total, max, sum;
};

struct alignas(4096) VcpuBlock {
  PatternPlan plan;            // host: this vCPU's page sequence
  alignas(64) uint64_t count;  // guest: writes so far (live; the last seq is (count << 8) | vcpu)
  uint64_t writes[3];          // guest: writes per phase
  uint64_t sleep_ticks;        // guest: the argument of the next kPortSleep request
  uint64_t sleeps;             // guest: sleep requests made
  uint32_t ready;              // guest: 1 once in the write loop
  uint32_t panic;              // guest: a PanicCode
  alignas(64) Hist hist[3];    // guest: write latency in ns per phase
};

// The vCPU blocks follow the header page.
constexpr uint64_t vcpu_block_gpa(uint32_t vcpu) { return kControlGpa + sizeof(ControlHeader) + vcpu * sizeof(VcpuBlock); }
constexpr uint64_t control_bytes(uint32_t vcpus) { return sizeof(ControlHeader) + vcpus * sizeof(VcpuBlock); }

}  // namespace snap::guest
