// snapbench's entry point: parses the subcommand and maps errors to exit codes (2 = bad input).
#include <cstdio>
#include <exception>

#include "core/error.h"
#include "harness/commands.h"
#include "strategies/strategy.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  // The strategies that take a snapshot (`none` is the baseline), from the registry.
  const std::string strategies =
      snap::strategy_registry().names_if([](const snap::StrategyEntry& e) { return e.produces_image; });
  CLI::App app{
      "snapbench: compares live memory snapshot strategies (" + strategies + ")\n"
      "on synthetic writers, measuring image size, duplicates, completion time, downtime, writer\n"
      "latency and extra memory, and verifying every image byte for byte.",
      "snapbench"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "help for every subcommand");
  int rc = 0;
  snap::add_run_command(app, rc, args);
  snap::add_list_command(app, rc);
  snap::add_image_command(app, rc);
  snap::add_compare_command(app, rc);
  snap::add_merge_command(app, rc);
  snap::add_matrix_command(app, rc, args);
  snap::add_machine_command(app, rc);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // CLI11 says only "A subcommand is required" for `snapbench image bogus`: name the word it did not know.
    if (argc > 2 && argv[2][0] != '-') {
      auto find = [](const CLI::App* parent, const std::string& name) -> const CLI::App* {
        for (const CLI::App* sub : parent->get_subcommands({}))
          if (sub->check_name(name)) return sub;
        return nullptr;
      };
      if (const CLI::App* cmd = find(&app, argv[1]); cmd && !cmd->get_subcommands({}).empty() && !find(cmd, argv[2])) {
        std::string known;
        for (const CLI::App* sub : cmd->get_subcommands({})) known += (known.empty() ? "" : ", ") + sub->get_name();
        std::fprintf(stderr, "snapbench %s: unknown subcommand '%s' (expected %s)\n", argv[1], argv[2], known.c_str());
        return 2;
      }
    }
    std::fprintf(stderr, "snapbench: %s (see --help)\n", e.what());
    return 2;
  } catch (const snap::UsageError& e) {
    std::fprintf(stderr, "snapbench: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "snapbench: error: %s\n", e.what());
    return 1;
  }
  return rc;
}
