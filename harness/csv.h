// The results CSV: its columns (declared once, with units and meanings), rows, and an appending writer.
#pragma once
#include <cstdio>
#include <string>
#include <vector>

#include "core/scoped.h"
#include "harness/csv_table.h"
#include "harness/run.h"

namespace snap {

constexpr int kSchemaVersion = 7;  // 2: the workload column; 3: fsync and verify; 4: host, kernel, cpu_model; 5: calib_bytes_s; 6: the restore columns; 7: accel

struct CsvColumn {
  std::string name;     // units in the name: _bytes, _s, _us, _pages_s
  std::string meaning;  // for `snapbench columns` and the README
  std::string (*value)(const RunResult&);
};

const std::vector<CsvColumn>& csv_columns();
// A number as the CSV writes it (%.9g).
std::string csv_number(double v);
std::string csv_header();
std::string csv_row(const RunResult& r);
std::string csv_escape(const std::string& field);

// The column names in order (the header, split).
std::vector<std::string> csv_columns_names();

// The columns that identify a case: the identity fields of the run-spec field table
// (harness/spec_fields.cpp) and params. compare matches runs on them, the matrix de-duplicates its
// cases on them (plus seed), --resume and merge add seed and rep.
const std::vector<std::string>& case_key_columns();
// The table with the case columns an older CSV lacks added, holding the value they meant then (a
// CSV without `workload` was written by the threads workload), so old baselines still match.
CsvTable with_case_columns(CsvTable table);
// Makes two tables comparable on a case's identity when one lacks an identity column that has no
// known old value (fsync, verify before schema 3): that column is blanked in both, so cases are
// matched without it. Returns the columns left out, for a warning.
std::vector<std::string> align_case_columns(CsvTable& a, CsvTable& b);
// The key of a run: case_key_columns() values (plus seed and rep when with_rep), joined by '|'.
std::string run_key(const RunResult& r, bool with_rep = true);

// Appends rows to a CSV file, writing the header only when the file is new or empty. Each row is
// written whole or not at all: appended, fsynced, and on any failure (a full disk, a file size limit)
// the file is truncated back to its last complete row before the error is thrown, so an interrupted
// or failed write never leaves a torn line for the next append to continue. A torn last line found
// when opening (left by a crash mid-write) is dropped, with a note on stderr. An existing file with
// another header is an error (its schema differs).
class CsvAppender {
 public:
  explicit CsvAppender(const std::string& path);
  ~CsvAppender();
  CsvAppender(const CsvAppender&) = delete;
  CsvAppender& operator=(const CsvAppender&) = delete;
  void append(const RunResult& r);
  // Bytes of a torn last line dropped when the file was opened (0: none).
  uint64_t dropped_torn_bytes() const { return dropped_; }

 private:
  void append_line(const std::string& line);

  std::string path_;
  UniqueFd fd_;
  uint64_t dropped_ = 0;
};

}  // namespace snap
