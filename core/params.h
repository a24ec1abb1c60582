// Typed parameters declared next to the unit that uses them (name, type, default, bounds, help),
// set from the CLI with --set UNIT.PARAM=VALUE and listed by `snapbench list`.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace snap {

struct ParamSpec {
  enum class Type { kInt, kDouble, kBool, kString };
  ParamSpec() = default;
  // A constructor rather than aggregate init, so `choices` may be left out of brace lists.
  ParamSpec(std::string n, Type t, std::string def, double lo, double hi, std::string h,
            std::vector<std::string> allowed = {})
      : name(std::move(n)), type(t), default_value(std::move(def)), min(lo), max(hi), help(std::move(h)),
        choices(std::move(allowed)) {}
  std::string name;  // without the unit prefix, e.g. "chunk_pages"
  Type type = Type::kInt;
  std::string default_value;
  double min = 0, max = 0;  // inclusive bounds for numbers, enforced when min < max
  std::string help;
  std::vector<std::string> choices;  // kString: the allowed values (empty = any)
};

// "integer", "number", "bool" or "string", for messages and listings.
const char* param_type_name(ParamSpec::Type t);

// Values for one unit (strategy, tracker, workload pattern), after validation against its specs.
class ParamValues {
 public:
  ParamValues() = default;
  // Validates `raw` (name -> text) against `specs`; unknown names, bad types and out-of-range values
  // throw UsageError naming `unit.name`. Missing names take their defaults.
  ParamValues(const std::string& unit, const std::vector<ParamSpec>& specs,
              const std::map<std::string, std::string>& raw);
  int64_t get_int(const std::string& name) const;
  double get_double(const std::string& name) const;
  bool get_bool(const std::string& name) const;
  const std::string& get_string(const std::string& name) const;
  // "name=value;..." of every value, for the CSV's params column.
  std::string describe() const;

 private:
  std::string unit_;
  std::map<std::string, std::string> values_;
};

// All --set assignments split by unit: {"uffd-wp": {"chunk_pages": "64"}}.
using ParamAssignments = std::map<std::string, std::map<std::string, std::string>>;
// Parses "UNIT.PARAM=VALUE" into `out`; throws UsageError on a malformed assignment.
void parse_assignment(const std::string& text, ParamAssignments& out);

}  // namespace snap
