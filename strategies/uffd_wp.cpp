// The `uffd-wp` strategy: freeze-and-release snapshots with userfaultfd write-protection (QEMU's
// background-snapshot design): pause, write-protect everything, resume; a saver walks memory saving
// and un-protecting chunks, while a fault thread saves first any page a writer is about to change.
// The pieces live in strategies/uffd_wp/: choices.h (parameter values), page_state.h (claim bitmap,
// copy-aside ring), fault_service.h (fault thread, saver's fault service), release.h (registration,
// chunk saving and release).
#include <sched.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/error.h"
#include "core/linux_compat.h"
#include "core/scoped.h"
#include "core/uffd.h"
#include "strategies/strategy.h"
#include "strategies/uffd_wp/choices.h"
#include "strategies/uffd_wp/fault_service.h"
#include "strategies/uffd_wp/page_state.h"
#include "strategies/uffd_wp/release.h"
#include "strategies/uffd_wp/sigbus.h"

namespace snap {

namespace {

using namespace uffd_wp;

// Without WP_UNPOPULATED, write-protection skips never-touched pages: read each page once so it
// maps the zero page and can be protected (what QEMU does before arming).
void prefault_by_reading(const Region& region) {
  const volatile uint8_t* p = region.base();
  uint8_t sink = 0;
  for (size_t i = 0; i < region.pages(); ++i) sink ^= p[i * kPageSize];
  asm volatile("" : : "r"(sink));
}

class UffdWpStrategy : public Strategy {
 public:
  using Strategy::Strategy;
  Support probe() const override {
    const UffdFeatures& f = uffd_features();
    if (!f.available) return Support::no(f.reason);
    if (!f.has(UFFD_FEATURE_PAGEFAULT_FLAG_WP))
      return Support::no("userfaultfd lacks UFFD_FEATURE_PAGEFAULT_FLAG_WP (write-protect mode)");
    return Support::yes();
  }

  void snapshot(SnapshotContext& ctx) override {
    const uint64_t t_setup = now_ns();
    Region& region = ctx.region;
    const size_t pages = region.pages();
    const size_t chunk_pages = size_t(ctx.params.get_int("chunk_pages"));
    const size_t ring_pages = size_t(ctx.params.get_int("ring_pages"));
    const FaultWait wait = by_name(kFaultWaitNames, ctx.params.get_string("fault_wait"));
    const FaultSched sched = by_name(kFaultSchedNames, ctx.params.get_string("fault_sched"));
    const Release release_mode = by_name(kReleaseNames, ctx.params.get_string("release"));
    if (release_mode == Release::kLazy && ctx.params.get_bool("release_thread"))
      throw UsageError("--set uffd-wp.release_thread=true needs uffd-wp.release=chunk: lazy release has no "
                       "per-chunk un-protect to hand to a thread");

    const UffdFeatures& offered = uffd_features();
    const bool wp_unpopulated = ctx.params.get_bool("wp_unpopulated") && offered.has(UFFD_FEATURE_WP_UNPOPULATED);
    uint64_t features = UFFD_FEATURE_PAGEFAULT_FLAG_WP;
    if (wp_unpopulated) features |= UFFD_FEATURE_WP_UNPOPULATED;
    const bool sigbus = wait == FaultWait::kSigbus;
    if (sigbus) {
      const std::string why = sigbus_unsupported_reason();
      if (!why.empty()) throw UnsupportedError(why);
      features |= UFFD_FEATURE_SIGBUS;
    }
    ctx.metrics.note("wp_unpopulated", wp_unpopulated ? "1" : "0");
    ctx.metrics.note("fault_wait", ctx.params.get_string("fault_wait"));
    ctx.metrics.note("release", name_of(kReleaseNames, release_mode));

    // Everything that can be prepared while the writers run is, to keep the pause short.
    ClaimBitmap claims(pages);
    CopyAsideRing ring(ring_pages, size_t(ctx.params.get_int("ring_budget_pages")));
    const size_t ring_bytes_at_start = ring.bytes();
    const Staging staging_mode = by_name(kStagingNames, ctx.params.get_string("staging"));
    std::unique_ptr<PrefaultedBuffer> staging;
    if (staging_mode == Staging::kSeparate) staging = std::make_unique<PrefaultedBuffer>(chunk_pages * kPageSize);
    std::vector<uint64_t> chunk_won((chunk_pages + 63) / 64 + 1);
    ctx.metrics.extra_rss_bytes = claims.bytes() + ring.bytes() + (staging ? staging->bytes() : 0);
    // The pages already un-protected: what a sigbus handler waits on for a page the saver claimed,
    // and what lets the saver release a chunk with one ioctl (see save_chunk).
    auto released = std::make_unique<ClaimBitmap>(pages);
    ctx.metrics.extra_rss_bytes += released->bytes();
    std::unique_ptr<LazyHandoff> lazy;
    if (release_mode == Release::kLazy) {
      lazy = std::make_unique<LazyHandoff>(pages);
      ctx.metrics.extra_rss_bytes += lazy->bytes();
    }

    // Declaration order is the clean-up order reversed: the fault thread stops first, then the
    // whole range is released (waking any blocked writer) and unregistered, the SIGBUS handler
    // (sigbus) removed, the fd closed, and the writers resumed last if still paused.
    PauseScope pause(ctx.control, std::defer_lock);  // resumes on any exit while paused
    Uffd uffd(features, /*nonblocking=*/wait != FaultWait::kRead);
    if (!wp_unpopulated) prefault_by_reading(region);
    std::unique_ptr<SigbusFaultPath> sigbus_path;
    if (sigbus) sigbus_path = std::make_unique<SigbusFaultPath>(uffd.fd(), region, claims, *released, ring, lazy.get());
    WpRegistration registration(uffd, region);
    std::unique_ptr<StopSentinel> sentinel;
    if (wait == FaultWait::kRead) sentinel = std::make_unique<StopSentinel>(uffd);
    std::unique_ptr<FaultHandler> handler;
    if (wait != FaultWait::kSaver && !sigbus) {
      handler = std::make_unique<FaultHandler>(uffd, region, claims, *released, ring, wait, sentinel.get(), sched,
                                               lazy.get());
      ctx.metrics.note("fault_sched", handler->sched_name());
    } else {
      ctx.metrics.note("fault_sched", "none");
    }
    std::unique_ptr<SaverFaultService> saver_service;
    // (With sigbus no fault is ever queued on the fd: there is nothing for the saver to serve.)
    if ((ctx.params.get_bool("saver_serves_faults") && wait != FaultWait::kRead && !sigbus) || wait == FaultWait::kSaver) {
      saver_service = std::make_unique<SaverFaultService>(uffd, region, claims, *released, lazy.get());
      ctx.metrics.extra_rss_bytes += saver_service->bytes();
    }

    // Declared after the registration: on any exit it stops before the region is released.
    std::unique_ptr<ChunkReleaser> releaser;
    if (ctx.params.get_bool("release_thread"))
      releaser = std::make_unique<ChunkReleaser>(uffd, region, size_t(ctx.params.get_int("release_queue")), released.get());
    ctx.metrics.note("setup_s", std::to_string(ns_to_s(now_ns() - t_setup)));
    pause.pause();
    const uint64_t t0 = now_ns();
    registration.protect_all();
    ctx.metrics.freeze_s = ns_to_s(now_ns() - t0);
    ctx.control.consistency_point();
    pause.resume();

    ImageWriter writer(ctx.sink, image_header(pages));
    if (staging_mode == Staging::kImage) {
      writer.reserve(chunk_pages);  // sizes the writer's buffer for a whole chunk now, not mid-snapshot
      ctx.metrics.extra_rss_bytes += writer.buffer_bytes();
    }
    auto save_aside = [&writer](uint64_t page, const uint8_t* data) { writer.save_page(page, data); };

    // Chunk boundaries at absolute page numbers that are multiples of chunk_pages, so that a
    // 512-page chunk covers exactly one huge page and un-protecting it does not split the PMD.
    const uint64_t base_page = reinterpret_cast<uint64_t>(region.base()) / kPageSize;
    size_t saver_pages = 0;
    size_t aside_pages = 0;
    uint64_t unprotect_ns = 0;  // the saver's un-protect ioctls: kernel work stop-copy does not have
    const bool saver_yields = ctx.params.get_bool("saver_yield");
    for (size_t first = 0; first < pages;) {
      if (handler) handler->rethrow_if_failed();
      if (sigbus_path) sigbus_path->rethrow_if_failed();
      // A writer woken on the saver's core would otherwise wait for the saver's time slice to end
      // (up to milliseconds); yielding between chunks bounds that wait to one chunk. Costs one
      // cheap system call per chunk when nothing else is runnable.
      if (saver_yields) sched_yield();
      if (saver_service) saver_pages += saver_service->serve(writer);
      aside_pages += ring.drain(save_aside);
      const size_t last = std::min(pages, size_t((base_page + first) / chunk_pages + 1) * chunk_pages - size_t(base_page));
      saver_pages += save_chunk(region, uffd, releaser.get(), claims, staging_mode, staging ? staging->data() : nullptr,
                                chunk_won, first, last, writer, unprotect_ns, released.get(), lazy.get());
      first = last;
    }
    // Every page is claimed now; wait for the pages the fault thread (or the writers' handlers) took
    // to come out of the ring.
    if (handler) handler->end_idle_policy();
    while (saver_pages + aside_pages < pages) {
      if (handler) handler->rethrow_if_failed();
      if (sigbus_path) sigbus_path->rethrow_if_failed();
      if (saver_service) saver_pages += saver_service->serve(writer);
      const size_t n = ring.drain(save_aside);
      aside_pages += n;
      if (n == 0) sched_yield();
    }

    if (releaser) {
      releaser->drain();  // every chunk un-protected before the registration goes
      unprotect_ns += releaser->busy_ns();
      releaser->stop();
    }
    if (handler) {
      handler->stop();
      handler->rethrow_if_failed();
    }
    // Lazy release: what no writer touched is still protected, and goes in one call over the whole
    // region (one TLB flush instead of one per chunk).
    const uint64_t t_release = now_ns();
    registration.release(/*all_released=*/release_mode == Release::kChunk);
    ctx.metrics.note("release_s", std::to_string(ns_to_s(now_ns() - t_release)));
    writer.finish();

    const uint64_t saver_faults = saver_service ? saver_service->messages() : 0;
    const SigbusCounters in_thread = sigbus_path ? sigbus_path->counters() : SigbusCounters{};
    ctx.metrics.faults = (handler ? handler->fault_messages() : 0) + saver_faults + in_thread.faults;
    ctx.metrics.passes = 1;
    ctx.metrics.note("fault_copies", std::to_string(handler ? handler->pages_copied() : in_thread.copies));
    ctx.metrics.note("ring_full_waits", std::to_string(handler ? handler->ring_full_waits() : in_thread.ring_full_waits));
    ctx.metrics.note("saver_faults", std::to_string(saver_faults));
    ctx.metrics.note("unprotect_s", std::to_string(ns_to_s(unprotect_ns)));
    if (lazy) {
      ctx.metrics.note("lazy_saver_unprotects", std::to_string(lazy->saver_unprotects()));
      ctx.metrics.note("lazy_fault_unprotects", std::to_string(lazy->fault_unprotects()));
    }
    // The ring's memory is what it grew to, not its budget.
    ctx.metrics.extra_rss_bytes += ring.bytes() - ring_bytes_at_start;
    ctx.metrics.note("ring_high_water", std::to_string(ring.high_water()));
    if (sigbus_path) {
      // Where a faulting writer's time goes, summed over the writers (see SigbusCounters).
      ctx.metrics.note("sigbus_claimed_waits", std::to_string(in_thread.claimed_waits));
      ctx.metrics.note("sigbus_handler_s", std::to_string(ns_to_s(in_thread.handler_ns)));
      ctx.metrics.note("sigbus_copy_s", std::to_string(ns_to_s(in_thread.copy_ns)));
      ctx.metrics.note("sigbus_unprotect_s", std::to_string(ns_to_s(in_thread.unprotect_ns)));
      ctx.metrics.note("sigbus_wait_s", std::to_string(ns_to_s(in_thread.wait_ns)));
    }
    ctx.metrics.image = writer.stats();
  }
};

}  // namespace

const StrategyEntry& uffd_wp_strategy() {
  static const StrategyEntry entry{
      .name = "uffd-wp",
      .help = "freeze-and-release: write-protect all RAM with userfaultfd, save in chunks, faulting pages first",
      .params = {
          {"chunk_pages", ParamSpec::Type::kInt, "64", 1, 65536,
           "pages the saver claims, copies and un-protects at a time (writers hitting the chunk wait for it)"},
          {"fault_wait", ParamSpec::Type::kString, "read", 0, 0,
           "how the fault thread waits for faults: read (blocking read), poll, spin (busy-polls a "
           "non-blocking fd, burns a core), saver (no fault thread: the saver serves faults between "
           "chunks, QEMU-style; writers then wait while the sink blocks), or sigbus (no fault thread: "
           "UFFD_FEATURE_SIGBUS makes the faulting writer's own SIGBUS handler copy its page aside and "
           "un-protect it; unsupported without that feature)",
           names_of(kFaultWaitNames)},
          {"ring_pages", ParamSpec::Type::kInt, "1024", 1, 1 << 20,
           "copy-aside ring pages allocated (and populated) up front, for pages the fault path saves before the "
           "saver drains them"},
          {"ring_budget_pages", ParamSpec::Type::kInt, "16384", 1, 1 << 22,
           "how far the copy-aside ring may grow on demand past ring_pages (memory taken only as pages wait: "
           "behind a slow sink); when that many pages wait, a faulting writer waits for the saver "
           "(ring_full_waits). Default 64 MiB; set it to ring_pages for a fixed ring"},
          {"staging", ParamSpec::Type::kString, "image", 0, 0,
           "where a chunk is copied before it is un-protected: image (straight into the image writer's "
           "buffer, made room for before the chunk is claimed: one copy, writers never wait for the sink), "
           "separate (into a staging buffer, then into the image: an extra copy), none (into the image, "
           "which may flush to the sink while writers wait on the chunk)",
           names_of(kStagingNames)},
          {"wp_unpopulated", ParamSpec::Type::kBool, "true", 0, 0,
           "use UFFD_FEATURE_WP_UNPOPULATED when the kernel offers it; false pre-faults never-touched pages "
           "with a read instead (QEMU's way on older kernels)"},
          {"saver_serves_faults", ParamSpec::Type::kBool, "true", 0, 0,
           "the saver also serves waiting faults between chunks (spin/poll; always with saver), so a starved "
           "fault thread cannot stall writers for long"},
          {"release_thread", ParamSpec::Type::kBool, "false", 0, 0,
           "un-protect each saved chunk on a thread of its own, to overlap the kernel's page-table walk "
           "with the copy of the next chunk; measured slower, idle and (with the default release_queue) "
           "under writes: from a second CPU each un-protect must interrupt the saver's CPU to flush its "
           "TLB (results/variants/uffd-wp)"},
          {"release_queue", ParamSpec::Type::kInt, "4", 1, 1 << 30,
           "with release_thread: chunks that may wait for the thread before the saver un-protects one "
           "itself; a writer faulting on a saved chunk waits behind them (a large queue lets the saver run "
           "ahead: a shorter snapshot under writes, paid for in writer stalls)"},
          {"release", ParamSpec::Type::kString, "chunk", 0, 0,
           "when a saved page is un-protected: chunk (right after its chunk is copied: one ioctl and TLB flush "
           "per chunk, later writes to it are free) or lazy (saved pages stay protected; a write to one costs a "
           "bare un-protect of that page, no copy; what no writer touched is un-protected in one call at the "
           "end). Lazy pays for un-protecting only where writes land (results/variants/uffd-wp-release)",
           names_of(kReleaseNames)},
          {"saver_yield", ParamSpec::Type::kBool, "true", 0, 0,
           "the saver yields its core between chunks, so a woken writer never waits for a time slice"},
          {"fault_sched", ParamSpec::Type::kString, "auto", 0, 0,
           "fault thread scheduling: auto (fifo for poll/read, normal for spin), normal, fifo (SCHED_FIFO; "
           "never for spin), idle (SCHED_IDLE); falls back to normal without permission",
           names_of(kFaultSchedNames)},
      },
      .consistency = ConsistencyPoint::kStart,
      .factory = make_strategy_of<UffdWpStrategy>,
  };
  return entry;
}

}  // namespace snap
