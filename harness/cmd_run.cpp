// `snapbench run`: one configuration, --reps times; a summary per run on stdout, rows to --out.
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "core/error.h"
#include "core/units.h"
#include "harness/commands.h"
#include "harness/csv.h"
#include "harness/interrupt.h"
#include "harness/provenance.h"
#include "harness/run.h"
#include "harness/summary.h"

namespace snap {

void add_run_command(CLI::App& app, int& rc, const std::vector<std::string>& argv) {
  auto* cmd = app.add_subcommand("run", "take snapshots of one configuration (--reps times) and report them");
  struct Opts {
    RunSpec spec;
    std::string mem = "256M";
    std::string thp = "off";
    int reps = 1;
    std::string out;
    std::vector<std::string> sets;
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--strategy", o->spec.strategy, "none | stop-copy | precopy | uffd-wp | fork-cow (see `snapbench list`)")
      ->capture_default_str();
  cmd->add_option("--tracker", o->spec.tracker, "precopy's dirty tracker: uffd-async (default) | mprotect | soft-dirty");
  cmd->add_option("--workload", o->spec.workload, "what writes the region while the snapshot runs (see `snapbench list`)")
      ->capture_default_str();
  cmd->add_option("--mem", o->mem, "region size: 4096, 64M, 1G, 1GiB...")->capture_default_str();
  cmd->add_option("--populate", o->spec.populate, "fraction of pages filled before the run (0..1); the rest is never touched")
      ->capture_default_str();
  cmd->add_option("--thp", o->thp, "transparent huge pages on the region: on | off")->capture_default_str();
  cmd->add_option("--numa-node", o->spec.numa_node, "bind the region and the writers to this NUMA node (-1: no binding)")
      ->capture_default_str();
  cmd->add_option("--writers", o->spec.writers, "writer threads")->capture_default_str();
  cmd->add_option("--rate", o->spec.rate, "total write rate: 0 (idle), max, 100MiB/s, 20000pages/s")->capture_default_str();
  cmd->add_option("--pattern", o->spec.pattern, "uniform | hotset:HOT_FRACTION:WRITE_SHARE | zipf:THETA | sequential")
      ->capture_default_str();
  cmd->add_option("--sink", o->spec.sink, "null | memory | file:PATH | exec:COMMAND | fail:N")->capture_default_str();
  cmd->add_flag("--fsync", o->spec.fsync, "file sink: fdatasync the image before the snapshot counts as complete");
  cmd->add_option("--bandwidth", o->spec.bandwidth, "cap on the save rate into the sink, e.g. 800MiB/s (0: none)")
      ->capture_default_str();
  cmd->add_option("--warmup", o->spec.warmup_s, "seconds the writers run before the snapshot starts")->capture_default_str();
  cmd->add_option("--reps", o->reps, "repetitions (rows) of this configuration")->capture_default_str();
  cmd->add_option("--seed", o->spec.seed, "seed of region content and access pattern")->capture_default_str();
  cmd->add_flag("--verify", o->spec.verify, "copy the region at the consistency point and compare the image byte for byte");
  cmd->add_option("--out", o->out, "append one CSV row per run to FILE (header once); provenance goes to FILE's .meta.json");
  cmd->add_option("--image", o->spec.image_path, "keep the image in PATH (the last repetition's)");
  cmd->add_option("--set", o->sets, "UNIT.PARAM=VALUE, a parameter a strategy or tracker declares (see `snapbench list`)")
      ->take_all();
  cmd->add_flag("-q,--quiet", o->quiet, "no summary on stdout");
  cmd->callback([o, &rc, argv]() {
    RunSpec spec = o->spec;
    spec.mem_bytes = parse_size(o->mem, "--mem");
    if (o->thp != "on" && o->thp != "off") throw UsageError("--thp: expected on or off, got '" + o->thp + "'");
    spec.thp = o->thp == "on";
    if (o->reps < 1) throw UsageError("--reps: must be at least 1");
    for (const auto& s : o->sets) parse_assignment(s, spec.params);
    std::unique_ptr<CsvAppender> csv;
    if (!o->out.empty()) {
      csv = std::make_unique<CsvAppender>(o->out);
      write_json(meta_path_for(o->out), provenance(argv));
    }
    bool all_ok = true;
    InterruptGuard guard;
    for (int rep = 0; rep < o->reps && !InterruptGuard::interrupted(); ++rep) {
      spec.rep = rep;
      RunResult r = run_once(spec);
      if (csv) csv->append(r);
      if (!o->quiet) print_summary(stdout, r, rep, o->reps);
      all_ok = all_ok && r.status != RunStatus::kFailed;
    }
    rc = InterruptGuard::interrupted() ? 130 : all_ok ? 0 : 1;
  });
}

}  // namespace snap
