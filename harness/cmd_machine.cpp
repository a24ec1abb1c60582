// `snapbench machine`: measures the machine profile, prints it as a table, optionally writes it as
// JSON, and refreshes the per-boot cache that matrices read.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "core/error.h"
#include "harness/commands.h"
#include "harness/machine_cache.h"
#include "harness/machine_profile.h"
#include "harness/provenance.h"

namespace snap {

void add_machine_command(CLI::App& app, int& rc) {
  auto* cmd = app.add_subcommand(
      "machine",
      "measure this machine's snapshot primitives in about 10 s (memcpy, first touch, write-protect faults, "
      "un-protect, first writes, PAGEMAP_SCAN, fork, fdatasync; /dev/kvm, QEMU and kernel features) and refresh the "
      "per-boot cache that matrices read");
  struct Opts {
    std::string json, dir;
    bool quick = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--json", o->json,
                  "also write the profile as JSON to FILE (schema and keys: README \"The machine profile\"); "
                  "'-' writes it to stdout instead of the table")
      ->type_name("FILE|-");
  cmd->add_flag("--quick", o->quick, "smaller sizes and fewer samples: about 1-2 s (for tests; cached apart)");
  cmd->add_option("--dir", o->dir, "directory of the fdatasync'd temporary file (default: the system temp dir)")
      ->type_name("DIR");
  cmd->callback([o, &rc]() {
    if (!o->dir.empty() && !std::filesystem::is_directory(o->dir))
      throw UsageError("--dir: " + o->dir + " is not a directory");
    ProfileOptions opts;
    opts.quick = o->quick;
    opts.dir = o->dir;
    const nlohmann::json profile = measure_machine_profile(opts);
    if (o->json == "-")
      std::cout << profile.dump(2) << "\n";
    else
      std::cout << format_machine_profile(profile);
    if (!o->json.empty() && o->json != "-") write_json(o->json, profile);
    if (const std::string why = store_machine_profile(profile); !why.empty())
      std::fprintf(stderr, "snapbench machine: note: profile not cached: %s\n", why.c_str());
    rc = 0;
  });
}

}  // namespace snap
