// core/scoped.h: the owned fd closes, the mapping unmaps, and the pause scope resumes on every exit.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <stdexcept>

#include "core/scoped.h"

namespace {

using snap::Mapping;
using snap::PauseScope;
using snap::UniqueFd;

bool fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

// mincore() fails with ENOMEM on an address that is not mapped.
bool is_mapped(void* p) {
  unsigned char v;
  return mincore(p, 4096, &v) == 0;
}

struct CountingControl {
  int pauses = 0, resumes = 0;
  void pause() { ++pauses; }
  void resume() { ++resumes; }
};

TEST(Scoped, UniqueFdClosesOnceAndMovesOwnership) {
  int raw = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(raw, 0);
  {
    UniqueFd a(raw);
    UniqueFd b(std::move(a));
    EXPECT_FALSE(a);
    EXPECT_EQ(b.get(), raw);
    EXPECT_TRUE(fd_is_open(raw));
  }
  EXPECT_FALSE(fd_is_open(raw));
  int kept = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  { UniqueFd c(kept); EXPECT_EQ(c.release(), kept); }
  EXPECT_TRUE(fd_is_open(kept));  // released: the caller closes it
  ::close(kept);
}

TEST(Scoped, MappingUnmapsAndRefusesWithTheReason) {
  void* seen = nullptr;
  {
    Mapping m(4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, "a test page");
    m.data()[0] = 7;
    seen = m.data();
    Mapping moved(std::move(m));
    EXPECT_EQ(m.data(), nullptr);
    EXPECT_EQ(moved.data()[0], 7);
    EXPECT_TRUE(is_mapped(seen));
  }
  EXPECT_FALSE(is_mapped(seen));
  try {
    Mapping bad(4096, PROT_READ, MAP_PRIVATE, "a mapping of no file");  // fd -1 without MAP_ANONYMOUS
    FAIL() << "mmap of fd -1 succeeded";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("a mapping of no file"), std::string::npos) << e.what();
  }
}

TEST(Scoped, PauseScopeResumesOnEveryExitExactlyOnce) {
  CountingControl c;
  try {
    PauseScope p(c);
    EXPECT_TRUE(p.paused());
    throw std::runtime_error("a failing sink");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(c.pauses, 1);
  EXPECT_EQ(c.resumes, 1);
  {
    PauseScope p(c);
    p.resume();
    p.resume();  // idempotent
  }
  EXPECT_EQ(c.resumes, 2);
  {
    PauseScope p(c, std::defer_lock);  // not paused until asked
    EXPECT_FALSE(p.paused());
  }
  EXPECT_EQ(c.pauses, 2);
  EXPECT_EQ(c.resumes, 2);
}

}  // namespace
