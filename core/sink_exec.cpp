// The `exec:COMMAND` sink: streams the image into the stdin of `/bin/sh -c COMMAND` through a pipe.
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#include "core/error.h"
#include "core/run_stop.h"
#include "core/scoped.h"
#include "core/sink.h"

extern char** environ;

namespace snap::sink_detail {

std::shared_ptr<std::atomic<uint64_t>> make_fork_shared_counter();  // sink_memory.cpp

namespace {

// Blocks SIGPIPE for the calling thread while it writes to the pipe, so a reader that went away shows
// up as EPIPE (a SinkError) instead of killing the process. A SIGPIPE raised by our own write is
// consumed before the old mask comes back; one that was already pending is left alone.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_set_);
    sigaddset(&pipe_set_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set_, &old_mask_);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  ~SigpipeBlock() { pthread_sigmask(SIG_SETMASK, &old_mask_, nullptr); }
  void consume_ours() {
    if (was_pending_) return;
    const timespec zero{0, 0};
    while (sigtimedwait(&pipe_set_, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }

 private:
  sigset_t pipe_set_, old_mask_;
  bool was_pending_ = false;
};

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + strsignal(WTERMSIG(status));
  return "ended with wait status " + std::to_string(status);
}

class ExecSink final : public Sink {
 public:
  explicit ExecSink(const std::string& command) : command_(command), written_(make_fork_shared_counter()) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) throw SinkError(std::string("exec sink: pipe: ") + std::strerror(errno));
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[0], 0);  // dup2 clears O_CLOEXEC on stdin only
    posix_spawnattr_init(&attr);
    // Default SIGPIPE and an empty mask for the command, whatever the benchmark's threads set; its own
    // process group so an abandoned pipeline can be killed as a whole.
    sigset_t defaults, empty;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigemptyset(&empty);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
    char sh[] = "sh", dash_c[] = "-c";
    char* argv[] = {sh, dash_c, const_cast<char*>(command_.c_str()), nullptr};
    // posix_spawn uses vfork semantics: no page-table copy even with a large populated region.
    const int rc = posix_spawn(&pid_, "/bin/sh", &actions, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    ::close(fds[0]);
    if (rc != 0) {
      ::close(fds[1]);
      throw SinkError("exec sink: cannot start /bin/sh: " + std::string(std::strerror(rc)));
    }
    write_fd_.reset(fds[1]);
    owner_ = getpid();
    register_child_group(pid_);  // a signal handler's exit kills it too (interrupt.cpp)
    // Our end never blocks: a command that stops reading must not hold the run past a stop request
    // (SIGTERM, the run's time limit). The command's end (its stdin) stays blocking.
    fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK);
  }

  // Never leaves a process behind: close the pipe (EOF), give the command a moment, then kill its
  // group; and kill what is left of the group (a command's own children) even when it exited.
  ~ExecSink() override {
    write_fd_.reset();  // first: the command sees EOF while we wait for it
    if (getpid() != owner_ || reaped_) return;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(250);
    while (std::chrono::steady_clock::now() < deadline && !exited())
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    reap_group();
  }
  ExecSink(const ExecSink&) = delete;
  ExecSink& operator=(const ExecSink&) = delete;

  void write(const void* data, size_t len) override {
    if (!write_fd_) throw SinkError("exec sink '" + command_ + "': write after finish");
    SigpipeBlock block;
    const uint8_t* p = static_cast<const uint8_t*>(data);
    while (len > 0) {
      const ssize_t w = ::write(write_fd_.get(), p, len);
      if (w < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        if (err == EAGAIN) {
          // The pipe is full: wait for the command to read, in slices, so a stop request ends the wait.
          throw_if_run_stopped();
          pollfd pfd{write_fd_.get(), POLLOUT, 0};
          poll(&pfd, 1, 50);
          continue;
        }
        if (err == EPIPE) {
          block.consume_ours();
          throw SinkError("exec sink '" + command_ + "': the command stopped reading after " +
                          std::to_string(bytes_written()) + " bytes (broken pipe)");
        }
        throw SinkError("exec sink '" + command_ + "': write: " + std::strerror(err));
      }
      p += w;
      len -= size_t(w);
      written_->fetch_add(uint64_t(w), std::memory_order_relaxed);
    }
  }

  // Closes our end of the pipe; in the process that started the command, also waits for it and
  // fails unless it exited 0. In a forked child (fork-cow) only the close happens: the parent calls
  // finish() after reaping the child to collect the command's status. A stop request while waiting
  // kills the command's group.
  void finish() override {
    write_fd_.reset();
    if (getpid() != owner_ || reaped_) return;
    while (!exited()) {
      if (run_stop_requested()) {
        reap_group();
        throw_if_run_stopped();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    const int status = reap_group();
    if (status < 0) throw SinkError("exec sink '" + command_ + "': waitpid: " + std::strerror(errno));
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0))
      throw SinkError("exec sink '" + command_ + "' " + describe_status(status));
  }

  uint64_t bytes_written() const override { return written_->load(std::memory_order_relaxed); }
  std::string kind() const override { return "exec"; }

 private:
  std::string command_;
  std::shared_ptr<std::atomic<uint64_t>> written_;
  pid_t pid_ = -1;
  pid_t owner_ = -1;
  UniqueFd write_fd_;
  bool reaped_ = false;

  // Whether /bin/sh has exited, leaving it unreaped (so its pid, the group's id, cannot be reused).
  bool exited() const {
    siginfo_t info{};
    while (waitid(P_PID, id_t(pid_), &info, WEXITED | WNOHANG | WNOWAIT) < 0)
      if (errno != EINTR) return true;  // nothing to wait for
    return info.si_pid == pid_;
  }

  // Kills whatever is left of the command's group (the shell too, if it still runs), then reaps the
  // shell. Returns its wait status, or -1 if waitpid failed.
  int reap_group() {
    kill(-pid_, SIGKILL);
    int status = 0;
    pid_t r;
    while ((r = waitpid(pid_, &status, 0)) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    unregister_child_group(pid_);
    return r == pid_ ? status : -1;
  }
};

}  // namespace

std::unique_ptr<Sink> make_exec_sink(const std::string& command) { return std::make_unique<ExecSink>(command); }

}  // namespace snap::sink_detail
