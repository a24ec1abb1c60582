// `snapbench run`: one configuration, --reps times; a summary per run on stdout, rows to --out.
#include <unistd.h>

#include <cstdio>
#include <map>
#include <memory>

#include "core/error.h"
#include "core/run_stop.h"
#include "core/units.h"
#include "harness/commands.h"
#include "harness/csv.h"
#include "harness/interrupt.h"
#include "harness/provenance.h"
#include "harness/spec_fields.h"
#include "harness/run.h"
#include "harness/run_limits.h"
#include "harness/summary.h"

namespace snap {

void add_run_command(CLI::App& app, int& rc, const std::vector<std::string>& argv) {
  auto* cmd = app.add_subcommand("run", "take snapshots of one configuration (--reps times) and report them");
  struct Opts {
    std::map<std::string, std::string> values;  // spec field key -> text as given
    std::map<std::string, bool> switches;
    int reps = 1;
    std::string image, out;
    std::vector<std::string> sets;
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  // The spec's flags come from the field table (harness/spec_fields.cpp): parsed, bounded and
  // documented there, the same way a matrix spec's keys are.
  const RunSpec defaults;
  for (const auto& f : spec_fields()) {
    if (f.is_switch)
      cmd->add_flag(f.flag, o->switches[f.key], f.help);
    else
      cmd->add_option(f.flag, o->values[f.key], f.help)->default_str(f.show(defaults));
  }
  cmd->add_option("--reps", o->reps, "repetitions (rows) of this configuration")->capture_default_str();
  cmd->add_option("--out", o->out, "append one CSV row per run to FILE (header once); provenance goes to FILE's .meta.json");
  cmd->add_option("--image", o->image, "keep the image in PATH (the last repetition's)");
  cmd->add_option("--set", o->sets, "UNIT.PARAM=VALUE, a parameter a strategy, tracker or workload of the run declares "
                                    "(see `snapbench list`)")
      ->take_all();
  cmd->add_flag("-q,--quiet", o->quiet, "no summary on stdout");
  cmd->callback([o, cmd, &rc, argv]() {
    RunSpec spec;
    for (const auto& f : spec_fields())
      if (cmd->count(f.flag) > 0) f.apply(spec, f.is_switch ? "true" : o->values[f.key], f.flag);
    // An empty name would silently write nothing.
    if (cmd->count("--image") && o->image.empty()) throw UsageError("--image: an empty file name");
    if (cmd->count("--out") && o->out.empty()) throw UsageError("--out: an empty file name");
    spec.image_path = o->image;
    if (o->reps < 1 || o->reps > 1000000) throw UsageError("--reps: expected an integer from 1 to 1000000");
    for (const auto& s : o->sets) parse_assignment(s, spec.params);
    resolve_spec(spec);       // bad input first (exit 2), then what the run would take
    check_run_limits(spec);   // memory and time, before --out's files are created
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
      if (run_stop_sticky()) break;  // stopped by SIGTERM: not a measurement, no row
      if (csv) csv->append(r);
      if (!o->quiet) print_summary(stdout, r, rep, o->reps);
      all_ok = all_ok && r.status != RunStatus::kFailed;
    }
    rc = InterruptGuard::interrupted() ? InterruptGuard::exit_code() : all_ok ? 0 : 1;
  });
}

}  // namespace snap
