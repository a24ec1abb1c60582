// `snapbench image info|flatten|verify`: inspect, unpack and check a kept image file.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/image.h"
#include "core/units.h"
#include "harness/commands.h"

namespace snap {

namespace {

// A file named on the command line that cannot be opened is bad input (exit 2), like a missing spec;
// a file that opens but is not a valid image fails the check (ImageError, exit 1).
void require_readable(const std::string& path, const char* what) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw UsageError(std::string(what) + ": '" + path + "' is a directory");
  if (::access(path.c_str(), R_OK) != 0)
    throw UsageError(std::string(what) + ": cannot open '" + path + "': " + std::strerror(errno));
}

// An output that cannot be written is bad input, found before the work (exit 2, with the reason).
void require_writable(const std::string& path, const char* what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw UsageError(std::string(what) + ": '" + path + "' is a directory");
  const fs::path parent = fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path();
  if (!fs::is_directory(parent, ec))
    throw UsageError(std::string(what) + ": cannot write '" + path + "': directory '" + parent.string() +
                     "' does not exist");
  if (::access(parent.c_str(), W_OK) != 0)
    throw UsageError(std::string(what) + ": cannot write '" + path + "': " + std::strerror(errno));
}

// Writes the raw region, removing a partial file on failure (a full disk) and saying why.
void write_raw(const std::string& path, const std::vector<uint8_t>& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw UsageError("-o: cannot write '" + path + "': " + std::strerror(errno));
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size() && std::fflush(f) == 0;
  const int err = errno;
  if (std::fclose(f) != 0 || !ok) {
    std::remove(path.c_str());
    throw std::runtime_error("cannot write '" + path + "': " + std::strerror(ok ? errno : err) + " (removed)");
  }
}

std::vector<uint8_t> load_image(const std::string& path) {
  require_readable(path, "IMAGE");
  return read_image_file(path);
}

}  // namespace

void add_image_command(CLI::App& app, int& rc) {
  auto* image = app.add_subcommand("image", "inspect a snapshot image file (see the README for the format)");
  image->require_subcommand(1);
  auto path = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto ref = std::make_shared<std::string>();

  auto* info = image->add_subcommand(
      "info", "check an image and print its header and counts (without building the region); exit 0 valid and "
              "complete, 1 corrupt or incomplete (pages without a record), 2 unreadable");
  info->add_option("IMAGE", *path, "image file")->required();
  info->callback([path, &rc]() {
    const ImageSummary s = inspect_image(load_image(*path));
    const bool complete = s.missing_pages == 0;
    std::string verdict = "valid";
    if (!complete)
      verdict = "incomplete: " + std::to_string(s.missing_pages) + " of " + std::to_string(s.header.region_pages) +
                " pages have no record (first page " + std::to_string(s.first_missing_page) + ")";
    const double region_bytes = double(s.header.region_pages) * double(s.header.page_size);
    std::printf("image %s: %s\n  strategy %s, consistency point %s, page size %u, region pages %llu (%s)\n"
                "  records %llu, unique pages %llu, duplicates %llu, zero records %llu, bytes %llu\n",
                path->c_str(), verdict.c_str(), s.header.strategy.c_str(),
                s.header.consistency == ConsistencyPoint::kStart ? "start" : "end", s.header.page_size,
                (unsigned long long)s.header.region_pages, format_bytes(region_bytes).c_str(),
                (unsigned long long)s.stats.pages_saved, (unsigned long long)s.stats.unique_pages,
                (unsigned long long)s.stats.duplicate_pages, (unsigned long long)s.stats.zero_pages,
                (unsigned long long)s.stats.image_bytes);
    rc = complete ? 0 : 1;
  });

  auto* flatten = image->add_subcommand("flatten", "write the region the image describes as raw memory");
  flatten->add_option("IMAGE", *path, "image file")->required();
  flatten->add_option("-o,--output", *out, "raw output file")->required();
  flatten->callback([path, out, &rc]() {
    require_writable(*out, "-o");
    FlatImage flat = flatten_image(load_image(*path));
    write_raw(*out, flat.memory);
    rc = 0;
  });

  auto* verify = image->add_subcommand("verify", "compare an image with a raw memory file byte for byte");
  verify->add_option("IMAGE", *path, "image file")->required();
  verify->add_option("--reference", *ref, "raw memory file (e.g. from `image flatten`)")->required();
  verify->callback([path, ref, &rc]() {
    require_readable(*ref, "--reference");
    const std::vector<uint8_t> bytes = load_image(*path);
    // The sizes first, from the header and the file's size: a header declaring a large region must not
    // have it built (region_pages x 4 KiB) only to be told the reference is another size.
    const ImageSummary summary = inspect_image(bytes);
    std::error_code ec;
    const uint64_t ref_size = std::filesystem::file_size(*ref, ec);
    const uint64_t region_size = summary.header.region_pages * uint64_t(summary.header.page_size);
    if (!ec && ref_size != region_size)
      throw UsageError("--reference: " + *ref + " has " + std::to_string(ref_size) + " bytes, the image's region " +
                       std::to_string(region_size));
    FlatImage flat = flatten_image(bytes);
    std::vector<uint8_t> reference = read_file_bytes(*ref);
    if (reference.size() != flat.memory.size())
      throw UsageError("--reference: " + *ref + " has " + std::to_string(reference.size()) + " bytes, the image's region " +
                       std::to_string(flat.memory.size()));
    VerifyResult v = verify_image(flat, reference.data(), flat.header.region_pages);
    std::printf("%s\n", v.pass ? "pass" : ("fail: " + v.message).c_str());
    rc = v.pass ? 0 : 1;
  });
}

}  // namespace snap
