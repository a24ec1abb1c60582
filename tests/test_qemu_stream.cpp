// Tests of the QEMU migration stream parser on hand-built streams: counts, contents, CONTINUE
// records, device sections found through the VM description, and every kind of corruption.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/region.h"
#include "workloads/qemu/migration_stream.h"
#include "workloads/qemu/stamp_check.h"
#include "workloads/workload.h"

namespace {

using snap::qemu::kTargetPageSize;
using snap::qemu::MigrationStreamParser;
using snap::qemu::StreamError;

// Writes a stream the way QEMU 7.2 lays it out (big-endian), one piece at a time.
struct StreamBuilder {
  std::vector<uint8_t> b;
  void u8(uint8_t v) { b.push_back(v); }
  void be32(uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(uint8_t(v >> s));
  }
  void be64(uint64_t v) {
    be32(uint32_t(v >> 32));
    be32(uint32_t(v));
  }
  void str8(const std::string& s) {
    u8(uint8_t(s.size()));
    b.insert(b.end(), s.begin(), s.end());
  }
  void header(const std::string& machine = "pc-i440fx-7.2") {
    be32(0x5145564d);
    be32(3);
    u8(0x07);
    be32(uint32_t(machine.size()));
    b.insert(b.end(), machine.begin(), machine.end());
  }
  void ram_start(uint32_t sid, const std::vector<std::pair<std::string, uint64_t>>& blocks) {
    u8(0x01);
    be32(sid);
    str8("ram");
    be32(0);
    be32(4);
    uint64_t total = 0;
    for (auto& [n, bytes] : blocks) total += bytes;
    be64(total | 0x04);
    for (auto& [n, bytes] : blocks) {
      str8(n);
      be64(bytes);
    }
    eos(sid);
  }
  void eos(uint32_t sid) {
    be64(0x10);
    u8(0x7e);
    be32(sid);
  }
  void part(uint32_t sid, bool end = false) {
    u8(end ? 0x03 : 0x02);
    be32(sid);
  }
  void page(const std::string& block, uint64_t index, uint8_t fill, bool cont = false) {
    be64(index * kTargetPageSize | 0x08 | (cont ? 0x20 : 0));
    if (!cont) str8(block);
    b.insert(b.end(), kTargetPageSize, fill);
  }
  void zero(const std::string& block, uint64_t index, bool cont = false) {
    be64(index * kTargetPageSize | 0x02 | (cont ? 0x20 : 0));
    if (!cont) str8(block);
    u8(0);
  }
  void device(uint32_t sid, const std::string& name, uint32_t instance, const std::vector<uint8_t>& data) {
    u8(0x04);
    be32(sid);
    str8(name);
    be32(instance);
    be32(1);
    b.insert(b.end(), data.begin(), data.end());
    u8(0x7e);
    be32(sid);
  }
  void eof_and_vmdesc(const std::string& json) {
    u8(0x00);
    u8(0x06);
    be32(uint32_t(json.size()));
    b.insert(b.end(), json.begin(), json.end());
  }
};

// Remembers the last content of every page, as a verifier would.
struct Recorder : snap::qemu::PageVisitor {
  std::map<std::pair<size_t, uint64_t>, int> last_fill;  // -1 = zero page
  void on_page(size_t block, uint64_t page, const uint8_t* data) override {
    last_fill[{block, page}] = data ? data[0] : -1;
  }
};

// A small precopy-like stream: two blocks, a first pass, a re-save, a device section whose data
// contains a footer-like byte pattern, the EOF marker and the description.
std::vector<uint8_t> sample_stream() {
  StreamBuilder s;
  s.header();
  s.ram_start(2, {{"pc.ram", 8 * kTargetPageSize}, {"pc.bios", 2 * kTargetPageSize}});
  s.part(2);
  s.page("pc.ram", 0, 0xa1);
  s.zero("pc.ram", 1, true);
  s.page("pc.ram", 2, 0xa2, true);
  s.zero("pc.bios", 0);
  s.page("pc.bios", 1, 0xb1, true);
  s.eos(2);
  s.part(2, true);
  s.page("pc.ram", 2, 0xc2);  // re-save: a duplicate
  s.zero("pc.ram", 0, true);  // page 0 became zero
  s.eos(2);
  // The device's data holds 0x7e + its own section id: only the one before EOF is its footer.
  s.device(3, "cpu", 0, {1, 2, 0x7e, 0, 0, 0, 3, 4, 5});
  s.device(4, "dma", 1, {9});
  s.eof_and_vmdesc(R"({"page_size": 4096, "devices": [{"name": "cpu", "instance_id": 0}, {"name": "dma", "instance_id": 1}]})");
  return s.b;
}

TEST(QemuStream, CountsContentsAndBytesOfAHandBuiltStream) {
  const auto bytes = sample_stream();
  Recorder rec;
  MigrationStreamParser p(&rec);
  p.feed(bytes.data(), bytes.size());
  p.finish();
  EXPECT_EQ(p.machine_type(), "pc-i440fx-7.2");
  ASSERT_EQ(p.blocks().size(), 2u);
  EXPECT_EQ(p.blocks()[0].name, "pc.ram");
  EXPECT_EQ(p.blocks()[0].bytes, 8 * kTargetPageSize);
  EXPECT_EQ(p.pages_saved(), 7u);
  EXPECT_EQ(p.unique_pages(), 5u);
  EXPECT_EQ(p.duplicate_pages(), 2u);
  EXPECT_EQ(p.zero_pages(), 3u);
  EXPECT_EQ(p.blocks()[0].pages_saved, 5u);
  EXPECT_EQ(p.blocks()[0].duplicate_pages(), 2u);
  EXPECT_EQ(p.ram_parts(), 3u);
  EXPECT_TRUE(p.ram_end_seen());
  // The last record of each page wins.
  EXPECT_EQ(rec.last_fill.at({0, 0}), -1);
  EXPECT_EQ(rec.last_fill.at({0, 1}), -1);
  EXPECT_EQ(rec.last_fill.at({0, 2}), 0xc2);
  EXPECT_EQ(rec.last_fill.at({1, 1}), 0xb1);
  ASSERT_EQ(p.devices().size(), 2u);
  EXPECT_EQ(p.devices()[0].name, "cpu");
  EXPECT_EQ(p.devices()[0].bytes, 1u + 4 + 4 + 4 + 4 + 9 + 5);
  EXPECT_EQ(p.devices()[1].bytes, 1u + 4 + 4 + 4 + 4 + 1 + 5);
  const auto& by = p.bytes();
  EXPECT_EQ(by.total, bytes.size());
  EXPECT_EQ(by.page_data, 4 * kTargetPageSize);
  EXPECT_EQ(by.ram + by.devices + by.other + by.vmdesc, by.total);
}

TEST(QemuStream, ByteAtATimeFeedGivesTheSameResult) {
  const auto bytes = sample_stream();
  MigrationStreamParser whole, split;
  whole.feed(bytes.data(), bytes.size());
  whole.finish();
  for (uint8_t b : bytes) split.feed(&b, 1);
  split.finish();
  EXPECT_EQ(split.pages_saved(), whole.pages_saved());
  EXPECT_EQ(split.unique_pages(), whole.unique_pages());
  EXPECT_EQ(split.zero_pages(), whole.zero_pages());
  EXPECT_EQ(split.bytes().ram, whole.bytes().ram);
  EXPECT_EQ(split.bytes().devices, whole.bytes().devices);
  EXPECT_EQ(split.devices().size(), whole.devices().size());
}

TEST(QemuStream, EveryTruncationIsAnError) {
  const auto bytes = sample_stream();
  // Every prefix (stepping over page payloads) must be rejected, never accepted or crash.
  for (size_t n = 0; n < bytes.size(); n += (n > 64 && n + 4200 < bytes.size() ? 97 : 1)) {
    MigrationStreamParser p;
    EXPECT_THROW(
        {
          p.feed(bytes.data(), n);
          p.finish();
        },
        StreamError)
        << "prefix of " << n << " bytes";
  }
}

TEST(QemuStream, RejectsCorruptionWithAReason) {
  auto expect_error = [](std::vector<uint8_t> bytes, const std::string& needle) {
    MigrationStreamParser p;
    try {
      p.feed(bytes.data(), bytes.size());
      p.finish();
      ADD_FAILURE() << "accepted a stream that should fail with '" << needle << "'";
    } catch (const StreamError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  auto good = sample_stream();
  auto bad_magic = good;
  bad_magic[0] = 'X';
  expect_error(bad_magic, "no QEVM magic");

  // A RAM section of one 4-page block, then `record` in its first iteration.
  auto in_ram_part = [](const std::function<void(StreamBuilder&)>& record) {
    StreamBuilder s;
    s.header();
    s.ram_start(2, {{"pc.ram", 4 * kTargetPageSize}});
    s.part(2);
    record(s);
    return s.b;
  };
  expect_error(in_ram_part([](StreamBuilder& s) { s.be64(0x40); }), "xbzrle");  // an XBZRLE record
  expect_error(in_ram_part([](StreamBuilder& s) { s.page("pc.ram", 4, 1); }), "beyond RAM block");
  expect_error(in_ram_part([](StreamBuilder& s) { s.page("vga.vram", 0, 1); }), "unknown RAM block");
  expect_error(in_ram_part([](StreamBuilder& s) { s.page("pc.ram", 0, 1, true); }), "before any was named");

  StreamBuilder other_iter;
  other_iter.header();
  other_iter.u8(0x01);
  other_iter.be32(2);
  other_iter.str8("block");
  other_iter.be32(0);
  other_iter.be32(1);
  expect_error(other_iter.b, "iterative section 'block'");

  // A device the description does not list where the stream has one.
  StreamBuilder wrong_dev;
  wrong_dev.header();
  wrong_dev.ram_start(2, {{"pc.ram", kTargetPageSize}});
  wrong_dev.device(3, "cpu", 0, {1});
  wrong_dev.eof_and_vmdesc(R"({"devices": [{"name": "apic", "instance_id": 0}]})");
  expect_error(wrong_dev.b, "expected device section 'apic'");
}

TEST(QemuStream, StreamWithoutDescriptionIsRejected) {
  // Without the description a device section's end cannot be found: refuse rather than guess.
  StreamBuilder s;
  s.header();
  s.ram_start(2, {{"pc.ram", 2 * kTargetPageSize}});
  s.part(2, true);
  s.page("pc.ram", 0, 7);
  s.zero("pc.ram", 1, true);
  s.eos(2);
  s.device(3, "cpu", 0, {1, 2, 3});
  s.u8(0x00);
  MigrationStreamParser p;
  p.feed(s.b.data(), s.b.size());
  EXPECT_EQ(p.pages_saved(), 2u);
  EXPECT_THROW(p.finish(), StreamError);
}

TEST(QemuStamps, SetUpContentAndOwnStampsPassOthersFail) {
  snap::RegionOptions opts;
  opts.populate = 0.5;
  opts.seed = 7;
  std::vector<uint8_t> initial(snap::kPageSize), page(snap::kPageSize);
  for (uint64_t index : {0, 1, 2, 3}) {  // populated and never-touched pages alike
    snap::region_initial_page(opts, index, initial.data());
    page = initial;
    EXPECT_EQ(snap::qemu::check_page_stamps(page.data(), index, initial.data()), "");
    for (uint64_t seq : {uint64_t(256), uint64_t(257 + 256 * 300), uint64_t(1) << 40}) {
      std::memcpy(page.data() + snap::stamp_offset(seq), &seq, 8);
      std::memcpy(page.data() + snap::stamp_offset(seq) + 8, &index, 8);
    }
    EXPECT_EQ(snap::qemu::check_page_stamps(page.data(), index, initial.data()), "");
    // Another page's stamp: a misplaced page.
    auto misplaced = page;
    const uint64_t seq = 999, other = index + 1;
    std::memcpy(misplaced.data() + snap::stamp_offset(seq), &seq, 8);
    std::memcpy(misplaced.data() + snap::stamp_offset(seq) + 8, &other, 8);
    EXPECT_NE(snap::qemu::check_page_stamps(misplaced.data(), index, initial.data()).find("nor a stamp of this page"),
              std::string::npos);
    // A stamp in a slot its sequence number does not select: torn or shifted content.
    auto shifted = page;
    const uint64_t seq2 = 1000;
    std::memcpy(shifted.data() + snap::stamp_offset(seq2 + 1), &seq2, 8);
    std::memcpy(shifted.data() + snap::stamp_offset(seq2 + 1) + 8, &index, 8);
    EXPECT_NE(snap::qemu::check_page_stamps(shifted.data(), index, initial.data()), "");
    // One flipped byte of set-up content.
    auto flipped = page;
    flipped[4095] ^= 1;
    EXPECT_NE(snap::qemu::check_page_stamps(flipped.data(), index, initial.data()), "");
  }
}

TEST(QemuStamps, InitialPageMatchesWhatTheRegionBuilds) {
  for (bool shared : {false, true}) {
    snap::RegionOptions opts;
    opts.bytes = 64 * snap::kPageSize;
    opts.populate = 0.5;
    opts.seed = 3;
    opts.shared = shared;
    snap::Region region(opts);
    EXPECT_EQ(region.fd() >= 0, shared);
    std::vector<uint8_t> initial(snap::kPageSize);
    size_t populated = 0;
    for (size_t i = 0; i < region.pages(); ++i) {
      populated += snap::region_initial_page(opts, i, initial.data());
      EXPECT_EQ(std::memcmp(initial.data(), region.page(i), snap::kPageSize), 0) << "page " << i;
    }
    EXPECT_EQ(populated, region.populated_pages());
    EXPECT_GT(populated, 0u);
    EXPECT_LT(populated, region.pages());
  }
}

}  // namespace
