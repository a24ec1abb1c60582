// CSV columns, formatting and the flushing appender.
#include "harness/csv.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "core/fd_io.h"
#include "harness/spec_fields.h"
#include "harness/provenance.h"

namespace snap {

namespace {

std::string num(double v) { return csv_number(v); }
std::string u64(uint64_t v) { return std::to_string(v); }

// The column of a run-spec field: its name, meaning and value come from the field table
// (harness/spec_fields.cpp); a column added after schema 1 says what an older CSV without it meant.
CsvColumn spec_column(const char* key) {
  const SpecField* f = find_spec_field(key);
  if (!f || f->column.empty()) throw std::logic_error(std::string("csv: no spec field column '") + key + "'");
  std::string meaning = f->column_help;
  if (f->old_value && *f->old_value) meaning += std::string(" (a CSV without this column: ") + f->old_value + ")";
  return {f->column, meaning, f->column_value};
}

// A spec field with a column that csv_columns() does not place would vanish from the CSV silently.
std::vector<CsvColumn> with_every_spec_column(std::vector<CsvColumn> cols) {
  for (const auto& f : spec_fields())
    if (!f.column.empty() &&
        std::none_of(cols.begin(), cols.end(), [&](const CsvColumn& c) { return c.name == f.column; }))
      throw std::logic_error("csv: spec field '" + f.key + "' has column '" + f.column + "' but no place in csv_columns()");
  return cols;
}

// A restore-phase column's value: empty in a row without --restore.
std::string unless_no_restore(const RunResult& r, std::string v) { return r.spec.restore.empty() ? std::string() : v; }

}  // namespace

std::string csv_number(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}

const std::vector<CsvColumn>& csv_columns() {
  static const std::vector<CsvColumn> cols = with_every_spec_column({
      {"schema_version", "version of this column set", [](const RunResult&) { return std::to_string(kSchemaVersion); }},
      spec_column("strategy"),
      spec_column("tracker"),
      spec_column("workload"),
      {"accel", "qemu workload: the accelerator QEMU ran with, kvm or tcg (under TCG every time, rate and latency is an emulated CPU's); empty for the other workloads (a CSV without this column: empty)", [](const RunResult& r) { return r.accel; }},
      spec_column("pattern"),
      spec_column("writers"),
      spec_column("mem"),
      spec_column("populate"),
      spec_column("thp"),
      spec_column("numa_node"),
      spec_column("rate"),
      {"rate_target_pages_s", "target write rate in pages/s over all writers (-1: max)", [](const RunResult& r) { return num(r.rate_target_pages_s); }},
      {"rate_before_pages_s", "achieved write rate during the warm-up, pages/s", [](const RunResult& r) { return num(r.rate_before_pages_s); }},
      {"rate_during_pages_s", "achieved write rate while the snapshot ran, pages/s", [](const RunResult& r) { return num(r.rate_during_pages_s); }},
      spec_column("sink"),
      spec_column("bandwidth"),
      spec_column("warmup"),
      spec_column("fsync"),
      spec_column("verify"),
      spec_column("seed"),
      {"rep", "repetition index (0-based)", [](const RunResult& r) { return std::to_string(r.spec.rep); }},
      {"status", "ok | unsupported | failed", [](const RunResult& r) { return std::string(status_name(r.status)); }},
      {"reason", "why unsupported or failed (empty when ok)", [](const RunResult& r) { return r.reason; }},
      {"params", "resolved strategy and tracker parameters (unit.param=value;...)", [](const RunResult& r) { return r.params; }},
      {"image_bytes", "bytes of the image stream (header, records, trailer); for a failed run, the bytes the sink took before the failure", [](const RunResult& r) { return u64(r.image.image_bytes); }},
      {"nonzero_rss_bytes", "non-zero pages x page size: at the consistency point with --verify, else at the end of the run", [](const RunResult& r) { return u64(r.nonzero_rss_bytes); }},
      {"pages_saved", "page records written (including zero records and duplicates)", [](const RunResult& r) { return u64(r.image.pages_saved); }},
      {"unique_pages", "distinct pages written to the image", [](const RunResult& r) { return u64(r.image.unique_pages); }},
      {"duplicate_pages", "records for pages already saved (pages_saved - unique_pages)", [](const RunResult& r) { return u64(r.image.duplicate_pages); }},
      {"zero_pages", "records written as zero pages (flag, no data)", [](const RunResult& r) { return u64(r.image.zero_pages); }},
      {"image_ratio", "image_bytes / nonzero_rss_bytes (the seed's claim: precopy several times 1)", [](const RunResult& r) { return num(r.image_ratio); }},
      {"completion_s", "wall time of the whole snapshot, from its start until the image is finished", [](const RunResult& r) { return num(r.completion_s); }},
      {"downtime_s", "time the writers were held paused (verify reference copy excluded)", [](const RunResult& r) { return num(r.downtime_s); }},
      {"freeze_s", "time of the freeze primitive inside the pause (fork(), write-protect, tracker arming)", [](const RunResult& r) { return num(r.freeze_s); }},
      {"calib_bytes_s", "same-run calibration: bytes/s at which the region's resident pages (up to 64 MiB) were saved into an uncapped null sink just before the snapshot, writers running (0: not measured, e.g. none); compare judges times relative to it", [](const RunResult& r) { return num(r.calib_bytes_s); }},
      {"passes", "passes over memory (precopy: iterations including the final stop-and-copy)", [](const RunResult& r) { return u64(r.passes); }},
      {"converged", "precopy: 1 if the dirty set fit the downtime budget, 0 if it stopped on max_passes", [](const RunResult& r) { return std::string(r.converged ? "1" : "0"); }},
      {"faults", "write faults serviced by the strategy or tracker", [](const RunResult& r) { return u64(r.faults); }},
      {"writes_during", "writes done while the snapshot ran", [](const RunResult& r) { return u64(r.write_count); }},
      {"write_p50_us", "median write latency during the snapshot, microseconds (includes fault stalls)", [](const RunResult& r) { return num(r.write_p50_us); }},
      {"write_p99_us", "99th percentile write latency during the snapshot, microseconds", [](const RunResult& r) { return num(r.write_p99_us); }},
      {"write_p999_us", "99.9th percentile write latency during the snapshot, microseconds", [](const RunResult& r) { return num(r.write_p999_us); }},
      {"write_max_us", "maximum write latency during the snapshot, microseconds", [](const RunResult& r) { return num(r.write_max_us); }},
      {"write_before_p99_us", "99th percentile write latency during the warm-up, microseconds", [](const RunResult& r) { return num(r.write_before_p99_us); }},
      {"extra_rss_bytes", "memory the strategy added (fork: copy-on-write copies; uffd-wp: copy-aside buffers)", [](const RunResult& r) { return u64(r.extra_rss_bytes); }},
      {"verified", "pass | fail | off: image compared byte for byte with the region at the consistency point; off when --verify was not given or the run failed before its image was finished (nothing to verify)", [](const RunResult& r) { return r.verified; }},
      {"notes", "strategy-specific facts (key=value;...), e.g. wp_unpopulated", [](const RunResult& r) { return r.notes; }},
      // The machine that ran the row (the process writing it): merged results of several machines stay apart.
      {"host", "host name of the machine that ran the run", [](const RunResult&) { return this_machine().host; }},
      {"kernel", "kernel release of that machine (uname -r)", [](const RunResult&) { return this_machine().kernel; }},
      {"cpu_model", "CPU model of that machine (/proc/cpuinfo model name)", [](const RunResult&) { return this_machine().cpu_model; }},
      // Schema 6: the restore phase (`run --restore`), every column empty in a snapshot-only row.
      spec_column("restore"),
      spec_column("restore_access"),
      spec_column("restore_cache"),
      spec_column("restore_window"),
      {"restore_index_s", "seconds to build the image's page index (one checked pass over the file), before the restore", [](const RunResult& r) { return unless_no_restore(r, num(r.restore_index_s)); }},
      {"resume_s", "seconds from the restore's start until the workload may run", [](const RunResult& r) { return unless_no_restore(r, num(r.resume_s)); }},
      {"ready_s", "seconds from the restore's start until the workload's rate (50 ms mean) is back to 90 % of its rate on resident memory; empty if not within the window", [](const RunResult& r) { return unless_no_restore(r, r.ready_s < 0 ? std::string() : num(r.ready_s)); }},
      {"resident_s", "seconds from the restore's start until every page was in the region; empty if not within the window", [](const RunResult& r) { return unless_no_restore(r, r.resident_s < 0 ? std::string() : num(r.resident_s)); }},
      {"restore_faults", "faults served in the window (uffd: MISSING faults answered; mmap: the process's page faults)", [](const RunResult& r) { return unless_no_restore(r, u64(r.restore_faults)); }},
      {"restore_read_bytes", "bytes read from the image in the window and before it (mmap: pages mapped from the flat file x page size)", [](const RunResult& r) { return unless_no_restore(r, u64(r.restore_read_bytes)); }},
      {"access_p50_us", "median access latency of the workload during the restore window, microseconds", [](const RunResult& r) { return unless_no_restore(r, num(r.access_p50_us)); }},
      {"access_p99_us", "99th percentile access latency during the restore window, microseconds", [](const RunResult& r) { return unless_no_restore(r, num(r.access_p99_us)); }},
      {"access_p999_us", "99.9th percentile access latency during the restore window, microseconds", [](const RunResult& r) { return unless_no_restore(r, num(r.access_p999_us)); }},
      {"access_max_us", "maximum access latency during the restore window, microseconds", [](const RunResult& r) { return unless_no_restore(r, num(r.access_max_us)); }},
      {"restore_ops_s", "accesses per second over the restore window (all threads)", [](const RunResult& r) { return unless_no_restore(r, num(r.restore_ops_s)); }},
      {"resident_ops_s", "accesses per second of the same workload on the restored, resident memory (ready_s's reference)", [](const RunResult& r) { return unless_no_restore(r, num(r.resident_ops_s)); }},
      {"restore_extra_bytes", "memory the restore strategy added (buffers, bitmaps, its page index)", [](const RunResult& r) { return unless_no_restore(r, u64(r.restore_extra_bytes)); }},
      {"restore_verified", "pass | fail | off: pages read before written and pages never written compared with the image byte for byte; off when the restore failed", [](const RunResult& r) { return unless_no_restore(r, r.restore_verified); }},
  });
  return cols;
}

std::string csv_escape(const std::string& field) {
  if (field.find_first_of(",\"\n\r") == std::string::npos) return field;
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += (c == '\n' || c == '\r') ? ' ' : c;
  }
  return out + "\"";
}

std::vector<std::string> csv_columns_names() {
  std::vector<std::string> names;
  for (const auto& c : csv_columns()) names.push_back(c.name);
  return names;
}

const std::vector<std::string>& case_key_columns() {
  static const std::vector<std::string> cols = [] {
    std::vector<std::string> out;
    for (const auto& f : spec_fields())
      if (f.identity) out.push_back(f.column);
    out.push_back("params");
    return out;
  }();
  return cols;
}

namespace {

// The case columns added after schema 1, with the value every run of an older CSV had ("" when it
// is not known: such a column is left out when only one of two tables has it), from the field table.
struct LaterColumn {
  std::string name;
  const char* old_value;
};
std::vector<LaterColumn> later_case_columns() {
  std::vector<LaterColumn> out;
  for (const auto& f : spec_fields())
    if (f.identity && f.old_value) out.push_back({f.column, f.old_value});
  return out;
}

}  // namespace

CsvTable with_case_columns(CsvTable table) {
  for (const auto& [name, value] : later_case_columns()) {
    if (table.find_column(name) >= 0 || *value == '\0') continue;
    table.columns.push_back(name);
    for (auto& row : table.rows) row.push_back(value);
  }
  return table;
}

std::vector<std::string> align_case_columns(CsvTable& a, CsvTable& b) {
  std::vector<std::string> left_out;
  for (const auto& [name, value] : later_case_columns()) {
    const bool in_a = a.find_column(name) >= 0, in_b = b.find_column(name) >= 0;
    if (in_a && in_b) continue;
    if (in_a || in_b) left_out.push_back(name);  // neither: two older tables, nothing is lost
    for (CsvTable* t : {&a, &b}) {
      const long c = t->find_column(name);
      if (c < 0) {
        t->columns.push_back(name);
        for (auto& row : t->rows) row.emplace_back();
      } else {
        for (auto& row : t->rows) row[size_t(c)].clear();
      }
    }
  }
  return left_out;
}

std::string run_key(const RunResult& r, bool with_rep) {
  std::string key;
  for (const auto& name : case_key_columns())
    for (const auto& c : csv_columns())
      if (c.name == name) key += c.value(r) + "|";
  if (with_rep) key += std::to_string(r.spec.seed) + "|" + std::to_string(r.spec.rep);
  return key;
}

std::string csv_header() {
  std::string out;
  for (const auto& c : csv_columns()) out += (out.empty() ? "" : ",") + c.name;
  return out;
}

std::string csv_row(const RunResult& r) {
  std::string out;
  bool first = true;
  for (const auto& c : csv_columns()) {
    if (!first) out += ',';
    first = false;
    out += csv_escape(c.value(r));
  }
  return out;
}

CsvAppender::CsvAppender(const std::string& path) : path_(path) {
  // O_APPEND: every row goes to the end even if something else appended meanwhile.
  // Owned at once: a refused file (another header) is closed when the constructor throws.
  fd_.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!fd_) throw UsageError("--out: cannot open " + path + ": " + std::strerror(errno));
  struct stat st;
  if (fstat(fd_.get(), &st) != 0) throw_errno("--out: " + path);
  std::string text(size_t(st.st_size), '\0');
  for (size_t got = 0; got < text.size();) {
    const ssize_t r = ::pread(fd_.get(), text.data() + got, text.size() - got, off_t(got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) throw_errno("--out: cannot read " + path);
    got += size_t(r);
  }
  // A last line without its newline is a row (or header) whose write was cut off: drop it.
  if (!text.empty() && text.back() != '\n') {
    const size_t keep = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
    if (::ftruncate(fd_.get(), off_t(keep)) != 0) throw_errno("--out: cannot drop the torn last line of " + path);
    dropped_ = text.size() - keep;
    text.resize(keep);
    std::fprintf(stderr, "snapbench: %s: dropped a torn last line (%llu bytes without a newline, left by an "
                 "interrupted write)\n", path.c_str(), (unsigned long long)dropped_);
  }
  const std::string existing_header = text.substr(0, text.find('\n'));
  if (!existing_header.empty() && existing_header != csv_header())
    throw UsageError("--out: " + path + " already holds a CSV with other columns (another schema_version?); "
                     "choose a new file");
  if (existing_header.empty()) append_line(csv_header() + "\n");
}

CsvAppender::~CsvAppender() = default;

void CsvAppender::append_line(const std::string& line) {
  const off_t start = ::lseek(fd_.get(), 0, SEEK_END);
  if (start < 0) throw_errno("writing " + path_);
  auto undo = [&](const char* what, int err) {
    // Back to the last complete row; a truncation never needs space, so it works on a full disk.
    const bool cut = ::ftruncate(fd_.get(), start) == 0;
    throw std::runtime_error("writing " + path_ + ": " + what + ": " + std::strerror(err) +
                             (cut ? " (the row was not written; the file ends at its last complete row)"
                                  : " (and truncating it back failed: its last line is torn)"));
  };
  if (const int err = write_all(fd_.get(), line.data(), line.size())) undo("write", err);
  if (::fsync(fd_.get()) != 0) undo("fsync", errno);
}

void CsvAppender::append(const RunResult& r) { append_line(csv_row(r) + "\n"); }

}  // namespace snap
