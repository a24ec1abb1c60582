// The `file:PATH` sink: large unbuffered write()s to a created/truncated file, optional fdatasync.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>

#include "core/error.h"
#include "core/image.h"
#include "core/scoped.h"
#include "core/sink.h"

namespace snap::sink_detail {

std::shared_ptr<std::atomic<uint64_t>> make_fork_shared_counter();  // sink_memory.cpp

namespace {

class FileSink final : public Sink {
 public:
  FileSink(const std::string& path, bool fsync)
      : path_(path), fsync_(fsync), written_(make_fork_shared_counter()) {
    // O_CLOEXEC: an exec sink's command must not inherit the image file.
    fd_.reset(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd_) {
      const int err = errno;
      throw UsageError("--sink: cannot create '" + path + "': " + std::strerror(err) +
                       (err == ENOENT ? " (does the directory exist?)" : ""));
    }
    struct stat st;
    regular_ = fstat(fd_.get(), &st) == 0 && S_ISREG(st.st_mode);
  }
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;

  void write(const void* data, size_t len) override {
    if (!fd_) throw SinkError("file sink '" + path_ + "': write after finish");
    const uint8_t* p = static_cast<const uint8_t*>(data);
    while (len > 0) {
      const ssize_t w = ::write(fd_.get(), p, len);
      if (w < 0) {
        if (errno == EINTR) continue;
        throw SinkError("file sink '" + path_ + "': write failed after " + std::to_string(bytes_written()) +
                        " bytes: " + std::strerror(errno));
      }
      p += w;
      len -= size_t(w);
      written_->fetch_add(uint64_t(w), std::memory_order_relaxed);
    }
  }

  // Safe to call in a forked child and again in the parent: each closes its own descriptor.
  void finish() override {
    if (!fd_) return;
    const int fd = fd_.release();  // closed here, where close()'s error is reported
    if (fsync_ && ::fdatasync(fd) != 0) {
      const int err = errno;
      ::close(fd);
      throw SinkError("file sink '" + path_ + "': fdatasync: " + std::strerror(err));
    }
    if (::close(fd) != 0) throw SinkError("file sink '" + path_ + "': close: " + std::strerror(errno));
  }

  uint64_t bytes_written() const override { return written_->load(std::memory_order_relaxed); }
  std::string kind() const override { return "file"; }
  // No user-space buffering: what write() returned is in the file, finished or not.
  bool readable() const override { return regular_; }
  std::vector<uint8_t> read_back() const override {
    if (!regular_) return {};
    return read_file_bytes(path_);
  }

 private:
  std::string path_;
  bool fsync_;
  UniqueFd fd_;
  bool regular_ = false;
  std::shared_ptr<std::atomic<uint64_t>> written_;
};

}  // namespace

std::unique_ptr<Sink> make_file_sink(const std::string& path, bool fsync) {
  return std::make_unique<FileSink>(path, fsync);
}

}  // namespace snap::sink_detail
