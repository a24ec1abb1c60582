// Test helpers: run the snapbench binary and capture its output and exit code; temporary directories.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace snaptest {

struct Cmd {
  int rc = -1;
  std::string out;  // stdout and stderr together
};

// Runs `snapbench ARGS` through /bin/sh, after the shell commands in `prefix` (e.g. "ulimit -v N; ").
inline Cmd run_snapbench_shell(const std::string& prefix, const std::string& args) {
  Cmd c;
  std::string cmd = prefix + std::string(SNAPBENCH_BINARY) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return c;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) c.out.append(buf.data(), n);
  int st = pclose(p);
  c.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return c;
}

inline Cmd run_snapbench(const std::string& args) { return run_snapbench_shell("", args); }

// A fresh directory under the system temp dir, removed on destruction.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "snapbench-test-XXXXXX").string();
    path = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

}  // namespace snaptest
