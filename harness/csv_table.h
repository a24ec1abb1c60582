// A results CSV read into memory as text (header + rows), with column lookups that name the file.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace snap {

struct CsvTable {
  std::string source;                          // the file name (or a label), for messages
  std::vector<std::string> columns;            // header, in file order
  std::vector<std::vector<std::string>> rows;  // each row has exactly columns.size() fields
  std::vector<unsigned> row_lines;             // the file line of each row, for messages

  // Index of a column, or -1 when the header lacks it.
  long find_column(const std::string& name) const;
  // Index of a column the caller cannot do without; throws UsageError
  // "SOURCE: missing required column 'NAME'".
  size_t require_column(const std::string& name) const;
  // "SOURCE line N", for messages about one row.
  std::string where(size_t row) const;
  // A cell as a number; throws UsageError naming the file, line and column when it is not one.
  double number(size_t row, size_t column) const;
};

// Reads a CSV file (RFC 4180 quoting, one record per line, blank lines skipped). Throws UsageError
// when the file cannot be opened, has no header, or has a row with an unclosed quote or the wrong
// number of fields (naming the file and line).
CsvTable read_csv_table(const std::string& path);
// The same from text in memory; `source` names it in messages.
CsvTable parse_csv_table(const std::string& source, const std::string& text);

// The table as CSV text: header line, then one line per row, fields quoted as csv_escape does.
std::string format_csv_table(const CsvTable& table);

}  // namespace snap
