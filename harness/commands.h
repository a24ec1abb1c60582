// The CLI's subcommands: each file harness/cmd_*.cpp adds one to the app.
#pragma once
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace snap {

// Every add_* registers its subcommand and a callback; the callback stores its exit code in `rc`.
void add_run_command(CLI::App& app, int& rc, const std::vector<std::string>& argv);
void add_list_command(CLI::App& app, int& rc);
void add_image_command(CLI::App& app, int& rc);
void add_compare_command(CLI::App& app, int& rc);
void add_merge_command(CLI::App& app, int& rc);
void add_matrix_command(CLI::App& app, int& rc, const std::vector<std::string>& argv);
void add_machine_command(CLI::App& app, int& rc);

}  // namespace snap
