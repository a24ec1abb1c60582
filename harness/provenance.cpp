// Reads the machine's facts for the JSON sidecar.
#include "harness/provenance.h"

#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "core/fd_io.h"
#include "core/linux_compat.h"
#include "core/uffd.h"
#include "harness/csv.h"
#include "workloads/qemu/qemu_process.h"

namespace snap {

namespace {

std::string read_first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  if (in) std::getline(in, line);
  return line;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      auto c = line.find(':');
      return c == std::string::npos ? line : line.substr(c + 2);
    }
  return "unknown";
}

// The bracketed choice of a sysfs setting like "always [madvise] never".
std::string bracketed(const std::string& s) {
  auto a = s.find('['), b = s.find(']');
  return a != std::string::npos && b != std::string::npos ? s.substr(a + 1, b - a - 1) : s;
}

}  // namespace

std::string thp_enabled_mode() {
  return bracketed(read_first_line("/sys/kernel/mm/transparent_hugepage/enabled"));
}

std::string utc_timestamp() {
  std::time_t now = std::time(nullptr);
  char when[64];
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return when;
}

const MachineFacts& this_machine() {
  static const MachineFacts facts = [] {
    MachineFacts f;
    utsname u{};
    uname(&u);
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    f.host = host;
    f.kernel = u.release;
    f.cpu_model = cpu_model();
    return f;
  }();
  return facts;
}

nlohmann::json provenance(const std::vector<std::string>& command_line) {
  nlohmann::json j;
  utsname u{};
  uname(&u);
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  const auto& uf = uffd_features();
  std::string pm_reason;
  j["schema_version"] = kSchemaVersion;
  j["git_sha"] = SNAPBENCH_GIT_SHA;
  j["build_type"] = SNAPBENCH_BUILD_TYPE;
  j["compiler"] = std::string("g++ ") + __VERSION__;
  j["kernel_release"] = u.release;
  j["kernel_version"] = u.version;
  // "arch", not "machine": a matrix's meta.json carries the machine profile under "machine".
  j["arch"] = u.machine;
  j["hostname"] = host;
  j["cpu_model"] = cpu_model();
  j["online_cpus"] = sysconf(_SC_NPROCESSORS_ONLN);
  j["memory_bytes"] = uint64_t(sysconf(_SC_PHYS_PAGES)) * uint64_t(sysconf(_SC_PAGESIZE));
  j["thp_enabled"] = thp_enabled_mode();
  j["thp_defrag"] = bracketed(read_first_line("/sys/kernel/mm/transparent_hugepage/defrag"));
  j["uffd_available"] = uf.available;
  j["uffd_features_hex"] = [&] {
    std::ostringstream s;
    s << std::hex << uf.features;
    return s.str();
  }();
  j["uffd_wp_async"] = uf.has(UFFD_FEATURE_WP_ASYNC);
  j["uffd_wp_unpopulated"] = uf.has(UFFD_FEATURE_WP_UNPOPULATED);
  j["pagemap_scan"] = pagemap_scan_available(&pm_reason);
  j["created_utc"] = utc_timestamp();
  j["command_line"] = command_line;
  // The default QEMU (qemu-system-x86_64 on PATH) and its version, or why there is none.
  qemu::QemuBinary qemu_bin;
  std::string qemu_why;
  j["qemu"] = qemu::find_qemu(qemu::kDefaultQemu, qemu_bin, qemu_why)
                  ? nlohmann::json{{"path", qemu_bin.path}, {"version", qemu_bin.version}}
                  : nlohmann::json{{"unavailable", qemu_why}};
  return j;
}

std::string meta_path_for(const std::string& csv_path) {
  const std::string ext = ".csv";
  if (csv_path.size() > ext.size() && csv_path.compare(csv_path.size() - ext.size(), ext.size(), ext) == 0)
    return csv_path.substr(0, csv_path.size() - ext.size()) + ".meta.json";
  return csv_path + ".meta.json";
}

void write_json(const std::string& path, const nlohmann::json& j) {
  // Written to a temporary file, fsynced and renamed over PATH: every step is checked after the data
  // left the buffers, so a full disk is an error and PATH is either its old self or the whole new file,
  // never empty or cut short.
  const std::string text = j.dump(2) + "\n";
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
  auto fail = [&](const char* what, int err) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot write " + path + ": " + what + ": " + std::strerror(err));
  };
  if (const int err = write_all(fd, text.data(), text.size())) fail("write", err);
  if (::fsync(fd) != 0) fail("fsync", errno);
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot write " + path + ": close: " + std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot write " + path + ": rename: " + std::strerror(err));
  }
}

}  // namespace snap
