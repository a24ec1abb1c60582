// The run-spec fields, declared once: key, CLI flag, CSV column, help, parsing with bounds. The CLI
// flags of `run`, the matrix keys and a case's identity (resume, compare, merge) are all derived
// from this table, so a new field is written here and nowhere else.
#pragma once
#include <string>
#include <vector>

#include "harness/run.h"

namespace snap {

struct SpecField {
  std::string key;     // matrix (TOML) key
  std::string flag;    // `run` flag
  std::string column;  // CSV column that records the field ("" for none)
  bool identity;       // part of a case's identity (seed is part of a run's identity only)
  bool is_switch;      // a flag without a value (--fsync); true/false in a matrix
  std::string help;
  // Parses `text` into the spec, checking its bounds; throws UsageError naming `where` (the flag,
  // or the spec file and key).
  void (*apply)(RunSpec& spec, const std::string& text, const std::string& where);
  // The field's value as text that apply() reads back (the CLI's shown default).
  std::string (*show)(const RunSpec& spec);
};

// In the order of a case's identity and of `run --help`.
const std::vector<SpecField>& spec_fields();
const SpecField* find_spec_field(const std::string& key);

// Checks every field of a spec built in code against the same bounds (show, then apply), naming
// the field's flag: a value the CLI or a matrix could not have produced is refused the same way.
void check_spec_fields(const RunSpec& spec);

}  // namespace snap
