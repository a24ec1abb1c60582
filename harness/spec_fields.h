// The run-spec fields, declared once: key, CLI flag, help, parsing with bounds, and the CSV column
// (name, meaning, value, what an older CSV without it meant); the default is RunSpec{}'s. The flags
// of `run`, the matrix keys, `snapbench columns` and a case's identity (resume, compare, merge) are
// derived from this table: a new field is its RunSpec member, an entry here and, if it has a column,
// one spec_column() line placing it in harness/csv.cpp (a missing one is an error at start-up).
#pragma once
#include <string>
#include <vector>

#include "harness/run.h"

namespace snap {

struct SpecField {
  std::string key = {};     // matrix (TOML) key
  std::string flag = {};    // `run` flag
  bool identity = true;     // part of a case's identity (seed is part of a run's identity only)
  bool is_switch = false;   // a flag without a value (--fsync); true/false in a matrix
  std::string help = {};    // the flag's help (`run --help`); its default is show(RunSpec{})
  // Parses `text` into the spec, checking its bounds; throws UsageError naming `where` (the flag,
  // or the spec file and key).
  void (*apply)(RunSpec& spec, const std::string& text, const std::string& where) = nullptr;
  // The field's value as text that apply() reads back (the CLI's shown default).
  std::string (*show)(const RunSpec& spec) = nullptr;
  // The CSV column that records the field (harness/csv.cpp places it among the others), its
  // meaning for `snapbench columns`, and its value in a run's row.
  std::string column = {};
  std::string column_help = {};
  std::string (*column_value)(const RunResult& r) = nullptr;
  // For a column added after schema 1: the value every run of an older CSV had ("" when it is not
  // known, as fsync and verify before schema 3); null for a column every schema has.
  const char* old_value = nullptr;
};

// In the order of a case's identity and of `run --help`.
const std::vector<SpecField>& spec_fields();
const SpecField* find_spec_field(const std::string& key);

// Checks every field of a spec built in code against the same bounds (show, then apply), naming
// the field's flag: a value the CLI or a matrix could not have produced is refused the same way.
void check_spec_fields(const RunSpec& spec);

}  // namespace snap
