// `snapbench machine` and the machine profile in a matrix's meta.json: invariants that hold on any
// Linux (never a magnitude of one machine), the JSON keys, and the per-boot cache.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "harness/machine_profile.h"
#include "tests/cli_helpers.h"

namespace {

using nlohmann::json;
using snap::ProfileKeyKind;

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return in ? json::parse(in) : json();
}

// Every documented key is there with its kind's type; a number is finite and positive, a missing
// primitive says why; percentiles are ordered; /dev/kvm agrees with access().
void check_profile(const json& p) {
  ASSERT_TRUE(p.is_object()) << p.dump();
  EXPECT_EQ(p.value("schema", -1), snap::kMachineProfileSchema);
  for (const auto& k : snap::machine_profile_keys()) {
    SCOPED_TRACE(k.key);
    ASSERT_TRUE(p.contains(k.key));
    const json& v = p[k.key];
    switch (k.kind) {
      case ProfileKeyKind::kMeasure:
        if (v.is_number()) {
          EXPECT_TRUE(std::isfinite(v.get<double>()));
          EXPECT_GT(v.get<double>(), 0.0);
        } else {
          ASSERT_TRUE(v.is_string()) << v.dump();
          const std::string s = v.get<std::string>();
          // A primitive this machine lacks is a result; one that failed to measure is a bug.
          EXPECT_TRUE(starts_with(s, "unsupported: ")) << s;
          EXPECT_GT(s.size(), std::string("unsupported: ").size()) << "no reason: " << s;
        }
        break;
      case ProfileKeyKind::kPresence:
        EXPECT_TRUE(v.is_boolean()) << v.dump();
        ASSERT_TRUE(p.contains(std::string(k.key) + "_detail"));
        EXPECT_FALSE(p[std::string(k.key) + "_detail"].get<std::string>().empty());
        break;
      case ProfileKeyKind::kIdentity:
        EXPECT_FALSE(v.is_null());
        break;
    }
  }
  for (const char* pair : {"wp_fault_thread", "wp_fault_sigbus"}) {
    const json &p50 = p[std::string(pair) + "_p50_us"], &p99 = p[std::string(pair) + "_p99_us"];
    if (p50.is_number() && p99.is_number()) {
      EXPECT_GE(p99.get<double>(), p50.get<double>()) << pair;
    } else {
      EXPECT_EQ(p50.is_number(), p99.is_number()) << pair << ": one percentile measured, the other not";
    }
  }
  EXPECT_EQ(p["dev_kvm"].get<bool>(), access("/dev/kvm", R_OK | W_OK) == 0);
  EXPECT_GT(p.value("cores", 0), 0);
  EXPECT_TRUE(p.value("complete", false));
}

// A tiny matrix (one 'none' run) into `out`, with the cache in `cache` and a --quick profile.
snaptest::Cmd run_tiny_matrix(const snaptest::TempDir& tmp, const std::string& cache, const std::string& out) {
  const std::string spec = tmp / "m.toml";
  std::ofstream(spec) << "name = \"tiny\"\nreps = 1\n[fixed]\nmem = \"4M\"\nwriters = 1\nwarmup = 0\n"
                         "\"none.duration_ms\" = 5\n[axes]\nstrategy = [\"none\"]\n";
  return snaptest::run_snapbench_shell("SNAPBENCH_CACHE='" + cache + "' SNAPBENCH_MACHINE_QUICK=1 ",
                                       "matrix " + spec + " --out " + out + " -q");
}

TEST(MachineProfile, QuickProfileHoldsOnAnyLinux) {
  snaptest::TempDir tmp;
  const std::string file = tmp / "profile.json";
  auto c = snaptest::run_snapbench_shell("SNAPBENCH_CACHE='" + (tmp / "cache") + "' ",
                                         "machine --quick --dir " + tmp.path.string() + " --json " + file);
  ASSERT_EQ(c.rc, 0) << c.out;
  const json p = read_json(file);
  check_profile(p);
  EXPECT_TRUE(p.value("quick", false));
  // The table names every primitive and presence.
  for (const auto& k : snap::machine_profile_keys()) {
    if (k.kind == ProfileKeyKind::kIdentity) continue;
    EXPECT_NE(c.out.find(k.key), std::string::npos) << k.key << "\n" << c.out;
  }
  // The fdatasync'd file is gone.
  for (const auto& e : std::filesystem::directory_iterator(tmp.path))
    EXPECT_FALSE(starts_with(e.path().filename().string(), "snapbench-machine-")) << e.path();
  // `snapbench machine` refreshed the cache with what it measured.
  EXPECT_EQ(read_json(tmp / "cache/machine-profile-quick-v" + std::to_string(snap::kMachineProfileSchema) + ".json"), p);
}

TEST(MachineProfile, JsonToStdoutRoundTrips) {
  snaptest::TempDir tmp;
  auto c = snaptest::run_snapbench_shell("SNAPBENCH_CACHE='" + (tmp / "cache") + "' ", "machine --quick --json -");
  ASSERT_EQ(c.rc, 0) << c.out;
  const json p = json::parse(c.out);  // stdout holds the JSON alone (no table, no note)
  check_profile(p);
  EXPECT_EQ(json::parse(p.dump()), p);
}

TEST(MachineProfile, BadDirIsAUsageError) {
  auto c = snaptest::run_snapbench("machine --quick --dir /nonexistent/snapbench-dir");
  EXPECT_EQ(c.rc, 2) << c.out;
  EXPECT_NE(c.out.find("--dir"), std::string::npos) << c.out;
}

TEST(MachineProfile, MatrixMetaCarriesItAndUsesTheCacheTheSecondTime) {
  snaptest::TempDir tmp;
  const std::string cache = tmp / "cache";
  auto c = run_tiny_matrix(tmp, cache, tmp / "out1");
  ASSERT_EQ(c.rc, 0) << c.out;
  const json first = read_json(tmp / "out1/meta.json");
  ASSERT_TRUE(first.contains("machine")) << first.dump();
  check_profile(first["machine"]);
  EXPECT_FALSE(first["machine"].value("from_cache", true));
  EXPECT_EQ(first["machine"].value("cache_file", ""), cache + "/machine-profile-quick-v" + std::to_string(snap::kMachineProfileSchema) + ".json");
  ASSERT_TRUE(std::filesystem::exists(cache + "/machine-profile-quick-v" + std::to_string(snap::kMachineProfileSchema) + ".json"));

  c = run_tiny_matrix(tmp, cache, tmp / "out2");
  ASSERT_EQ(c.rc, 0) << c.out;
  const json second = read_json(tmp / "out2/meta.json");
  ASSERT_TRUE(second.contains("machine"));
  EXPECT_TRUE(second["machine"].value("from_cache", false));
  EXPECT_EQ(second["machine"].value("measured_utc", ""), first["machine"].value("measured_utc", "?"));
  EXPECT_EQ(second["machine"].value("boot_id", ""), first["machine"].value("boot_id", "?"));
}

TEST(MachineProfile, CacheOfAnotherBootIsMeasuredAnew) {
  snaptest::TempDir tmp;
  const std::string cache = tmp / "cache";
  auto c = run_tiny_matrix(tmp, cache, tmp / "out1");
  ASSERT_EQ(c.rc, 0) << c.out;
  json stale = read_json(cache + "/machine-profile-quick-v" + std::to_string(snap::kMachineProfileSchema) + ".json");
  stale["boot_id"] = "00000000-0000-0000-0000-000000000000";
  std::ofstream(cache + "/machine-profile-quick-v" + std::to_string(snap::kMachineProfileSchema) + ".json") << stale.dump();
  c = run_tiny_matrix(tmp, cache, tmp / "out2");
  ASSERT_EQ(c.rc, 0) << c.out;
  const json meta = read_json(tmp / "out2/meta.json");
  EXPECT_FALSE(meta["machine"].value("from_cache", true));
  EXPECT_NE(read_json(cache + "/machine-profile-quick-v" + std::to_string(snap::kMachineProfileSchema) + ".json").value("boot_id", ""), stale["boot_id"].get<std::string>());
}

TEST(MachineProfile, UnwritableCacheIsANoteAndTheMatrixRuns) {
  snaptest::TempDir tmp;
  std::ofstream(tmp / "file") << "not a directory\n";
  auto c = run_tiny_matrix(tmp, tmp / "file/cache", tmp / "out");
  ASSERT_EQ(c.rc, 0) << c.out;
  EXPECT_NE(c.out.find("not cached"), std::string::npos) << c.out;
  const json meta = read_json(tmp / "out/meta.json");
  ASSERT_TRUE(meta.contains("machine"));
  check_profile(meta["machine"]);
  EXPECT_FALSE(meta["machine"].value("from_cache", true));
}

}  // namespace
