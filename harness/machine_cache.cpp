// The per-boot cache of the machine profile (see machine_cache.h).
#include "harness/machine_cache.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/scoped.h"
#include "harness/provenance.h"

namespace snap {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string current_boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  return in >> id ? id : "unknown";
}

// True when `p` was measured whole on this boot, kernel and CPU, in this key set, quick as asked.
bool belongs_here(const nlohmann::json& p, bool quick) {
  const MachineFacts& m = this_machine();
  return p.is_object() && p.value("schema", -1) == kMachineProfileSchema && p.value("boot_id", "") == current_boot_id() &&
         current_boot_id() != "unknown" && p.value("kernel", "") == m.kernel && p.value("cpu_model", "") == m.cpu_model &&
         p.value("quick", !quick) == quick && p.value("complete", false);
}

// Holds an flock on the cache directory's lock file, so that matrices started together measure once
// (and do not measure at the same time, which would skew both). Without a lock file it holds nothing.
class CacheLock {
 public:
  explicit CacheLock(const std::string& dir) {
    if (dir.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    fd_.reset(::open((dir + "/machine-profile.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (fd_) while (::flock(fd_.get(), LOCK_EX) != 0 && errno == EINTR) {
      }
  }

 private:
  UniqueFd fd_;  // closing it releases the lock
};

}  // namespace

std::string machine_cache_dir() {
  if (const std::string d = env("SNAPBENCH_CACHE"); !d.empty()) return d;
  if (const std::string x = env("XDG_CACHE_HOME"); !x.empty()) return x + "/snapbench";
  if (const std::string h = env("HOME"); !h.empty()) return h + "/.cache/snapbench";
  return "";
}

std::string machine_cache_file(bool quick) {
  const std::string dir = machine_cache_dir();
  if (dir.empty()) return "";
  // The schema is in the name from schema 2 on: two builds of different schemas on one machine (the
  // A/B regression gate runs the base and this tree interleaved) would otherwise each find the other's
  // profile stale and measure anew before every run.
  const std::string schema = kMachineProfileSchema > 1 ? "-v" + std::to_string(kMachineProfileSchema) : "";
  return dir + "/machine-profile" + (quick ? "-quick" : "") + schema + ".json";
}

std::string store_machine_profile(const nlohmann::json& profile) {
  const std::string dir = machine_cache_dir();
  if (dir.empty()) return "no cache directory (set SNAPBENCH_CACHE, XDG_CACHE_HOME or HOME)";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return "cannot create " + dir + ": " + ec.message();
  CacheLock lock(dir);
  try {
    write_json(machine_cache_file(profile.value("quick", false)), profile);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

MatrixMachineProfile machine_profile_for_matrix(const ProfileOptions& asked) {
  ProfileOptions opts = asked;
  if (env("SNAPBENCH_MACHINE_QUICK") == "1") opts.quick = true;
  const std::string dir = machine_cache_dir(), file = machine_cache_file(opts.quick);
  MatrixMachineProfile out;
  CacheLock lock(dir);  // held while reading, measuring and writing
  if (!file.empty()) {
    std::ifstream in(file);
    if (in) {
      try {
        nlohmann::json cached = nlohmann::json::parse(in);
        if (belongs_here(cached, opts.quick)) {
          cached["from_cache"] = true;
          cached["cache_file"] = file;
          out.profile = std::move(cached);
          return out;
        }
      } catch (const nlohmann::json::exception&) {
        // A torn or foreign file: measure anew and replace it.
      }
    }
  }
  out.profile = measure_machine_profile(opts);
  std::string why;
  if (!out.profile.value("complete", false)) {
    why = "the measurement was interrupted";
  } else if (file.empty()) {
    why = "no cache directory (set SNAPBENCH_CACHE, XDG_CACHE_HOME or HOME)";
  } else {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      why = "cannot create " + dir + ": " + ec.message();
    } else {
      try {
        write_json(file, out.profile);  // under the lock taken above
      } catch (const std::exception& e) {
        why = e.what();
      }
    }
  }
  out.profile["from_cache"] = false;
  out.profile["cache_file"] = why.empty() ? file : "";
  if (!why.empty()) out.note = "machine profile measured but not cached (" + why + ")";
  return out;
}

}  // namespace snap
