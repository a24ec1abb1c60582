// Validation and typed access for unit parameters (--set UNIT.PARAM=VALUE).
#include "core/params.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "core/error.h"

namespace snap {

const char* param_type_name(ParamSpec::Type t) {
  switch (t) {
    case ParamSpec::Type::kInt: return "integer";
    case ParamSpec::Type::kDouble: return "number";
    case ParamSpec::Type::kBool: return "bool";
    case ParamSpec::Type::kString: return "string";
  }
  return "?";
}

namespace {

bool parse_number(const std::string& s, bool integer, double& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  if (integer) {
    long long v = std::strtoll(s.c_str(), &end, 10);
    if (*end != '\0' || errno) return false;
    out = double(v);
  } else {
    double v = std::strtod(s.c_str(), &end);
    if (*end != '\0' || errno || !std::isfinite(v)) return false;
    out = v;
  }
  return true;
}

std::string normalise_bool(const std::string& s, bool& ok) {
  ok = true;
  if (s == "1" || s == "true" || s == "on" || s == "yes") return "true";
  if (s == "0" || s == "false" || s == "off" || s == "no") return "false";
  ok = false;
  return s;
}

}  // namespace

ParamValues::ParamValues(const std::string& unit, const std::vector<ParamSpec>& specs,
                         const std::map<std::string, std::string>& raw)
    : unit_(unit) {
  for (const auto& spec : specs) values_[spec.name] = spec.default_value;
  for (const auto& [name, text] : raw) {
    const ParamSpec* spec = nullptr;
    for (const auto& s : specs)
      if (s.name == name) spec = &s;
    std::string full = unit + "." + name;
    if (!spec) {
      std::string known;
      for (const auto& s : specs) known += (known.empty() ? "" : ", ") + s.name;
      throw UsageError("--set " + full + ": unknown parameter (" + unit + " has: " +
                       (known.empty() ? "none" : known) + ")");
    }
    std::string value = text;
    if (spec->type == ParamSpec::Type::kBool) {
      bool ok;
      value = normalise_bool(text, ok);
      if (!ok) throw UsageError("--set " + full + ": '" + text + "' is not a bool (true/false)");
    } else if (spec->type == ParamSpec::Type::kString) {
      if (!spec->choices.empty() &&
          std::find(spec->choices.begin(), spec->choices.end(), text) == spec->choices.end()) {
        std::string allowed;
        for (const auto& c : spec->choices) allowed += (allowed.empty() ? "" : "|") + c;
        throw UsageError("--set " + full + ": '" + text + "' is not one of " + allowed);
      }
    } else {
      double v;
      if (!parse_number(text, spec->type == ParamSpec::Type::kInt, v))
        throw UsageError("--set " + full + ": '" + text + "' is not a " + param_type_name(spec->type));
      if (spec->min < spec->max && (v < spec->min || v > spec->max))
        throw UsageError("--set " + full + ": " + text + " is out of range [" + std::to_string(spec->min) +
                         ", " + std::to_string(spec->max) + "]");
    }
    values_[name] = value;
  }
}

int64_t ParamValues::get_int(const std::string& name) const {
  return std::strtoll(get_string(name).c_str(), nullptr, 10);
}
double ParamValues::get_double(const std::string& name) const {
  return std::strtod(get_string(name).c_str(), nullptr);
}
bool ParamValues::get_bool(const std::string& name) const { return get_string(name) == "true"; }
const std::string& ParamValues::get_string(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) throw std::logic_error("parameter " + unit_ + "." + name + " is not declared");
  return it->second;
}

std::string ParamValues::describe() const {
  std::string out;
  for (const auto& [k, v] : values_) out += (out.empty() ? "" : ";") + unit_ + "." + k + "=" + v;
  return out;
}

void parse_assignment(const std::string& text, ParamAssignments& out) {
  auto eq = text.find('=');
  auto dot = text.find('.');
  if (eq == std::string::npos || dot == std::string::npos || dot > eq || dot == 0 || dot + 1 == eq)
    throw UsageError("--set: '" + text + "' is not UNIT.PARAM=VALUE");
  // Given twice is a mistake either way (as --mem twice is): the last one winning would hide it.
  const std::string unit = text.substr(0, dot), param = text.substr(dot + 1, eq - dot - 1);
  if (auto u = out.find(unit); u != out.end() && u->second.count(param))
    throw UsageError("--set " + unit + "." + param + ": given twice ('" + u->second[param] + "' and '" +
                     text.substr(eq + 1) + "')");
  out[unit][param] = text.substr(eq + 1);
}

}  // namespace snap
