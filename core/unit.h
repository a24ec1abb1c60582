// What every registered unit (strategy, dirty tracker, workload) shares: the Support answer of its
// probe, and the registry template that lists units by name and finds them for a flag.
#pragma once
#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace snap {

// The answer of a unit's probe: may this kernel (and this machine) run it, and if not, why not.
struct Support {
  bool supported = true;
  std::string reason;  // why not, when unsupported
  static Support yes() { return {true, ""}; }
  static Support no(std::string why) { return {false, std::move(why)}; }
};

// True when `name` is in `accepted`; an empty list accepts every name (a unit that names the
// workloads or trackers it works with lists them, one that works with all lists none).
inline bool accepts(const std::vector<std::string>& accepted, const std::string& name) {
  return accepted.empty() || std::find(accepted.begin(), accepted.end(), name) != accepted.end();
}

// An explicit registry: the entries in the order they are listed (one line per unit, in the unit
// kind's registry file). Entry needs a `name` member; lookups by an unknown name throw UsageError
// naming the flag and every known name, so no flag's help has to spell the names out.
template <class Entry>
class Registry {
 public:
  Registry(std::string flag, std::string kind, std::vector<Entry> entries)
      : flag_(std::move(flag)), kind_(std::move(kind)), entries_(std::move(entries)) {}

  auto begin() const { return entries_.begin(); }
  auto end() const { return entries_.end(); }
  size_t size() const { return entries_.size(); }
  const std::vector<Entry>& entries() const { return entries_; }

  const Entry* find(const std::string& name) const {
    for (const auto& e : entries_)
      if (e.name == name) return &e;
    return nullptr;
  }
  const Entry& get(const std::string& name) const {
    if (const Entry* e = find(name)) return *e;
    throw UsageError(flag_ + ": unknown " + kind_ + " '" + name + "' (known: " + names() + ")");
  }
  // "a, b, c" (or joined by `sep`), for messages and help texts.
  std::string names(const std::string& sep = ", ") const {
    return names_if([](const Entry&) { return true; }, sep);
  }
  // The same, of the entries whose descriptor `keep` accepts (e.g. the strategies that use a tracker).
  template <class Keep>
  std::string names_if(Keep keep, const std::string& sep = ", ") const {
    std::string out;
    for (const auto& e : entries_)
      if (keep(e)) out += (out.empty() ? "" : sep) + e.name;
    return out;
  }

 private:
  std::string flag_, kind_;
  std::vector<Entry> entries_;
};

}  // namespace snap
