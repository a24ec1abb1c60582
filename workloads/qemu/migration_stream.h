// A parser of QEMU's migration stream (format of QEMU 7.2, migration/savevm.c and migration/ram.c):
// file header, configuration section, the RAM section's records (page address + flags), then the
// device sections, the EOF marker and the JSON VM description. Fed incrementally, so a stream of
// any size passes through with only the device part (small) buffered.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace snap::qemu {

// The stream is truncated, malformed, or uses a feature this parser does not read (e.g. xbzrle).
struct StreamError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr size_t kTargetPageSize = 4096;  // x86's TARGET_PAGE_SIZE: the unit of RAM records

// One migratable RAM block, as listed in the RAM section's setup (e.g. "pc.ram", "pc.bios").
struct RamBlock {
  std::string name;
  uint64_t bytes = 0;
  uint64_t pages_saved = 0;      // page records (normal + zero), including re-saves
  uint64_t unique_pages = 0;     // distinct pages recorded
  uint64_t zero_pages = 0;       // records with RAM_SAVE_FLAG_ZERO
  uint64_t duplicate_pages() const { return pages_saved - unique_pages; }
  std::vector<uint64_t> seen;    // bitmap of recorded pages
};

// One device section (QEMU_VM_SECTION_FULL) and its size in the stream, header and footer included.
struct DeviceSection {
  std::string name;
  uint32_t instance_id = 0;
  uint64_t bytes = 0;
};

// Where the bytes of a stream went.
struct StreamBytes {
  uint64_t total = 0;       // every byte fed
  uint64_t ram = 0;         // RAM sections: headers, records, page data, EOS markers, footers
  uint64_t page_data = 0;   // of which 4 KiB page payloads
  uint64_t devices = 0;     // device sections (non-iterable state)
  uint64_t other = 0;       // file header, configuration, EOF marker, commands
  uint64_t vmdesc = 0;      // the JSON VM description at the end (marker, length and text)
};

// Receives every page record in stream order. `data` is the page (4 KiB), or null for a zero page
// (RAM_SAVE_FLAG_ZERO with fill byte 0; a non-zero fill byte is passed as a filled page).
class PageVisitor {
 public:
  virtual ~PageVisitor() = default;
  // The RAM block list, once, before any page (indices of on_page refer to it).
  virtual void on_blocks(const std::vector<RamBlock>& /*blocks*/) {}
  virtual void on_page(size_t block, uint64_t page_index, const uint8_t* data) = 0;
};

class MigrationStreamParser {
 public:
  explicit MigrationStreamParser(PageVisitor* visitor = nullptr) : visitor_(visitor) {}
  // Parses what it can of `len` more bytes; keeps an incomplete record for the next call.
  void feed(const uint8_t* data, size_t len);
  // The stream ended: parses the device sections, EOF and VM description; throws StreamError when
  // the stream is truncated or malformed.
  void finish();

  const std::string& machine_type() const { return machine_; }
  const std::vector<RamBlock>& blocks() const { return blocks_; }
  const std::vector<DeviceSection>& devices() const { return devices_; }
  const StreamBytes& bytes() const { return bytes_; }
  // RAM section chunks: START (setup), PART (one per saving iteration), END (the completion).
  uint64_t ram_parts() const { return ram_parts_; }
  bool ram_end_seen() const { return ram_end_; }
  // Index of a block by name, or -1.
  int block_index(const std::string& name) const;
  // Totals over every block.
  uint64_t pages_saved() const;
  uint64_t unique_pages() const;
  uint64_t zero_pages() const;
  uint64_t duplicate_pages() const { return pages_saved() - unique_pages(); }

 private:
  enum class State { kHeader, kTop, kRamData, kTail, kDone };
  bool step();  // parses one item from buf_ at pos_; false when more bytes are needed
  bool step_top();
  bool step_ram();
  bool step_configuration(size_t at);
  void parse_tail();
  [[noreturn]] void fail(const std::string& what, uint64_t offset) const;

  PageVisitor* visitor_;
  State state_ = State::kHeader;
  std::vector<uint8_t> buf_;
  size_t pos_ = 0;              // parse position in buf_
  uint64_t consumed_ = 0;       // stream offset of buf_[0]
  std::string machine_;
  std::vector<RamBlock> blocks_;
  std::vector<DeviceSection> devices_;
  StreamBytes bytes_;
  int64_t ram_section_id_ = -1;
  uint32_t current_section_ = 0;
  bool in_setup_ = false;
  int last_block_ = -1;         // for RAM_SAVE_FLAG_CONTINUE
  uint64_t ram_parts_ = 0;
  bool ram_end_ = false;
  uint64_t section_start_ = 0;  // stream offset where the current RAM section began
};

}  // namespace snap::qemu
