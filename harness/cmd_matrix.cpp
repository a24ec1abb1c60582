// `snapbench matrix SPEC.toml --out DIR`: runs every case × repetition of a spec, row by row into
// DIR/results.csv (flushed), with a progress line, --resume, --shard and a clean stop on Ctrl-C.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>

#include "core/error.h"
#include "harness/commands.h"
#include "harness/csv.h"
#include "harness/csv_table.h"
#include "harness/interrupt.h"
#include "harness/matrix.h"
#include "harness/provenance.h"

namespace snap {

namespace {

std::string fmt_duration(double s) {
  char b[32];
  if (s < 0) return "?";
  int m = int(s) / 60;
  if (m)
    std::snprintf(b, sizeof b, "%dm%02ds", m, int(s) % 60);
  else
    std::snprintf(b, sizeof b, "%.0fs", s);
  return b;
}

// Keys (case columns + seed + rep) of the rows already in a results CSV whose status is final.
std::set<std::string> finished_runs(const std::string& csv) {
  std::set<std::string> done;
  if (!std::filesystem::exists(csv) || std::filesystem::file_size(csv) == 0) return done;
  CsvTable table = read_csv_table(csv);
  if (table.columns != csv_columns_names())
    throw UsageError("--resume: " + csv + " has other columns (another schema_version); use a new --out");
  std::vector<size_t> key_idx;
  for (const auto& c : case_key_columns()) key_idx.push_back(table.require_column(c));
  const size_t seed = table.require_column("seed"), rep = table.require_column("rep"),
               status = table.require_column("status");
  for (const auto& f : table.rows) {
    if (f[status] == "failed") continue;  // failed runs are run again
    std::string key;
    for (size_t i : key_idx) key += f[i] + "|";
    done.insert(key + f[seed] + "|" + f[rep]);
  }
  return done;
}

}  // namespace

void add_matrix_command(CLI::App& app, int& rc, const std::vector<std::string>& argv) {
  auto* cmd = app.add_subcommand("matrix", "run every case of a TOML matrix spec into DIR/results.csv and DIR/meta.json");
  struct Opts {
    std::string spec, out, shard = "1/1";
    bool resume = false, dry_run = false, quiet = false;
    uint64_t max_runs = kDefaultMaxRuns;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("SPEC", o->spec, "matrix spec (TOML), e.g. configs/demo.toml")->required();
  cmd->add_option("--out", o->out, "output directory (created); results.csv and meta.json go there")->required();
  cmd->add_flag("--resume", o->resume, "skip runs already in DIR/results.csv (failed ones are run again)");
  cmd->add_option("--shard", o->shard, "run only shard i of N (1-based), e.g. 2/4; join shards with `snapbench merge`")
      ->capture_default_str();
  cmd->add_flag("--dry-run", o->dry_run, "list the runs and exit");
  cmd->add_option("--max-runs", o->max_runs, "refuse a spec with more runs than this (axes' product x reps)")
      ->capture_default_str();
  cmd->add_flag("-q,--quiet", o->quiet, "no progress line even on a terminal");
  cmd->callback([o, &rc, argv]() {
    Matrix m = load_matrix(o->spec, o->max_runs);
    int shard_i, shard_n;
    parse_shard(o->shard, shard_i, shard_n);
    std::vector<MatrixCase> cases = shard_cases(m.cases, shard_i, shard_n);
    for (const auto& s : m.skipped) std::fprintf(stderr, "snapbench matrix: %s\n", s.c_str());
    const size_t total = cases.size() * size_t(m.reps);
    if (o->dry_run) {
      std::printf("%s: %zu cases x %d reps = %zu runs (shard %d/%d)\n", m.name.c_str(), cases.size(), m.reps, total,
                  shard_i, shard_n);
      for (const auto& c : cases) std::printf("  %s\n", c.label.c_str());
      rc = 0;
      return;
    }
    std::error_code ec;
    std::filesystem::create_directories(o->out, ec);
    if (ec) throw UsageError("--out: cannot create " + o->out + ": " + ec.message());
    const std::string csv_path = o->out + "/results.csv";
    std::set<std::string> done;
    if (!o->resume && std::filesystem::exists(csv_path) && std::filesystem::file_size(csv_path) > 0)
      throw UsageError("--out: " + csv_path + " exists; pass --resume to continue it or choose another directory");
    // Opened before resume reads it: the appender drops a torn last row, whose run then runs again.
    CsvAppender csv(csv_path);
    if (o->resume) done = finished_runs(csv_path);
    nlohmann::json meta = provenance(argv);
    meta["matrix"] = {{"spec", o->spec}, {"name", m.name}, {"cases", m.cases.size()}, {"reps", m.reps},
                      {"shard", o->shard}, {"skipped", m.skipped}};
    write_json(o->out + "/meta.json", meta);

    InterruptGuard guard;
    const bool progress = !o->quiet && isatty(STDERR_FILENO);
    const auto t0 = std::chrono::steady_clock::now();
    size_t i = 0, ran = 0, failed = 0, skipped = 0;
    for (int rep = 0; rep < m.reps && !InterruptGuard::interrupted(); ++rep) {
      for (size_t k : shuffled_order(cases.size(), m.shuffle_seed, rep)) {
        if (InterruptGuard::interrupted()) break;
        ++i;
        RunSpec spec = cases[k].spec;
        spec.rep = rep;
        if (o->resume && done.count(run_key(resolve_spec(spec)))) {
          ++skipped;
          continue;
        }
        double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        double eta = ran ? elapsed / double(ran) * double(total - i + 1) : -1;
        if (progress)
          std::fprintf(stderr, "\r\033[K[%zu/%zu] rep %d %s  elapsed %s ETA %s", i, total, rep + 1,
                       cases[k].label.c_str(), fmt_duration(elapsed).c_str(), fmt_duration(eta).c_str());
        RunResult r = run_once(spec);
        csv.append(r);
        ++ran;
        if (r.status == RunStatus::kFailed) {
          ++failed;
          std::fprintf(stderr, "%srun failed: %s: %s\n", progress ? "\n" : "", cases[k].label.c_str(), r.reason.c_str());
        }
      }
    }
    double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (progress) std::fprintf(stderr, "\r\033[K");
    std::fprintf(stderr, "snapbench matrix: %zu runs done, %zu skipped (resume), %zu failed, in %s%s -> %s\n", ran,
                 skipped, failed, fmt_duration(elapsed).c_str(), InterruptGuard::interrupted() ? " (interrupted)" : "",
                 csv_path.c_str());
    rc = InterruptGuard::interrupted() ? 130 : (failed ? 1 : 0);
  });
}

}  // namespace snap
