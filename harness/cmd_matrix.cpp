// `snapbench matrix SPEC.toml --out DIR`: runs every case × repetition of a spec, row by row into
// DIR/results.csv (flushed), with a progress line, --resume, --shard and a clean stop on Ctrl-C.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/error.h"
#include "core/image.h"
#include "core/run_stop.h"
#include "harness/commands.h"
#include "harness/csv.h"
#include "harness/csv_table.h"
#include "harness/dir_lock.h"
#include "harness/interrupt.h"
#include "harness/machine_cache.h"
#include "harness/matrix.h"
#include "harness/provenance.h"
#include "harness/run_limits.h"
#include "harness/shard.h"

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
// A torn last line (a crash mid-write) is what the appender drops before --resume runs: --dry-run
// (which opens nothing for writing) reads the file without it, so it lists the same runs.
std::set<std::string> finished_runs(const std::string& csv, bool dry_run, bool note = true) {
  std::set<std::string> done;
  if (!std::filesystem::exists(csv) || std::filesystem::file_size(csv) == 0) return done;
  std::vector<uint8_t> bytes = read_file_bytes(csv);
  std::string text(bytes.begin(), bytes.end());
  if (dry_run && !text.empty() && text.back() != '\n') {
    const size_t keep = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
    if (note) std::fprintf(stderr, "snapbench matrix: %s: a torn last line (%zu bytes without a newline) will be dropped by "
                 "--resume, which runs its case again\n", csv.c_str(), text.size() - keep);
    text.resize(keep);
  }
  CsvTable table = parse_csv_table(csv, text);
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

// With --resume, DIR/meta.json must come from the same spec (its hash), or the rows would mix matrices.
void check_same_spec(const std::string& dir, const std::string& hash) {
  const std::string meta_path = dir + "/meta.json";
  std::ifstream in(meta_path);
  if (!in) return;
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception&) {
    return;  // unreadable: the CSV's own checks still apply
  }
  const auto* m = meta.contains("matrix") ? &meta["matrix"] : nullptr;
  if (!m || !m->contains("spec_hash") || !(*m)["spec_hash"].is_string()) return;
  const std::string old = (*m)["spec_hash"];
  if (old != hash)
    throw UsageError("--resume: " + dir + " holds runs of another spec (spec_hash " + old + ", this spec " + hash +
                     "); use another --out");
}

// Per-shard estimates for --dry-run: "shard 2/3: 4 cases, 12 runs, est 35 s".
void print_shard_estimates(const Matrix& m, int shard_i, int shard_n) {
  for (int s = 1; s <= shard_n; ++s) {
    const auto idx = shard_indices(m.cases, s, shard_n);
    double est = 0;
    for (size_t i : idx) est += estimate_run_seconds(m.cases[i].spec) * m.reps;
    std::printf("%s shard %d/%d: %zu cases, %zu runs, est %s\n", s == shard_i ? "*" : " ", s, shard_n, idx.size(),
                idx.size() * size_t(m.reps), fmt_duration(est).c_str());
  }
}

}  // namespace

void add_matrix_command(CLI::App& app, int& rc, const std::vector<std::string>& argv) {
  auto* cmd = app.add_subcommand("matrix", "run every case of a TOML matrix spec into DIR/results.csv and DIR/meta.json");
  struct Opts {
    std::string spec, out, shard = "1/1", run;
    bool resume = false, dry_run = false, quiet = false;
    std::string max_runs = std::to_string(kDefaultMaxRuns);
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("SPEC", o->spec, "matrix spec (TOML), e.g. configs/demo.toml")->required();
  cmd->add_option("--out", o->out, "output directory (created); results.csv and meta.json go there")->required();
  cmd->add_flag("--resume", o->resume, "skip runs already in DIR/results.csv (failed ones are run again)");
  cmd->add_option("--shard", o->shard, "run only shard i of N (1-based), e.g. 2/4; join shards with `snapbench merge`")
      ->capture_default_str();
  cmd->add_flag("--dry-run", o->dry_run,
                "list the runs with their estimated time (and every shard's estimate with --shard); with --resume, "
                "only the runs still to do; exits without running");
  cmd->add_option("--max-runs", o->max_runs, "refuse a spec with more runs than this (axes' product x reps)")
      ->capture_default_str();
  cmd->add_option("--run", o->run,
                  "run only repetition REP (0-based) of case CASE (0-based, in --dry-run's order), appending its row "
                  "to DIR/results.csv (a directory of the same spec); scripts/regression-check interleaves two "
                  "binaries run by run this way")
      ->type_name("CASE:REP");
  cmd->add_flag("-q,--quiet", o->quiet, "no progress line even on a terminal");
  cmd->callback([o, &rc, argv]() {
    // Read as text: CLI11 would wrap "-1" into 2^64-1 for an unsigned option.
    if (o->max_runs.empty() || o->max_runs.find_first_not_of("0123456789") != std::string::npos ||
        o->max_runs.size() > 15 || std::stoull(o->max_runs) == 0)
      throw UsageError("--max-runs: expected a whole number from 1 to 999999999999999, got '" + o->max_runs + "'");
    if (o->out.empty()) throw UsageError("--out: an empty directory name");
    Matrix m = load_matrix(o->spec, std::stoull(o->max_runs));
    int shard_i, shard_n;
    parse_shard(o->shard, shard_i, shard_n);
    std::vector<MatrixCase> cases = shard_cases(m.cases, shard_i, shard_n);
    for (const auto& s : m.skipped) std::fprintf(stderr, "snapbench matrix: %s\n", s.c_str());
    const size_t total = cases.size() * size_t(m.reps);
    const std::string hash = matrix_hash(m);
    const std::string csv_path = o->out + "/results.csv";
    // --run CASE:REP: one run of the whole matrix's case list (before sharding), appended.
    const bool single = !o->run.empty();
    size_t only_case = 0;
    int only_rep = 0;
    if (single) {
      if (shard_n != 1) throw UsageError("--run: not with --shard (it names one run of the whole matrix)");
      if (o->resume) throw UsageError("--run: not with --resume (it runs the one run it names)");
      const auto colon = o->run.find(':');
      char* end = nullptr;
      errno = 0;
      const unsigned long long k = colon == std::string::npos ? 0 : std::strtoull(o->run.c_str(), &end, 10);
      const bool k_ok = colon != std::string::npos && end == o->run.c_str() + colon && errno == 0 && colon > 0;
      const unsigned long long r = k_ok ? std::strtoull(o->run.c_str() + colon + 1, &end, 10) : 0;
      if (!k_ok || *end != '\0' || colon + 1 == o->run.size() || o->run[0] == '-' || o->run[colon + 1] == '-')
        throw UsageError("--run: expected CASE:REP (two numbers from 0), got '" + o->run + "'");
      if (k >= cases.size())
        throw UsageError("--run: case " + std::to_string(k) + " out of range (the spec has " +
                         std::to_string(cases.size()) + " cases, numbered from 0)");
      if (r >= static_cast<unsigned long long>(m.reps))
        throw UsageError("--run: repetition " + std::to_string(r) + " out of range (the spec has " +
                         std::to_string(m.reps) + " reps, numbered from 0)");
      only_case = size_t(k);
      only_rep = int(r);
      check_same_spec(o->out, hash);
    }
    if (o->resume) check_same_spec(o->out, hash);
    std::set<std::string> done;  // read here for --dry-run; a real run reads it once the appender has opened the CSV
    if (o->resume && o->dry_run) done = finished_runs(csv_path, true);
    auto is_done = [&](const MatrixCase& c, int rep) {
      RunSpec spec = c.spec;
      spec.rep = rep;
      return o->resume && done.count(run_key(resolve_spec(spec))) > 0;
    };
    if (o->dry_run) {
      double est = 0;
      size_t to_do = 0;
      std::printf("%s: %zu cases x %d reps = %zu runs (shard %d/%d), spec_hash %s\n", m.name.c_str(), cases.size(),
                  m.reps, total, shard_i, shard_n, hash.c_str());
      if (shard_n > 1) print_shard_estimates(m, shard_i, shard_n);
      for (const auto& c : cases) {
        const double one = estimate_run_seconds(c.spec);
        int left = 0;
        for (int rep = 0; rep < m.reps; ++rep) left += is_done(c, rep) ? 0 : 1;
        to_do += size_t(left);
        est += one * left;
        if (left) std::printf("  %-60s est %5.2f s x %d\n", c.label.c_str(), one, left);
      }
      // The last line is for scripts (scripts/slurm-matrix reads it): runs left and their estimate.
      std::printf("to run: %zu of %zu, est %s\n", to_do, total, fmt_duration(est).c_str());
      rc = 0;
      return;
    }
    // Every run left to do must fit the machine and its time limit before the first one starts (and
    // before anything is created in the directory).
    std::set<std::string> pre_done;
    if (o->resume && std::filesystem::exists(o->out)) pre_done = finished_runs(csv_path, true, false);
    auto with_rep = [](RunSpec spec, int rep) {
      spec.rep = rep;
      return spec;
    };
    for (int rep = 0; rep < m.reps; ++rep)
      for (size_t k = 0; k < cases.size(); ++k) {
        if (single && (k != only_case || rep != only_rep)) continue;
        if (o->resume && pre_done.count(run_key(resolve_spec(with_rep(cases[k].spec, rep))))) continue;
        try {
          check_run_limits(cases[k].spec);
        } catch (const UsageError& e) {
          throw UsageError(o->spec + ": case '" + cases[k].label + "': " + e.what());
        }
      }
    std::error_code ec;
    std::filesystem::create_directories(o->out, ec);
    if (ec) throw UsageError("--out: cannot create " + o->out + ": " + ec.message());
    // One matrix per directory at a time, or two would run (and record) the same runs.
    std::string command;
    for (const auto& a : argv) command += (command.empty() ? "" : " ") + a;
    DirLock lock(o->out, command);
    if (!o->resume && !single && std::filesystem::exists(csv_path) && std::filesystem::file_size(csv_path) > 0)
      throw UsageError("--out: " + csv_path + " exists; pass --resume to continue it or choose another directory");
    // Opened before resume reads it: the appender drops a torn last row, whose run then runs again.
    CsvAppender csv(csv_path);
    if (o->resume) done = finished_runs(csv_path, false);
    InterruptGuard guard;
    nlohmann::json meta = provenance(argv);
    meta["matrix"] = {{"spec", o->spec}, {"name", m.name}, {"cases", m.cases.size()}, {"reps", m.reps},
                      {"shard", o->shard}, {"skipped", m.skipped},
                      {"spec_hash", hash}};
    // The host's primitive costs, so the results can be read as ratios to them: from the per-boot cache,
    // or measured now (once per boot); Ctrl-C while measuring stops it (the runs then stop too).
    {
      ProfileOptions popts;
      popts.stop = [] { return InterruptGuard::interrupted(); };
      MatrixMachineProfile machine = machine_profile_for_matrix(popts);
      if (!machine.note.empty()) std::fprintf(stderr, "snapbench matrix: note: %s\n", machine.note.c_str());
      meta["machine"] = std::move(machine.profile);
    }
    write_json(o->out + "/meta.json", meta);

    const bool progress = !o->quiet && isatty(STDERR_FILENO);
    const auto t0 = std::chrono::steady_clock::now();
    size_t i = 0, ran = 0, failed = 0, skipped = 0;
    for (int rep = 0; rep < m.reps && !InterruptGuard::interrupted(); ++rep) {
      for (size_t k : shuffled_order(cases.size(), m.shuffle_seed, rep)) {
        if (InterruptGuard::interrupted()) break;
        ++i;
        RunSpec spec = cases[k].spec;
        spec.rep = rep;
        if (single && (k != only_case || rep != only_rep)) continue;
        if (is_done(cases[k], rep)) {
          ++skipped;
          continue;
        }
        double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        double eta = ran ? elapsed / double(ran) * double(total - i + 1) : -1;
        if (progress)
          std::fprintf(stderr, "\r\033[K[%zu/%zu] rep %d %s  elapsed %s ETA %s", i, total, rep + 1,
                       cases[k].label.c_str(), fmt_duration(elapsed).c_str(), fmt_duration(eta).c_str());
        RunResult r = run_once(spec);
        if (run_stop_sticky()) break;  // stopped by SIGTERM: not a measurement, no row; it runs again on --resume
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
    rc = InterruptGuard::interrupted() ? InterruptGuard::exit_code() : (failed ? 1 : 0);
  });
}

}  // namespace snap
