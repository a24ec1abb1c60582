// The machine profile's per-boot cache: a matrix measures the profile only the first time after a
// boot (for this kernel and CPU) and reads it back afterwards.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

#include "harness/machine_profile.h"

namespace snap {

// $SNAPBENCH_CACHE, else $XDG_CACHE_HOME/snapbench, else $HOME/.cache/snapbench ("" without HOME).
std::string machine_cache_dir();
// The cache file of a full or a --quick profile in machine_cache_dir().
std::string machine_cache_file(bool quick);

// Writes `profile` to its cache file (creating the directory). Returns "" or why it could not.
std::string store_machine_profile(const nlohmann::json& profile);

struct MatrixMachineProfile {
  nlohmann::json profile;  // with "from_cache" and "cache_file" added
  std::string note;        // a one-line note for stderr ("" when none)
};
// The profile a matrix's meta.json carries: the cached one when it belongs to this boot, kernel and
// CPU (and was measured whole, quick or not as asked), else measured now and cached. An unwritable
// cache is a note, never an error. SNAPBENCH_MACHINE_QUICK=1 asks for a --quick profile (for tests).
MatrixMachineProfile machine_profile_for_matrix(const ProfileOptions& opts);

}  // namespace snap
