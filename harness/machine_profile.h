// The machine profile (`snapbench machine`): the primitives a snapshot strategy's cost is made of,
// measured on this machine in about 10 s, as a flat JSON object whose keys carry their units.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace snap {

// Bumped when a key is renamed, removed or changes meaning (adding a key keeps it).
inline constexpr int kMachineProfileSchema = 2;  // 2: wp_arm_us_per_page, unprotect_all_us_per_page

// A documented key of the profile. kMeasure keys hold a number, or a string "unsupported: WHY"
// (the kernel or machine lacks the primitive), "failed: WHY" (measuring it failed) or
// "not measured: interrupted". kPresence keys hold a bool and have a KEY_detail string beside them
// (what was found, or why not). kIdentity keys describe the machine and the measurement.
enum class ProfileKeyKind { kIdentity, kMeasure, kPresence };
struct ProfileKey {
  const char* key;
  const char* unit;  // "" when it has none
  ProfileKeyKind kind;
  const char* meaning;
};
// Every key of the profile in the order the table prints them (harness/machine_keys.cpp).
const std::vector<ProfileKey>& machine_profile_keys();

struct ProfileOptions {
  bool quick = false;          // smaller sizes and fewer samples: about 1-2 s instead of about 10
  std::string dir;             // where the fdatasync'd file goes; "" is the system temp dir
  std::function<bool()> stop;  // asked between primitives: true leaves the rest "not measured: interrupted"
};

// Measures every primitive and probes every presence, in this process. Never throws for a primitive:
// its keys say why it has no number.
nlohmann::json measure_machine_profile(const ProfileOptions& opts);

// The profile as a readable table (name, value, unit, meaning) under a line naming the machine.
std::string format_machine_profile(const nlohmann::json& profile);

}  // namespace snap
