// `snapbench merge OUT.csv IN.csv...`: joins result CSVs (e.g. shards of one matrix) into one file with
// one header, refusing inputs of another schema or shards of another spec, and lists the inputs'
// provenance in OUT's sidecar.
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
#include "harness/machines.h"
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

// An input's sidecar: X.meta.json beside X.csv, or DIR/meta.json for a matrix's DIR/results.csv.
std::string sidecar_of(const std::string& csv) {
  const std::string beside = meta_path_for(csv);
  if (std::filesystem::exists(beside)) return beside;
  const std::filesystem::path p(csv);
  if (p.filename() == "results.csv") {
    const std::string matrix_meta = (p.parent_path() / "meta.json").string();
    if (std::filesystem::exists(matrix_meta)) return matrix_meta;
  }
  return "";
}

// Every input's sidecar, parsed (null when it has none or it is not valid JSON).
std::vector<nlohmann::json> read_sidecars(const std::vector<std::string>& inputs) {
  std::vector<nlohmann::json> metas;
  for (const auto& in : inputs) {
    nlohmann::json meta = nullptr;
    const std::string path = sidecar_of(in);
    if (!path.empty()) {
      std::ifstream f(path);
      try {
        meta = nlohmann::json::parse(f);
      } catch (const nlohmann::json::exception& e) {
        std::fprintf(stderr, "snapbench merge: warning: %s is not valid JSON (%s); left out\n", path.c_str(), e.what());
      }
    }
    metas.push_back(std::move(meta));
  }
  return metas;
}

std::string matrix_field(const nlohmann::json& meta, const char* key) {
  if (!meta.is_object() || !meta.contains("matrix") || !meta["matrix"].is_object()) return "";
  const auto& m = meta["matrix"];
  return m.contains(key) && m[key].is_string() ? m[key].get<std::string>() : "";
}

// Shards of different specs (their sidecars' spec_hash), or of one spec split into different shard
// counts, must not be joined: their runs would not add up to one matrix. Returns the common hash.
std::string check_one_spec(const std::vector<std::string>& inputs, const std::vector<nlohmann::json>& metas) {
  std::string hash, hash_from, count, count_from;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string h = matrix_field(metas[i], "spec_hash");
    if (h.empty()) continue;
    if (hash.empty()) {
      hash = h;
      hash_from = inputs[i];
    } else if (h != hash) {
      throw UsageError("merge: " + inputs[i] + " comes from another spec than " + hash_from + " (spec_hash " + h +
                       " vs " + hash + "); merge only shards of one spec, or pass --any-spec");
    }
    const std::string shard = matrix_field(metas[i], "shard");
    const std::string n = shard.substr(shard.find('/') + 1);
    if (count.empty()) {
      count = n;
      count_from = inputs[i];
    } else if (n != count) {
      throw UsageError("merge: " + inputs[i] + " is a shard of " + n + " and " + count_from + " a shard of " + count +
                       ": the same spec split differently (shards would overlap); pass --any-spec to join anyway");
    }
  }
  return hash;
}

// OUT's sidecar: {"merged_from": [{"csv": IN, "meta": IN's sidecar or null}, ...]} (plus the inputs'
// common spec_hash), written when at least one input has a sidecar (an old OUT sidecar is removed
// otherwise, so it cannot mislead).
void merge_sidecars(const std::string& out, const std::vector<std::string>& inputs,
                    const std::vector<nlohmann::json>& metas, const std::string& spec_hash) {
  nlohmann::json merged = nlohmann::json::array();
  bool any = false;
  for (size_t i = 0; i < inputs.size(); ++i) {
    merged.push_back({{"csv", inputs[i]}, {"meta", metas[i]}});
    any = any || !metas[i].is_null();
  }
  const std::string out_meta = meta_path_for(out);
  nlohmann::json j{{"merged_from", merged}};
  if (!spec_hash.empty()) j["spec_hash"] = spec_hash;
  if (any) write_json(out_meta, j);
  else std::filesystem::remove(out_meta);
}

}  // namespace

void add_merge_command(CLI::App& app, int& rc) {
  auto* cmd = app.add_subcommand(
      "merge", "join result CSVs (e.g. shards of one matrix) into OUT: one header, every row; inputs must share "
               "the header and schema_version, and shards of a matrix one spec (spec_hash in their sidecars); "
               "repeated runs are kept with a warning");
  struct Opts {
    std::string out;
    std::vector<std::string> inputs;
    bool force = false, any_spec = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("OUT", o->out, "the merged CSV to write (and OUT.meta.json listing the inputs' sidecars)")->required();
  cmd->add_option("INPUTS", o->inputs, "result CSVs to join")->required();
  cmd->add_flag("-f,--force", o->force, "replace OUT if it exists");
  cmd->add_flag("--any-spec", o->any_spec,
                "join matrix results of different specs or shard counts (refused by default: their runs do not "
                "add up to one matrix)");
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
    const auto metas = read_sidecars(o->inputs);
    const std::string spec_hash = o->any_spec ? "" : check_one_spec(o->inputs, metas);
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
    merge_sidecars(o->out, o->inputs, metas, spec_hash);
    std::printf("merged %zu rows from %zu files into %s\n", merged.rows.size(), inputs.size(), o->out.c_str());
    const auto machines = machines_in(merged);
    if (machines.size() > 1)
      std::printf("rows of %zu machines: %s (kept apart by the host, kernel and cpu_model columns: plot.py draws "
                  "each machine separately, compare --host picks one)\n",
                  machines.size(), list_machines(machines).c_str());
    rc = 0;
  });
}

}  // namespace snap
