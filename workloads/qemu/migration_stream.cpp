// MigrationStreamParser: reads QEMU 7.2's migration stream record by record (see migration_stream.h).
// Format facts (learned from QEMU's migration/savevm.c, migration/ram.c and checked on streams of
// Debian's QEMU 7.2): big-endian integers; "QEVM" + version 3; section types 0x01 START, 0x02 PART,
// 0x03 END, 0x04 FULL, 0x05 subsection, 0x06 VM description, 0x07 configuration, 0x08 command,
// 0x00 EOF, 0x7e footer; a RAM record is a be64 whose low 12 bits are flags (0x02 zero, 0x04 memory
// size + block list, 0x08 page, 0x10 end of section data, 0x20 same block as the previous record)
// and whose upper bits are the page's offset inside its RAM block.
#include "workloads/qemu/migration_stream.h"

#include <algorithm>
#include <cstring>

#include <nlohmann/json.hpp>

namespace snap::qemu {

namespace {

constexpr uint32_t kMagic = 0x5145564d;  // "QEVM"
constexpr uint32_t kVersion = 3;

constexpr uint8_t kSecEof = 0x00, kSecStart = 0x01, kSecPart = 0x02, kSecEnd = 0x03, kSecFull = 0x04,
                  kSecSub = 0x05, kSecVmdesc = 0x06, kSecConfig = 0x07, kSecCommand = 0x08, kSecFooter = 0x7e;

constexpr uint64_t kFlagZero = 0x02, kFlagMemSize = 0x04, kFlagPage = 0x08, kFlagEos = 0x10,
                   kFlagContinue = 0x20;
// Records this parser does not decode: obsolete FULL, XBZRLE, RDMA hook, compressed page.
constexpr uint64_t kFlagsUnsupported = 0x01 | 0x40 | 0x80 | 0x100;
constexpr uint64_t kFlagMask = kTargetPageSize - 1;

uint16_t be16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
uint32_t be32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }
uint64_t be64(const uint8_t* p) { return uint64_t(be32(p)) << 32 | be32(p + 4); }

std::string hex(uint64_t v) {
  char b[32];
  snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

}  // namespace

void MigrationStreamParser::fail(const std::string& what, uint64_t offset) const {
  throw StreamError("QEMU migration stream: " + what + " at byte " + std::to_string(offset));
}

int MigrationStreamParser::block_index(const std::string& name) const {
  for (size_t i = 0; i < blocks_.size(); ++i)
    if (blocks_[i].name == name) return int(i);
  return -1;
}

uint64_t MigrationStreamParser::pages_saved() const {
  uint64_t n = 0;
  for (const auto& b : blocks_) n += b.pages_saved;
  return n;
}
uint64_t MigrationStreamParser::unique_pages() const {
  uint64_t n = 0;
  for (const auto& b : blocks_) n += b.unique_pages;
  return n;
}
uint64_t MigrationStreamParser::zero_pages() const {
  uint64_t n = 0;
  for (const auto& b : blocks_) n += b.zero_pages;
  return n;
}

void MigrationStreamParser::feed(const uint8_t* data, size_t len) {
  if (state_ == State::kDone) fail("bytes after the end of the stream", consumed_ + buf_.size());
  bytes_.total += len;
  if (state_ != State::kTail && pos_ > 0) {
    // Drop what was parsed; what remains is at most one incomplete record.
    buf_.erase(buf_.begin(), buf_.begin() + ptrdiff_t(pos_));
    consumed_ += pos_;
    pos_ = 0;
  }
  buf_.insert(buf_.end(), data, data + len);
  while (state_ != State::kTail && step()) {
  }
}

bool MigrationStreamParser::step() {
  switch (state_) {
    case State::kHeader: {
      if (buf_.size() - pos_ < 8) return false;
      const uint8_t* p = buf_.data() + pos_;
      if (be32(p) != kMagic) fail("not a QEMU migration stream (no QEVM magic)", consumed_ + pos_);
      if (be32(p + 4) != kVersion) fail("unsupported stream version " + std::to_string(be32(p + 4)), consumed_ + pos_ + 4);
      pos_ += 8;
      bytes_.other += 8;
      state_ = State::kTop;
      return true;
    }
    case State::kTop: return step_top();
    case State::kRamData: return step_ram();
    case State::kTail:
    case State::kDone: return false;
  }
  return false;
}

bool MigrationStreamParser::step_configuration(size_t at) {
  // 0x07, be32 name length, machine type name, then optional subsections (capabilities, uuid...).
  const size_t avail = buf_.size() - at;
  const uint8_t* p = buf_.data() + at;
  if (avail < 5) return false;
  const uint32_t len = be32(p + 1);
  if (len > 256) fail("configuration name of " + std::to_string(len) + " bytes", consumed_ + at);
  size_t q = 5 + len;
  if (avail < q) return false;
  std::string machine(reinterpret_cast<const char*>(p + 5), len);
  // Subsections: 0x05, u8 name length, name, be32 version, then the subsection's fields.
  while (true) {
    if (avail < q + 1) return false;
    if (p[q] != kSecSub) break;
    if (avail < q + 2) return false;
    const size_t nlen = p[q + 1];
    if (avail < q + 2 + nlen + 4) return false;
    const std::string name(reinterpret_cast<const char*>(p + q + 2), nlen);
    size_t r = q + 2 + nlen + 4;
    if (name == "configuration/target-page-bits") {
      if (avail < r + 4) return false;
      if ((1u << be32(p + r)) != kTargetPageSize)
        fail("target page size " + std::to_string(1u << be32(p + r)) + " (only 4096 is read)", consumed_ + at + r);
      r += 4;
    } else if (name == "configuration/capabilities") {
      if (avail < r + 4) return false;
      const uint32_t count = be32(p + r);
      r += 4;
      for (uint32_t i = 0; i < count; ++i) {
        if (avail < r + 1) return false;
        r += 1 + p[r];
      }
      if (avail < r) return false;
    } else if (name == "configuration/uuid") {
      r += 16;
      if (avail < r) return false;
    } else {
      fail("unknown configuration subsection '" + name + "'", consumed_ + at + q);
    }
    q = r;
  }
  machine_ = machine;
  pos_ = at + q;
  bytes_.other += q;
  return true;
}

bool MigrationStreamParser::step_top() {
  const size_t avail = buf_.size() - pos_;
  if (avail < 1) return false;
  const uint8_t* p = buf_.data() + pos_;
  const uint64_t off = consumed_ + pos_;
  switch (p[0]) {
    case kSecConfig: return step_configuration(pos_);
    case kSecStart: {
      if (avail < 6) return false;
      const size_t len = p[5];
      const size_t header = 6 + len + 8;
      if (avail < header) return false;
      const std::string idstr(reinterpret_cast<const char*>(p + 6), len);
      if (idstr != "ram")
        fail("iterative section '" + idstr + "' (only RAM is read: block or dirty-bitmap migration enabled?)", off);
      if (ram_section_id_ >= 0) fail("a second RAM setup section", off);
      ram_section_id_ = be32(p + 1);
      current_section_ = uint32_t(ram_section_id_);
      in_setup_ = true;
      ++ram_parts_;
      pos_ += header;
      bytes_.ram += header;
      state_ = State::kRamData;
      return true;
    }
    case kSecPart:
    case kSecEnd: {
      if (avail < 5) return false;
      if (ram_section_id_ < 0 || be32(p + 1) != uint32_t(ram_section_id_))
        fail("section " + std::to_string(be32(p + 1)) + " continued, which is not the RAM section", off);
      if (ram_end_) fail("RAM section continued after its END", off);
      ram_end_ = p[0] == kSecEnd;
      current_section_ = be32(p + 1);
      ++ram_parts_;
      pos_ += 5;
      bytes_.ram += 5;
      state_ = State::kRamData;
      return true;
    }
    case kSecFull:
    case kSecEof:
      // Device state, EOF and the VM description: kept whole and read at finish() (a device section
      // has no length field; its end is found with the description at the very end of the stream).
      state_ = State::kTail;
      return false;
    case kSecCommand: {
      if (avail < 5) return false;
      const size_t len = be16(p + 3);
      if (avail < 5 + len) return false;
      pos_ += 5 + len;
      bytes_.other += 5 + len;
      return true;
    }
    default:
      fail("unknown section type " + hex(p[0]), off);
  }
}

bool MigrationStreamParser::step_ram() {
  const size_t avail = buf_.size() - pos_;
  if (avail < 8) return false;
  const uint8_t* p = buf_.data() + pos_;
  const uint64_t off = consumed_ + pos_;
  const uint64_t word = be64(p);
  const uint64_t flags = word & kFlagMask;
  const uint64_t addr = word & ~kFlagMask;

  if (flags == kFlagEos) {
    // End of this section's RAM data, then the section footer (0x7e + section id).
    if (avail < 13) return false;
    if (p[8] != kSecFooter || be32(p + 9) != current_section_)
      fail("RAM section " + std::to_string(current_section_) + " without its footer", off + 8);
    pos_ += 13;
    bytes_.ram += 13;
    in_setup_ = false;
    state_ = State::kTop;
    return true;
  }
  if (flags & kFlagsUnsupported)
    fail("RAM record with flags " + hex(flags) + " (xbzrle, compression or RDMA: not read by this parser)", off);
  if (flags == kFlagMemSize) {
    if (!in_setup_ || !blocks_.empty()) fail("RAM block list outside the setup section", off);
    // The total RAM size, then (u8 length, name, be64 bytes) per block until the sizes add up.
    size_t q = 8;
    uint64_t sum = 0;
    std::vector<RamBlock> list;
    while (sum < addr) {
      if (avail < q + 1) return false;
      const size_t len = p[q];
      if (avail < q + 1 + len + 8) return false;
      RamBlock b;
      b.name.assign(reinterpret_cast<const char*>(p + q + 1), len);
      b.bytes = be64(p + q + 1 + len);
      if (b.bytes % kTargetPageSize) fail("RAM block '" + b.name + "' of " + std::to_string(b.bytes) + " bytes", off + q);
      b.seen.assign((b.bytes / kTargetPageSize + 63) / 64, 0);
      sum += b.bytes;
      list.push_back(std::move(b));
      q += 1 + len + 8;
    }
    if (sum != addr)
      fail("RAM blocks add up to " + std::to_string(sum) + " bytes, not the announced " + std::to_string(addr) +
               " (postcopy or ignore-shared fields?)",
           off);
    blocks_ = std::move(list);
    if (visitor_) visitor_->on_blocks(blocks_);
    pos_ += q;
    bytes_.ram += q;
    return true;
  }
  if ((flags & ~kFlagContinue) != kFlagZero && (flags & ~kFlagContinue) != kFlagPage)
    fail("RAM record with unknown flags " + hex(flags), off);

  size_t q = 8;
  int block = last_block_;
  if (!(flags & kFlagContinue)) {
    if (avail < q + 1) return false;
    const size_t len = p[q];
    if (avail < q + 1 + len) return false;
    const std::string name(reinterpret_cast<const char*>(p + q + 1), len);
    block = block_index(name);
    if (block < 0) fail("page of unknown RAM block '" + name + "'", off);
    q += 1 + len;
  } else if (block < 0) {
    fail("RAM record continues a block before any was named", off);
  }
  const bool zero = (flags & kFlagZero) != 0;
  const size_t payload = zero ? 1 : kTargetPageSize;
  if (avail < q + payload) return false;
  RamBlock& b = blocks_[size_t(block)];
  const uint64_t page = addr / kTargetPageSize;
  if (addr >= b.bytes)
    fail("page offset " + hex(addr) + " beyond RAM block '" + b.name + "' (" + std::to_string(b.bytes) + " bytes)", off);
  ++b.pages_saved;
  uint64_t& word_bits = b.seen[page / 64];
  const uint64_t bit = uint64_t(1) << (page % 64);
  if (!(word_bits & bit)) {
    word_bits |= bit;
    ++b.unique_pages;
  }
  if (visitor_) {
    if (zero && p[q] != 0) {
      // A fill byte other than 0 (older QEMUs' "compressed" page): the page is that byte repeated.
      std::vector<uint8_t> filled(kTargetPageSize, p[q]);
      visitor_->on_page(size_t(block), page, filled.data());
    } else {
      visitor_->on_page(size_t(block), page, zero ? nullptr : p + q);
    }
  }
  if (zero && p[q] == 0) ++b.zero_pages;
  if (!zero) bytes_.page_data += kTargetPageSize;
  last_block_ = block;
  pos_ += q + payload;
  bytes_.ram += q + payload;
  return true;
}

namespace {

// Length of a FULL section header at `t` naming `name`/`instance`, or 0 when it does not match.
size_t full_header_matches(const uint8_t* t, size_t avail, const std::string& name, uint32_t instance) {
  if (avail < 6 || t[0] != kSecFull) return 0;
  const size_t len = t[5];
  if (len != name.size() || avail < 6 + len + 8) return 0;
  if (std::memcmp(t + 6, name.data(), len) != 0) return 0;
  if (be32(t + 6 + len) != instance) return 0;
  return 6 + len + 8;
}

}  // namespace

void MigrationStreamParser::finish() {
  if (state_ == State::kDone) return;
  if (state_ == State::kHeader) fail("stream ended inside the file header", consumed_ + buf_.size());
  if (state_ == State::kRamData) fail("stream ended inside a RAM section", consumed_ + buf_.size());
  if (state_ == State::kTop) fail("stream ended without device state and EOF marker", consumed_ + buf_.size());
  parse_tail();
  state_ = State::kDone;
}

void MigrationStreamParser::parse_tail() {
  const uint8_t* t = buf_.data() + pos_;
  const size_t n = buf_.size() - pos_;
  const uint64_t base = consumed_ + pos_;
  // The VM description: 0x06, be32 length, JSON, ending the stream; the byte before it is EOF.
  size_t desc = 0;
  for (size_t p = n >= 6 ? n - 6 : 0; p >= 1; --p) {
    if (t[p] == kSecVmdesc && p + 6 <= n && be32(t + p + 1) == n - p - 5 && t[p + 5] == '{' && t[p - 1] == kSecEof) {
      desc = p;
      break;
    }
  }
  // QEMU 7.2 always ends the stream with it unless the machine has suppress-vmdesc=on, which
  // snapbench never sets: without it the device sections (no length field) cannot be delimited.
  if (desc == 0) fail("stream ended without the EOF marker and VM description", base + n);
  nlohmann::json vm;
  try {
    vm = nlohmann::json::parse(t + desc + 5, t + n);
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("VM description is not JSON: ") + e.what(), base + desc);
  }
  if (vm.contains("page_size") && vm["page_size"] != kTargetPageSize)
    fail("page size " + vm["page_size"].dump() + " in the VM description (only 4096 is read)", base + desc);
  const size_t eof = desc - 1;
  const auto& devs = vm.value("devices", nlohmann::json::array());
  size_t c = 0;
  for (size_t k = 0; k < devs.size(); ++k) {
    const std::string name = devs[k].value("name", "");
    const uint32_t inst = devs[k].value("instance_id", 0u);
    const size_t header = full_header_matches(t + c, eof - c, name, inst);
    if (!header) fail("expected device section '" + name + "'", base + c);
    const uint32_t sid = be32(t + c + 1);
    // The section ends at its footer (0x7e + its id) followed by the next listed device's header,
    // or by the EOF marker for the last one: a footer-like byte pattern inside device data is not
    // followed by that, so the search cannot stop early.
    std::string next_name;
    uint32_t next_inst = 0;
    if (k + 1 < devs.size()) {
      next_name = devs[k + 1].value("name", "");
      next_inst = devs[k + 1].value("instance_id", 0u);
    }
    size_t end = 0;
    for (size_t q = c + header; q + 5 <= eof; ++q) {
      const void* hit = std::memchr(t + q, kSecFooter, eof - q);
      if (!hit) break;
      q = size_t(static_cast<const uint8_t*>(hit) - t);
      if (q + 5 > eof || be32(t + q + 1) != sid) continue;
      const size_t r = q + 5;
      if (k + 1 < devs.size() ? full_header_matches(t + r, eof - r, next_name, next_inst) != 0 : r == eof) {
        end = r;
        break;
      }
    }
    if (!end) fail("device section '" + name + "' has no footer", base + c);
    devices_.push_back({name, inst, end - c});
    bytes_.devices += end - c;
    c = end;
  }
  if (c != eof) fail("unlisted bytes before the EOF marker", base + c);
  bytes_.other += 1;
  bytes_.vmdesc += n - desc;
}

}  // namespace snap::qemu
