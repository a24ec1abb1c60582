// Reads results CSVs with fast-cpp-csv-parser's line reader and quote rules into a CsvTable.
#include "harness/csv_table.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>

#include "core/error.h"
#include "harness/csv.h"

// g++ 12 warns inside this header (-Wstringop-truncation on its strncpy of file names into a fixed
// buffer, which it terminates itself): silence that one warning for this one include only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstringop-truncation"
#include <libfccp/csv.h>
#pragma GCC diagnostic pop

namespace snap {

namespace {

using Quoting = io::double_quote_escape<',', '"'>;

// Splits one line into its fields, unquoting them in place. Unescaping a quoted field moves its end
// left, so the separator's position is kept aside to continue from.
std::vector<std::string> split_line(char* line) {
  std::vector<std::string> fields;
  for (;;) {
    char* begin = line;
    char* sep = begin + (Quoting::find_next_column_end(begin) - begin);
    const bool last = *sep == '\0';
    char* end = sep;
    Quoting::unescape(begin, end);
    fields.emplace_back(begin, end);
    if (last) return fields;
    line = sep + 1;
  }
}

// The error for a bad line. When it is the file's last line and the file does not end with a newline,
// the line is a row whose write was cut off (snapbench always ends a row with one): say so, and how
// to repair it.
[[noreturn]] void bad_line(const std::string& source, io::LineReader& in, bool ends_with_newline,
                           const std::string& problem) {
  const std::string where = source + " line " + std::to_string(in.get_file_line());
  if (!ends_with_newline && in.next_line() == nullptr)
    throw UsageError(where + ": torn last row (" + problem + ", and no newline at the end of the file): a write "
                     "was cut off there; `snapbench matrix --resume` (or `run --out`) drops it, or delete that line");
  throw UsageError(where + ": " + problem);
}

CsvTable read_lines(const std::string& source, io::LineReader& in, bool ends_with_newline) {
  CsvTable t;
  t.source = source;
  char* line;
  for (;;) {
    std::vector<std::string> fields;
    try {
      if ((line = in.next_line()) == nullptr) break;
      if (*line == '\0') continue;  // blank line (e.g. a trailing one)
      fields = split_line(line);
    } catch (const io::error::escaped_string_not_closed&) {
      bad_line(source, in, ends_with_newline, "a quoted field is not closed");
    } catch (const io::error::base& e) {
      throw UsageError(source + " line " + std::to_string(in.get_file_line()) + ": " + e.what());
    }
    if (t.columns.empty()) {
      t.columns = std::move(fields);
      continue;
    }
    if (fields.size() != t.columns.size())
      bad_line(source, in, ends_with_newline,
               std::to_string(fields.size()) + " fields where the header has " + std::to_string(t.columns.size()));
    t.rows.push_back(std::move(fields));
    t.row_lines.push_back(in.get_file_line());
  }
  if (t.columns.empty()) throw UsageError(source + ": empty file, expected a CSV header");
  return t;
}

}  // namespace

long CsvTable::find_column(const std::string& name) const {
  for (size_t i = 0; i < columns.size(); ++i)
    if (columns[i] == name) return long(i);
  return -1;
}

size_t CsvTable::require_column(const std::string& name) const {
  long i = find_column(name);
  if (i < 0) throw UsageError(source + ": missing required column '" + name + "'");
  return size_t(i);
}

std::string CsvTable::where(size_t row) const {
  return source + " line " + std::to_string(row < row_lines.size() ? row_lines[row] : row + 2);
}

double CsvTable::number(size_t row, size_t column) const {
  const std::string& text = rows.at(row).at(column);
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE || std::isnan(v))
    throw UsageError(where(row) + ": column " + columns.at(column) + ": '" + text + "' is not a number");
  return v;
}

CsvTable read_csv_table(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw UsageError("cannot read " + path + ": it is a directory");
  std::unique_ptr<io::LineReader> in;
  try {
    in = std::make_unique<io::LineReader>(path);
  } catch (const io::error::can_not_open_file& e) {
    throw UsageError("cannot open " + path + ": " + std::strerror(e.errno_value));
  }
  bool ends_with_newline = true;
  if (std::FILE* f = std::fopen(path.c_str(), "rb")) {
    if (std::fseek(f, -1, SEEK_END) == 0) ends_with_newline = std::fgetc(f) == '\n';
    std::fclose(f);
  }
  return read_lines(path, *in, ends_with_newline);
}

CsvTable parse_csv_table(const std::string& source, const std::string& text) {
  io::LineReader in(source, text.data(), text.data() + text.size());
  return read_lines(source, in, !text.empty() && text.back() == '\n');
}

std::string format_csv_table(const CsvTable& table) {
  auto line = [](const std::vector<std::string>& fields) {
    std::string out;
    for (size_t i = 0; i < fields.size(); ++i) {
      if (i) out += ',';
      out += csv_escape(fields[i]);
    }
    return out + "\n";
  };
  std::string out = line(table.columns);
  for (const auto& r : table.rows) out += line(r);
  return out;
}

}  // namespace snap
