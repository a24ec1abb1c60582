// The results directory's lock (see dir_lock.h).
#include "harness/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "core/error.h"

namespace snap {

DirLock::DirLock(const std::string& dir, const std::string& command) {
  const std::string path = dir + "/.snapbench.lock";
  // O_CLOEXEC: a sink command or a fork-cow child must not inherit (and so hold) the lock.
  fd_.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (fd_.get() < 0) throw UsageError("--out: cannot open the lock file " + path + ": " + std::strerror(errno));
  if (flock(fd_.get(), LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err != EWOULDBLOCK) throw UsageError("--out: cannot lock " + path + ": " + std::strerror(err));
    char holder[512] = {};
    const ssize_t n = pread(fd_.get(), holder, sizeof holder - 1, 0);
    std::string who = n > 0 ? std::string(holder, size_t(n)) : "another process";
    while (!who.empty() && (who.back() == '\n' || who.back() == ' ')) who.pop_back();
    throw UsageError("--out: " + dir + " is in use by " + who +
                     " (lock " + path + "); wait for it to end or use another --out");
  }
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  char when[32] = {};
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  const std::string me = "pid " + std::to_string(getpid()) + " on " + host + " since " + when + ": " + command + "\n";
  if (ftruncate(fd_.get(), 0) == 0) (void)!pwrite(fd_.get(), me.data(), me.size(), 0);
}

}  // namespace snap
