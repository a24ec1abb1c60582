// The access-pattern registry (one line per pattern) and parsing of --pattern specs.
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <stdexcept>

#include "core/error.h"
#include "workloads/pattern_kit.h"

namespace snap {

namespace {

const std::vector<PatternKind>& registry() {
  static const std::vector<PatternKind> kinds = {
      uniform_pattern_kind(),
      hotset_pattern_kind(),
      zipf_pattern_kind(),
      sequential_pattern_kind(),
  };
  return kinds;
}

std::string known_syntaxes() {
  std::string out;
  for (const auto& kind : registry()) out += (out.empty() ? "" : ", ") + kind.info.syntax;
  return out;
}

std::string number_text(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

struct ParsedSpec {
  const PatternKind* kind;
  std::vector<double> args;
};

// "name[:number]*" -> the registry entry and its checked arguments.
ParsedSpec parse_spec(const std::string& spec) {
  std::vector<std::string> fields;
  size_t start = 0;
  for (;;) {
    const size_t colon = spec.find(':', start);
    fields.push_back(spec.substr(start, colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  if (fields[0].empty()) throw UsageError("--pattern: empty pattern name (known: " + known_syntaxes() + ")");
  const PatternKind* kind = nullptr;
  for (const auto& k : registry())
    if (k.info.name == fields[0]) kind = &k;
  if (!kind) throw UsageError("--pattern: unknown pattern '" + fields[0] + "' (known: " + known_syntaxes() + ")");
  const size_t given = fields.size() - 1;
  if (given != kind->arity)
    throw UsageError("--pattern: '" + kind->info.name + "' takes " + std::to_string(kind->arity) +
                     " argument(s) (" + kind->info.syntax + "), got " + std::to_string(given) + " in '" +
                     spec + "'");
  ParsedSpec parsed{kind, {}};
  for (size_t i = 1; i < fields.size(); ++i) {
    const std::string& text = fields[i];
    char* end = nullptr;
    const double v = text.empty() ? NAN : std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(v))
      throw UsageError("--pattern: '" + text + "' is not a number in '" + spec + "' (" + kind->info.syntax + ")");
    parsed.args.push_back(v);
  }
  kind->check(parsed.args);
  return parsed;
}

}  // namespace

void check_pattern_range(const char* pattern, const char* arg, double v, double hi) {
  if (!(v > 0.0 && v <= hi))
    throw UsageError(std::string("--pattern: ") + pattern + " " + arg + " must be in (0, " + number_text(hi) +
                     "], got " + number_text(v));
}

const std::vector<PatternInfo>& pattern_kinds() {
  static const std::vector<PatternInfo> infos = [] {
    std::vector<PatternInfo> out;
    for (const auto& kind : registry()) out.push_back(kind.info);
    return out;
  }();
  return infos;
}

void check_pattern_spec(const std::string& spec) { parse_spec(spec); }

PatternPlan plan_pattern(const std::string& spec, uint64_t pages, uint64_t seed, int writer, int writers) {
  const ParsedSpec parsed = parse_spec(spec);
  if (pages == 0) throw std::invalid_argument("make_pattern: the region has no pages");
  if (writers < 1 || writer < 0 || writer >= writers)
    throw std::invalid_argument("make_pattern: writer " + std::to_string(writer) + " of " +
                                std::to_string(writers));
  return parsed.kind->plan(parsed.args, PatternContext{pages, seed, writer, writers});
}

std::unique_ptr<AccessPattern> make_pattern(const std::string& spec, uint64_t pages, uint64_t seed, int writer,
                                            int writers) {
  const PatternPlan plan = plan_pattern(spec, pages, seed, writer, writers);
  return parse_spec(spec).kind->make(plan);
}

}  // namespace snap
