// Fuzz-style test of the image reader: mutated valid images (every truncation, bit flips, huge
// header and record fields, wrong record counts) must each be read or refused with an ImageError —
// never a crash, a hang, another exception or an unbounded allocation. Deterministic seeds.
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <functional>
#include <random>

#include "core/error.h"
#include "core/image.h"
#include "image_test_util.h"

using namespace snap;
using namespace snaptest;

namespace {

using image_detail::kHeaderFixedBytes;
using image_detail::kTrailerBytes;

// The reader may flatten regions up to this; a header asking for more must be refused, not allocated.
constexpr uint64_t kMemoryBound = 64ull << 20;

struct Fuzzer {
  size_t cases = 0, accepted = 0, failures = 0;

  void fail(const std::string& what, const std::string& why) {
    if (++failures <= 20) std::fprintf(stderr, "FUZZ FAILURE: %s: %s\n", what.c_str(), why.c_str());
  }

  // Reads one mutated image both ways (info's summary and the flattened region) and checks they agree.
  void check(const std::vector<uint8_t>& img, const std::string& what) {
    ++cases;
    std::string info_err, flat_err;
    ImageSummary s;
    FlatImage f;
    try {
      s = inspect_image(img);
    } catch (const ImageError& e) {
      info_err = e.what();
    } catch (const std::exception& e) {
      return fail(what, std::string("inspect_image threw a non-ImageError: ") + e.what());
    }
    try {
      f = flatten_image(img, kMemoryBound);
    } catch (const ImageError& e) {
      flat_err = e.what();
    } catch (const std::exception& e) {
      return fail(what, std::string("flatten_image threw a non-ImageError: ") + e.what());
    }
    if (!info_err.empty() && info_err != flat_err) return fail(what, "info refused ('" + info_err + "'), flatten said '" + flat_err + "'");
    if (!info_err.empty()) return;
    if (!flat_err.empty()) {
      // Only the memory bound may refuse what info accepted.
      if (flat_err.find("cannot flatten the image") == std::string::npos) return fail(what, "flatten only: " + flat_err);
      return;
    }
    ++accepted;
    if (f.memory.size() != s.header.region_pages * kPageSize || f.memory.size() > kMemoryBound)
      return fail(what, "flattened region of " + std::to_string(f.memory.size()) + " bytes");
    if (f.stats.pages_saved != s.stats.pages_saved || f.stats.unique_pages != s.stats.unique_pages ||
        f.stats.zero_pages != s.stats.zero_pages)
      return fail(what, "info and flatten count differently");
    // The image against its own flattening: passes exactly when no page is missing.
    VerifyResult v = verify_image(f, f.memory.data(), f.header.region_pages);
    if (v.pass != (s.missing_pages == 0) || v.missing_pages != s.missing_pages)
      return fail(what, "verify says pass=" + std::to_string(v.pass) + " missing=" + std::to_string(v.missing_pages) +
                            ", info says missing=" + std::to_string(s.missing_pages));
  }

  void run() {
    // A small image with data, zero, duplicate and missing pages, and a two-page complete one.
    const auto base = written_image(5, {0, -2, 3, 0, 4});
    const auto tiny = written_image(2, {1, -1});
    const uint64_t records = 5;
    std::mt19937_64 rng(20261201);

    check(base, "the unmutated image");
    // Every truncation, as it is and re-sealed with a trailer for what is left.
    for (size_t len = 0; len < tiny.size(); ++len) {
      std::vector<uint8_t> cut(tiny.begin(), tiny.begin() + long(len));
      check(cut, "tiny cut at " + std::to_string(len));
      cut.resize(len + kTrailerBytes);
      reseal(cut, 1);
      check(cut, "tiny cut at " + std::to_string(len) + " + trailer");
    }
    // Random bit flips, left to the checksum or re-sealed so they reach the structural checks.
    for (int i = 0; i < 3000; ++i) {
      auto b = base;
      const int flips = 1 + int(rng() % 4);
      for (int k = 0; k < flips; ++k) b[rng() % b.size()] ^= uint8_t(1u << (rng() % 8));
      if (i % 2) reseal(b, records);
      check(b, "bit flips, seed 20261201 iteration " + std::to_string(i));
    }
    // Header fields at their extremes (re-sealed): region size, page size, version, name length.
    const uint64_t huge[] = {0, 1, 2, 4, 5, 6, 16383, 16384, 16385, 1ull << 20, 1ull << 32, 1ull << 50,
                             1ull << 52, 1ull << 62, 1ull << 63, ~0ull - 1, ~0ull};
    for (uint64_t v : huge) {
      auto b = base;
      put_u64(b, 16, v);
      reseal(b, records);
      check(b, "region_pages " + std::to_string(v));
      auto h = header_only_image(v);
      check(h, "header-only region_pages " + std::to_string(v));
    }
    for (uint32_t v : {0u, 1u, 4095u, 8192u, 0x80000000u, ~0u}) {
      auto b = base;
      put_u32(b, 12, v);
      reseal(b, records);
      check(b, "page_size " + std::to_string(v));
      b = base;
      put_u32(b, 8, v);
      reseal(b, records);
      check(b, "version " + std::to_string(v));
      b = base;
      put_u32(b, 24, v);
      reseal(b, records);
      check(b, "consistency " + std::to_string(v));
    }
    for (uint16_t v : {uint16_t(0), uint16_t(1), uint16_t(8), uint16_t(9), uint16_t(4096), uint16_t(0xFFFF)}) {
      auto b = base;
      put_u16(b, 28, v);
      reseal(b, records);
      check(b, "name length " + std::to_string(v));
    }
    // Record fields: the first record's page index and flags, at their extremes.
    const size_t first = kHeaderFixedBytes + 9;  // "stop-copy"
    for (uint64_t v : huge) {
      auto b = base;
      put_u64(b, first, v);
      reseal(b, records);
      check(b, "record 0 index " + std::to_string(v));
    }
    for (uint32_t v : {1u, 2u, 3u, 0x80000000u, ~0u}) {
      auto b = base;
      put_u32(b, first + 8, v);
      reseal(b, records);
      check(b, "record 0 flags " + std::to_string(v));
      b = base;
      put_u32(b, first + 12, v);
      reseal(b, records);
      check(b, "record 0 reserved " + std::to_string(v));
    }
    // The trailer's record count, from wrong to absurd.
    for (uint64_t v : huge) {
      auto b = base;
      reseal(b, v);
      check(b, "record count " + std::to_string(v));
    }
    // A trailer magic where a record should start; garbage after the trailer; random bytes.
    {
      auto b = base;
      std::memcpy(&b[first], image_detail::kTrailerMagic, 8);
      reseal(b, records);
      check(b, "trailer magic at record 0");
      b = base;
      b.insert(b.end(), 100, 0xAB);
      check(b, "garbage after the trailer");
      for (int i = 0; i < 200; ++i) {
        std::vector<uint8_t> r(rng() % 8192);
        for (auto& x : r) x = uint8_t(rng());
        if (r.size() >= 8) std::memcpy(r.data(), image_detail::kHeaderMagic, 8);
        if (i % 2 && r.size() >= kTrailerBytes + kHeaderFixedBytes) reseal(r, rng() % 4);
        check(r, "random bytes after the magic, iteration " + std::to_string(i));
      }
    }
  }
};

}  // namespace

// Runs the fuzzer in a child process: a crash or an abort there fails the test with the signal, and,
// outside ASan (whose shadow memory needs terabytes of address space), the child's address space is
// limited so that an allocation the reader did not bound fails as std::bad_alloc.
TEST(ImageFuzz, MutatedImagesAreReadOrRefusedNeverMore) {
  fflush(nullptr);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // a hang dies with the test (ctest's timeout kills the parent)
#if !defined(__SANITIZE_ADDRESS__)
    struct rlimit rl;
    getrlimit(RLIMIT_AS, &rl);
    // What the process maps now plus room for the bound: far below the gigabytes a header can ask for.
    uint64_t vm_kib = 0;
    if (FILE* f = std::fopen("/proc/self/status", "re")) {
      char line[256];
      while (std::fgets(line, sizeof line, f))
        if (std::sscanf(line, "VmSize: %lu kB", &vm_kib) == 1) break;
      std::fclose(f);
    }
    rl.rlim_cur = vm_kib * 1024 + 4 * kMemoryBound;
    setrlimit(RLIMIT_AS, &rl);
#endif
    Fuzzer fz;
    fz.run();
    std::fprintf(stderr, "fuzz: %zu cases, %zu read, %zu failures\n", fz.cases, fz.accepted, fz.failures);
    fflush(nullptr);
    _exit(fz.failures == 0 && fz.accepted > 0 && fz.accepted < fz.cases ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_FALSE(WIFSIGNALED(status)) << "the fuzzer died of signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "see the FUZZ FAILURE lines above";
}
