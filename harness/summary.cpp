// Prints one run's key figures in a few aligned lines.
#include "harness/summary.h"

#include "core/units.h"

namespace snap {

void print_summary(FILE* out, const RunResult& r, int rep, int reps) {
  std::string what = r.spec.strategy + (r.tracker.empty() ? "" : "/" + r.tracker);
  if (r.spec.workload != kDefaultWorkload) what += " on " + r.spec.workload;
  std::fprintf(out, "[%d/%d] %s  mem=%s writers=%d rate=%s pattern=%s sink=%s: %s%s%s\n", rep + 1, reps,
               what.c_str(), format_bytes(double(r.region_bytes)).c_str(), r.spec.writers, r.spec.rate.c_str(),
               r.spec.pattern.c_str(), r.spec.sink.c_str(), status_name(r.status), r.reason.empty() ? "" : ": ",
               r.reason.c_str());
  if (r.status == RunStatus::kUnsupported) return;
  std::fprintf(out,
               "  image %s (%.2fx non-zero RSS %s), pages saved %llu, duplicates %llu, zero %llu\n"
               "  completion %.3f s, downtime %.3f s, freeze %.3f s, passes %llu%s, faults %llu\n"
               "  writes %llu at %.0f pages/s (before: %.0f); latency p50 %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us\n"
               "  extra memory %s, verified %s%s%s\n",
               format_bytes(double(r.image.image_bytes)).c_str(), r.image_ratio,
               format_bytes(double(r.nonzero_rss_bytes)).c_str(), (unsigned long long)r.image.pages_saved,
               (unsigned long long)r.image.duplicate_pages, (unsigned long long)r.image.zero_pages, r.completion_s,
               r.downtime_s, r.freeze_s, (unsigned long long)r.passes, r.converged ? "" : " (not converged)",
               (unsigned long long)r.faults, (unsigned long long)r.write_count, r.rate_during_pages_s,
               r.rate_before_pages_s, r.write_p50_us, r.write_p99_us, r.write_p999_us, r.write_max_us,
               format_bytes(double(r.extra_rss_bytes)).c_str(), r.verified.c_str(),
               r.verify_detail.empty() || r.verified == "pass" ? "" : ": ", r.verified == "pass" ? "" : r.verify_detail.c_str());
  std::fflush(out);
}

}  // namespace snap
