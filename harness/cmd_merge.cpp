// `snapbench merge OUT.csv IN.csv...`: joins result CSVs (e.g. shards of one matrix) into one file with
// one header, refusing inputs of another schema, and lists the inputs' provenance in OUT's sidecar.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>

#include "core/error.h"
#include "harness/commands.h"
#include "harness/compare.h"
#include "harness/csv_table.h"
#include "harness/provenance.h"

namespace snap {

namespace {

constexpr size_t kMaxDuplicateWarnings = 10;

// The one schema_version of a table ("" when it has no rows); mixed values inside one file are an error.
std::string schema_version_of(const CsvTable& t) {
  const size_t col = t.require_column("schema_version");
  std::set<std::string> versions;
  for (const auto& r : t.rows) versions.insert(r[col]);
  if (versions.size() > 1)
    throw UsageError(t.source + ": rows of several schema_version values (" + *versions.begin() + " and " +
                     *versions.rbegin() + "); it cannot be merged");
  return versions.empty() ? "" : *versions.begin();
}

// What differs between two headers, by name: columns one lacks, then columns it adds, then order.
std::string header_difference(const CsvTable& a, const CsvTable& b) {
  auto listed = [](const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "'" : ", '") + n + "'";
    return out;
  };
  std::vector<std::string> lacks, adds;
  for (const auto& c : a.columns)
    if (std::find(b.columns.begin(), b.columns.end(), c) == b.columns.end()) lacks.push_back(c);
  for (const auto& c : b.columns)
    if (std::find(a.columns.begin(), a.columns.end(), c) == a.columns.end()) adds.push_back(c);
  if (!lacks.empty() || !adds.empty())
    return (lacks.empty() ? "" : "lacks " + listed(lacks)) + (lacks.empty() || adds.empty() ? "" : "; ") +
           (adds.empty() ? "" : "has " + listed(adds));
  for (size_t i = 0; i < a.columns.size() && i < b.columns.size(); ++i)
    if (a.columns[i] != b.columns[i])
      return "column " + std::to_string(i + 1) + " is '" + b.columns[i] + "', not '" + a.columns[i] + "'";
  return "repeated columns";
}

// A run's identity: its case (the parameters compare matches on) plus seed and repetition. Two rows
// with one identity usually mean two shards ran the same cell.
std::vector<size_t> run_key_columns(const CsvTable& t) {
  std::vector<size_t> cols;
  for (const auto& c : case_key_columns())  // the inputs share one header; an older one may lack some
    if (long i = t.find_column(c); i >= 0) cols.push_back(size_t(i));
  cols.push_back(t.require_column("seed"));
  cols.push_back(t.require_column("rep"));
  return cols;
}

void warn_duplicate_runs(const std::vector<CsvTable>& inputs) {
  std::map<std::vector<std::string>, std::string> seen;  // run key -> where first seen
  size_t duplicates = 0;
  for (const auto& input : inputs) {
    const CsvTable t = with_case_columns(input);  // an older CSV's missing case columns take their old value
    const auto cols = run_key_columns(t);
    const size_t strategy = t.require_column("strategy"), rep = t.require_column("rep");
    for (size_t r = 0; r < t.rows.size(); ++r) {
      std::vector<std::string> key;
      for (size_t c : cols) key.push_back(t.rows[r][c]);
      auto [it, fresh] = seen.emplace(key, t.where(r));
      if (fresh) continue;
      if (++duplicates <= kMaxDuplicateWarnings)
        std::fprintf(stderr, "snapbench merge: warning: %s repeats the run of %s (strategy %s, rep %s); both kept\n",
                     t.where(r).c_str(), it->second.c_str(), t.rows[r][strategy].c_str(), t.rows[r][rep].c_str());
    }
  }
  if (duplicates > kMaxDuplicateWarnings)
    std::fprintf(stderr, "snapbench merge: warning: %zu more repeated runs not shown\n",
                 duplicates - kMaxDuplicateWarnings);
}

// OUT's sidecar: {"merged_from": [{"csv": IN, "meta": IN's sidecar or null}, ...]}, written when at
// least one input has a sidecar (an old OUT sidecar is removed otherwise, so it cannot mislead).
void merge_sidecars(const std::string& out, const std::vector<std::string>& inputs) {
  nlohmann::json merged = nlohmann::json::array();
  bool any = false;
  for (const auto& in : inputs) {
    nlohmann::json entry = {{"csv", in}, {"meta", nullptr}};
    const std::string meta = meta_path_for(in);
    if (std::filesystem::exists(meta)) {
      std::ifstream f(meta);
      try {
        entry["meta"] = nlohmann::json::parse(f);
        any = true;
      } catch (const nlohmann::json::exception& e) {
        std::fprintf(stderr, "snapbench merge: warning: %s is not valid JSON (%s); left out\n", meta.c_str(), e.what());
      }
    }
    merged.push_back(std::move(entry));
  }
  const std::string out_meta = meta_path_for(out);
  if (any) write_json(out_meta, nlohmann::json{{"merged_from", merged}});
  else std::filesystem::remove(out_meta);
}

}  // namespace

void add_merge_command(CLI::App& app, int& rc) {
  auto* cmd = app.add_subcommand(
      "merge", "join result CSVs (e.g. shards of one matrix) into OUT: one header, every row; inputs must share "
               "the header and schema_version; repeated runs are kept with a warning");
  struct Opts {
    std::string out;
    std::vector<std::string> inputs;
    bool force = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("OUT", o->out, "the merged CSV to write (and OUT.meta.json listing the inputs' sidecars)")->required();
  cmd->add_option("INPUTS", o->inputs, "result CSVs to join")->required();
  cmd->add_flag("-f,--force", o->force, "replace OUT if it exists");
  cmd->callback([o, &rc]() {
    if (std::filesystem::exists(o->out) && !o->force)
      throw UsageError("merge: " + o->out + " already exists (pass --force to replace it)");
    std::vector<CsvTable> inputs;
    for (const auto& in : o->inputs) inputs.push_back(read_csv_table(in));

    // Schema first: a different version explains a different header better than the header does.
    std::string version;
    const CsvTable* version_from = nullptr;
    for (const auto& t : inputs) {
      std::string v = schema_version_of(t);
      if (v.empty()) continue;
      if (!version_from) {
        version = v;
        version_from = &t;
      } else if (v != version) {
        throw UsageError("merge: schema_version mismatch: " + version_from->source + " has " + version + ", " +
                         t.source + " has " + v + " (merge only results of one schema; re-run the older ones)");
      }
    }
    for (const auto& t : inputs)
      if (t.columns != inputs.front().columns)
        throw UsageError("merge: " + t.source + ": header differs from " + inputs.front().source + "'s (" +
                         header_difference(inputs.front(), t) + ")");
    warn_duplicate_runs(inputs);

    CsvTable merged;
    merged.columns = inputs.front().columns;
    for (auto& t : inputs)
      for (auto& r : t.rows) merged.rows.push_back(std::move(r));
    // Write aside and rename, so OUT is never half written (and an input named as OUT survives).
    const std::string tmp = o->out + ".tmp";
    {
      std::ofstream f(tmp, std::ios::trunc | std::ios::binary);
      if (!f) throw UsageError("merge: cannot write " + o->out + ": " + std::strerror(errno));
      f << format_csv_table(merged);
      f.flush();
      if (!f) throw std::runtime_error("writing " + tmp + " failed");
    }
    std::filesystem::rename(tmp, o->out);
    merge_sidecars(o->out, o->inputs);
    std::printf("merged %zu rows from %zu files into %s\n", merged.rows.size(), inputs.size(), o->out.c_str());
    rc = 0;
  });
}

}  // namespace snap
