// QemuProcess and find_qemu: start, watch, kill and reap a QEMU child (see qemu_process.h).
#include "workloads/qemu/qemu_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "core/error.h"

namespace snap::qemu {

namespace {

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + strsignal(WTERMSIG(status));
  return "ended with wait status " + std::to_string(status);
}

std::string search_path(const std::string& name) {
  if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string candidate = end > start ? dirs.substr(start, end - start) : std::string(".");
    candidate.append("/").append(name);
    struct stat st {};
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(candidate.c_str(), X_OK) == 0)
      return candidate;
    start = end + 1;
  }
  return "";
}

// Reads a whole fd from offset 0 (a memfd: QEMU's stderr).
std::string read_all(int fd, size_t cap) {
  struct stat st {};
  if (fd < 0 || fstat(fd, &st) != 0) return "";
  const size_t size = size_t(st.st_size);
  const size_t from = size > cap ? size - cap : 0;
  std::string out(size - from, '\0');
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t r = pread(fd, out.data() + got, out.size() - got, off_t(from + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += size_t(r);
  }
  out.resize(got);
  return out;
}

}  // namespace

bool find_qemu(const std::string& name_or_path, QemuBinary& out, std::string& why) {
  const std::string path = search_path(name_or_path);
  if (path.empty()) {
    why = name_or_path.find('/') != std::string::npos ? "QEMU binary " + name_or_path + " is not executable"
                                                      : name_or_path + " not found on PATH";
    return false;
  }
  // --version writes to stdout, which QemuProcess discards: read it through a pipe.
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    why = std::string("pipe: ") + strerror(errno);
    return false;
  }
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    const int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, 2);
    execl(path.c_str(), path.c_str(), "--version", static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  std::string text;
  char buf[512];
  for (;;) {
    const ssize_t r = read(fds[0], buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    text.append(buf, size_t(r));
  }
  close(fds[0]);
  int status = 0;
  if (pid > 0)
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  out.path = path;
  out.version = text.substr(0, text.find('\n'));
  if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || out.version.empty()) {
    why = path + " --version failed (" + (pid < 0 ? std::string("fork failed") : describe_status(status)) + ")";
    return false;
  }
  return true;
}

QemuProcess::QemuProcess(const std::string& binary, const std::vector<std::string>& args,
                         const std::vector<int>& pass_fds) {
  stderr_fd_ = memfd_create("qemu-stderr", MFD_CLOEXEC);
  if (stderr_fd_ < 0) throw_errno("memfd_create for QEMU's stderr");
  std::vector<std::string> argv_s;
  argv_s.push_back(binary);
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  // fork, not posix_spawn: the child must set its death signal before exec. QEMU is started before
  // any large region exists in this process (its guest memory lives in QEMU), so the copy is cheap.
  pid_ = fork();
  if (pid_ < 0) {
    close(stderr_fd_);
    throw_errno("fork for QEMU");
  }
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before the death signal was armed
    // Default dispositions and an empty mask: the harness may block or catch signals.
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, nullptr);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGINT, SIG_IGN);  // a terminal Ctrl-C goes to snapbench, which decides QEMU's fate
    const int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      dup2(devnull, 0);
      dup2(devnull, 1);
    }
    dup2(stderr_fd_, 2);
    // Passed descriptors: first out of the way (a source may sit on a target number), then into
    // place; dup2 leaves the copy without close-on-exec.
    // A negative entry leaves its number unused.
    std::vector<int> high;
    for (int fd : pass_fds) high.push_back(fd < 0 ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 100));
    for (size_t i = 0; i < high.size(); ++i)
      if (pass_fds[i] >= 0 && (high[i] < 0 || dup2(high[i], int(3 + i)) < 0)) _exit(127);
    execv(argv[0], argv.data());
    const std::string msg = "exec " + argv_s[0] + ": " + strerror(errno) + "\n";
    (void)!write(2, msg.data(), msg.size());
    _exit(127);
  }
}

QemuProcess::~QemuProcess() {
  kill_and_reap();
  if (stderr_fd_ >= 0) close(stderr_fd_);
}

bool QemuProcess::running() {
  if (reaped_ || pid_ <= 0) return false;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    status_ = status;
    return false;
  }
  return true;
}

bool QemuProcess::wait_exit(double timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

void QemuProcess::kill_and_reap() {
  if (reaped_ || pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  pid_t r;
  while ((r = waitpid(pid_, &status, 0)) < 0 && errno == EINTR) {
  }
  reaped_ = true;
  status_ = status;
}

std::string QemuProcess::describe_exit() {
  if (running()) return "is running";
  return describe_status(status_);
}

std::string QemuProcess::stderr_text() const { return read_all(stderr_fd_, 64 << 10); }

std::string QemuProcess::stderr_last_line() const {
  const std::string text = stderr_text();
  size_t end = text.size();
  while (end > 0) {
    while (end > 0 && (text[end - 1] == '\n' || text[end - 1] == '\r' || text[end - 1] == ' ')) --end;
    if (end == 0) break;
    const size_t nl = text.rfind('\n', end - 1);
    const size_t start = nl == std::string::npos ? 0 : nl + 1;
    std::string line = text.substr(start, end - start);
    if (!line.empty()) return line;
    end = start;
  }
  return "";
}

std::string QemuProcess::failure_summary() {
  std::string s = "QEMU " + describe_exit();
  const std::string last = stderr_last_line();
  if (!last.empty()) s += ": " + last;
  return s;
}

}  // namespace snap::qemu
