// The image reader's bounds: `info` without the region, sizes from the header checked before any
// allocation, incomplete images reported, endless inputs cut off, and the CLI's exit codes for it.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "cli_helpers.h"
#include "core/error.h"
#include "core/image.h"
#include "image_test_util.h"

using namespace snap;
using namespace snaptest;

namespace {

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ImageError& e) {
    return e.what();
  }
  return "";
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAsan = true;
#else
constexpr bool kAsan = false;
#endif

}  // namespace

// The 65-byte image: a header saying 2^20 pages (4 GiB), no record, a valid checksum.
TEST(ImageReader, InfoCountsWithoutBuildingTheRegion) {
  const auto img = header_only_image(1ull << 20);
  ASSERT_EQ(img.size(), 65u);
  const ImageSummary s = inspect_image(img);
  EXPECT_EQ(s.header.region_pages, 1ull << 20);
  EXPECT_EQ(s.stats.pages_saved, 0u);
  EXPECT_EQ(s.missing_pages, 1ull << 20);
  EXPECT_EQ(s.first_missing_page, 0);
}

TEST(ImageReader, InfoNamesTheMissingPages) {
  // Pages 0, 1 (zero), 3 and 3 again of 6: pages 2, 4, 5 have no record.
  const ImageSummary s = inspect_image(written_image(6, {0, -2, 3, 3}));
  EXPECT_EQ(s.stats.pages_saved, 4u);
  EXPECT_EQ(s.stats.unique_pages, 3u);
  EXPECT_EQ(s.stats.duplicate_pages, 1u);
  EXPECT_EQ(s.stats.zero_pages, 1u);
  EXPECT_EQ(s.missing_pages, 3u);
  EXPECT_EQ(s.first_missing_page, 2);
  const ImageSummary whole = inspect_image(written_image(3, {2, 0, 1}));
  EXPECT_EQ(whole.missing_pages, 0u);
  EXPECT_EQ(whole.first_missing_page, -1);
}

// A region the header sizes beyond the memory bound is refused with an ImageError before anything is
// allocated (under ASan a 2^62-byte request used to abort the process instead of throwing bad_alloc).
TEST(ImageReader, FlattenChecksTheRegionAgainstMemoryFirst) {
  for (uint64_t pages : {1ull << 20, 1ull << 50, 1ull << 62, ~0ull}) {
    const std::string err = error_of([&] { flatten_image(header_only_image(pages), 64ull << 20); });
    EXPECT_NE(err.find("cannot flatten the image: its region of " + std::to_string(pages) + " pages needs"),
              std::string::npos)
        << pages << ": '" << err << "'";
    EXPECT_NE(err.find("of memory available"), std::string::npos) << err;
  }
  // Within the bound it flattens (16 pages, all missing).
  FlatImage small = flatten_image(header_only_image(16), 64ull << 20);
  EXPECT_EQ(small.memory.size(), 16 * kPageSize);
}

TEST(ImageReader, AvailableMemoryIsKnown) {
  EXPECT_GT(available_memory_bytes(), 0u);
}

TEST(ImageReader, AFileThatIsNotAnImageIsRefusedAtItsFirstBytes) {
  // /dev/zero never ends: the magic check must stop the read.
  const std::string err = error_of([] { read_image_file("/dev/zero"); });
  EXPECT_NE(err.find("/dev/zero: bad magic"), std::string::npos) << err;
}

// An endless input that does look like an image (a pipe fed a valid header, then zero records for
// ever) is read up to the bound and refused.
TEST(ImageReader, AnEndlessPipeIsCutOffAtTheBound) {
  signal(SIGPIPE, SIG_IGN);  // the feeder sees EPIPE once the reader gives up
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  std::thread feeder([w = fds[1]] {
    auto header = header_only_image(1ull << 30);
    header.resize(header.size() - image_detail::kTrailerBytes);
    std::vector<uint8_t> zero_record(16, 0);
    put_u32(zero_record, 8, kRecordZero);
    std::vector<uint8_t> chunk;
    for (int i = 0; i < 4096; ++i) chunk.insert(chunk.end(), zero_record.begin(), zero_record.end());
    bool ok = ::write(w, header.data(), header.size()) == ssize_t(header.size());
    while (ok) ok = ::write(w, chunk.data(), chunk.size()) > 0;
    ::close(w);
  });
  std::string msg;
  try {
    read_image_file("/proc/self/fd/" + std::to_string(fds[0]), 1 << 20);
  } catch (const std::exception& e) {
    msg = e.what();
  }
  ::close(fds[0]);
  feeder.join();
  EXPECT_NE(msg.find("not a regular file and longer than 1"), std::string::npos) << msg;
}

TEST(ImageReader, ARegularFileLargerThanTheBoundIsRefusedBeforeReading) {
  TempDir dir;
  write_bytes(dir / "big.img", std::vector<uint8_t>(3 << 20, 0));
  try {
    read_file_bytes(dir / "big.img", 1 << 20);
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("more than the 1"), std::string::npos) << e.what();
  }
}

TEST(ImageCli, InfoOfAHeaderOnlyImageSaysIncompleteWithoutAllocatingIt) {
  TempDir dir;
  write_bytes(dir / "h.img", header_only_image(1ull << 20));
  // 1 GiB of address space is far below the 4 GiB region: `info` must not build it. (ASan reserves
  // terabytes of shadow, so the limit is left out there.)
  const std::string limit = kAsan ? "" : "ulimit -v 1048576; ";
  Cmd c = run_snapbench_shell(limit, "image info " + (dir / "h.img"));
  EXPECT_EQ(c.rc, 1) << c.out;
  EXPECT_NE(c.out.find("incomplete: 1048576 of 1048576 pages have no record (first page 0)"), std::string::npos)
      << c.out;
  EXPECT_EQ(c.out.find(": valid"), std::string::npos) << c.out;

  write_bytes(dir / "w.img", written_image(2, {1, 0}));
  c = run_snapbench("image info " + (dir / "w.img"));
  EXPECT_EQ(c.rc, 0) << c.out;
  EXPECT_NE(c.out.find(": valid"), std::string::npos) << c.out;
}

TEST(ImageCli, InfoOfDevZeroEnds) {
  Cmd c = run_snapbench("image info /dev/zero");
  EXPECT_EQ(c.rc, 1) << c.out;
  EXPECT_NE(c.out.find("bad magic"), std::string::npos) << c.out;
}

// Exit codes: a file that cannot be opened is bad input (2, like a missing spec); a corrupt image
// fails the check (1).
TEST(ImageCli, AMissingFileIsBadInputACorruptOneFailsTheCheck) {
  TempDir dir;
  const std::string missing = dir / "missing.img";
  for (const std::string& args : {"image info " + missing, "image flatten " + missing + " -o " + (dir / "raw"),
                                  "image verify " + missing + " --reference " + missing}) {
    Cmd c = run_snapbench(args);
    EXPECT_EQ(c.rc, 2) << args << ": " << c.out;
    EXPECT_NE(c.out.find("cannot open '" + missing + "': No such file"), std::string::npos) << c.out;
  }
  Cmd c = run_snapbench("image info " + dir.path.string());
  EXPECT_EQ(c.rc, 2) << c.out;
  auto bad = written_image(2, {0, 1});
  bad[40] ^= 1;
  write_bytes(dir / "bad.img", bad);
  c = run_snapbench("image info " + (dir / "bad.img"));
  EXPECT_EQ(c.rc, 1) << c.out;
  EXPECT_NE(c.out.find("checksum mismatch"), std::string::npos) << c.out;
  // A reference that cannot be opened is bad input too.
  write_bytes(dir / "good.img", written_image(1, {0}));
  c = run_snapbench("image verify " + (dir / "good.img") + " --reference " + missing);
  EXPECT_EQ(c.rc, 2) << c.out;
}
