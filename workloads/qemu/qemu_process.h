// Launches one QEMU process and owns it: stderr captured for the failure message, killed and reaped
// by pid on every exit path (destructor), and killed by the kernel if snapbench itself dies.
#pragma once
#include <sys/types.h>

#include <string>
#include <vector>

namespace snap::qemu {

// A QEMU binary found on PATH (or given by path) and the first line of its --version.
struct QemuBinary {
  std::string path;
  std::string version;  // e.g. "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"
};

// Finds `name_or_path` (a bare name is searched on PATH; one with a '/' is taken as is) and runs it
// with --version. Returns false with `why` set when it is missing or does not run.
bool find_qemu(const std::string& name_or_path, QemuBinary& out, std::string& why);

// The default binary name.
constexpr const char* kDefaultQemu = "qemu-system-x86_64";

class QemuProcess {
 public:
  // Starts `binary` with `args` (argv[0] excluded). stderr goes to an anonymous memory file so the
  // last line can be reported; stdin and stdout are /dev/null. The child gets PR_SET_PDEATHSIG
  // (SIGKILL): if snapbench is killed or exits at once (a second Ctrl-C), the kernel kills QEMU too.
  // The death signal is tied to the calling thread: start QEMU from a thread that outlives it.
  // `pass_fds[i]` becomes descriptor 3 + i in QEMU (e.g. guest RAM as mem-path=/proc/self/fd/3); a
  // negative entry leaves that number unused.
  QemuProcess(const std::string& binary, const std::vector<std::string>& args, const std::vector<int>& pass_fds = {});
  ~QemuProcess();  // kills (SIGKILL) and reaps when still running
  QemuProcess(const QemuProcess&) = delete;
  QemuProcess& operator=(const QemuProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Reaps without blocking; false once QEMU has exited (its status is kept).
  bool running();
  // Waits up to `timeout_s` for QEMU to exit by itself; true if it did (and was reaped).
  bool wait_exit(double timeout_s);
  // SIGKILL and reap (idempotent).
  void kill_and_reap();
  // "exited with status 1", "was killed by signal Killed", or "is running".
  std::string describe_exit();
  // The last non-empty line QEMU wrote to stderr ("" when none).
  std::string stderr_last_line() const;
  // Everything QEMU wrote to stderr (capped at the last 64 KiB).
  std::string stderr_text() const;
  // "QEMU exited with status 1: <last stderr line>": for a failure message.
  std::string failure_summary();

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  int stderr_fd_ = -1;
};

}  // namespace snap::qemu
