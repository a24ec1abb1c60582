// `snapbench image info|flatten|verify`: inspect, unpack and check a kept image file.
#include <cstdio>
#include <fstream>

#include "core/error.h"
#include "core/image.h"
#include "core/units.h"
#include "harness/commands.h"

namespace snap {

void add_image_command(CLI::App& app, int& rc) {
  auto* image = app.add_subcommand("image", "inspect a snapshot image file (see the README for the format)");
  image->require_subcommand(1);
  auto path = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto ref = std::make_shared<std::string>();

  auto* info = image->add_subcommand("info", "check an image and print its header and counts");
  info->add_option("IMAGE", *path, "image file")->required();
  info->callback([path, &rc]() {
    FlatImage flat = flatten_image(read_file_bytes(*path));
    std::printf("image %s: valid\n  strategy %s, consistency point %s, page size %u, region pages %llu (%s)\n"
                "  records %llu, unique pages %llu, duplicates %llu, zero records %llu, bytes %llu\n",
                path->c_str(), flat.header.strategy.c_str(),
                flat.header.consistency == ConsistencyPoint::kStart ? "start" : "end", flat.header.page_size,
                (unsigned long long)flat.header.region_pages,
                format_bytes(double(flat.header.region_pages * flat.header.page_size)).c_str(),
                (unsigned long long)flat.stats.pages_saved, (unsigned long long)flat.stats.unique_pages,
                (unsigned long long)flat.stats.duplicate_pages, (unsigned long long)flat.stats.zero_pages,
                (unsigned long long)flat.stats.image_bytes);
    rc = 0;
  });

  auto* flatten = image->add_subcommand("flatten", "write the region the image describes as raw memory");
  flatten->add_option("IMAGE", *path, "image file")->required();
  flatten->add_option("-o,--output", *out, "raw output file")->required();
  flatten->callback([path, out, &rc]() {
    FlatImage flat = flatten_image(read_file_bytes(*path));
    std::ofstream f(*out, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(flat.memory.data()), std::streamsize(flat.memory.size()));
    if (!f) throw std::runtime_error("cannot write " + *out);
    rc = 0;
  });

  auto* verify = image->add_subcommand("verify", "compare an image with a raw memory file byte for byte");
  verify->add_option("IMAGE", *path, "image file")->required();
  verify->add_option("--reference", *ref, "raw memory file (e.g. from `image flatten`)")->required();
  verify->callback([path, ref, &rc]() {
    FlatImage flat = flatten_image(read_file_bytes(*path));
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
