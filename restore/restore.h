// The restore-strategy interface (one file per restore strategy), the image index they read pages
// through, and the explicit registry that lists them (restore/registry.cpp).
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/image.h"
#include "core/params.h"
#include "core/unit.h"

namespace snap {

// Where each page of an image lives: the file offset of its last record's data, or a mark for a
// zero record and for a page no record covers (a fresh region's zeros are right for both).
struct ImageIndex {
  static constexpr uint64_t kAbsent = 0;             // no record: the page is zero
  static constexpr uint64_t kZero = ~uint64_t(0);    // last record is a zero record
  ImageHeader header;
  uint64_t records = 0;
  uint64_t data_pages = 0;       // pages whose last record carries data
  std::vector<uint64_t> where;   // per page: kAbsent, kZero or the data's byte offset in the file
  bool has_data(uint64_t page) const { return where[page] != kAbsent && where[page] != kZero; }
};

// Builds the index of the image in `fd` by one sequential pass over the file, checking what the
// reader checks (magic, version, bounds, trailer, checksum). Throws ImageError (truncated, corrupt).
ImageIndex build_image_index(int fd);

// Numbers a restore strategy reports; the harness times the phases itself.
struct RestoreMetrics {
  std::atomic<uint64_t> faults{0};       // faults the strategy served (uffd: MISSING faults answered)
  std::atomic<uint64_t> bytes_read{0};   // bytes read from the image (or mapped from the flat file)
  uint64_t extra_bytes = 0;              // memory the strategy added (buffers, bitmaps, private copies)
  // now_ns() when every page of the region became resident, 0 while some page is not.
  std::atomic<uint64_t> resident_at_ns{0};
  std::string notes;                     // "key=value;..." strategy-specific facts
  void note(const std::string& key, const std::string& value) {
    notes += (notes.empty() ? "" : ";") + key + "=" + value;
  }
};

// Everything a restore strategy gets for one restore.
struct RestoreContext {
  uint8_t* base;               // the fresh region: anonymous, never touched, MADV_NOHUGEPAGE
  uint64_t pages;
  int image_fd;                // the image file (read-only)
  const ImageIndex& index;
  int flat_fd;                 // the flat memory file (-1 unless the descriptor asks for one)
  RestoreMetrics& metrics;
  const ParamValues& params;   // this restore strategy's --set values
  // prefetch: the pages a first restore saw the workload touch, in the order it touched them
  // (null on that first, recording restore).
  const std::vector<uint64_t>* working_set = nullptr;
  // prefetch's recording restore: the strategy appends each page it serves on a fault here.
  bool record = false;
};

class Restorer;

// A restore strategy's descriptor: its fixed facts, declared once in its own file.
struct RestoreEntry {
  std::string name = {};              // registry key, --restore value, CSV value
  std::string help = {};              // one line for `snapbench list`
  std::vector<ParamSpec> params = {}; // settable with --set NAME.PARAM=VALUE
  bool needs_flat_file = false;       // mmap: the harness makes the flat file first (not timed)
  bool records_working_set = false;   // prefetch: a first restore records, the timed one prefetches
  std::unique_ptr<Restorer> (*factory)(const RestoreEntry&) = nullptr;
  std::unique_ptr<Restorer> make() const { return factory(*this); }
};

// One restore. start() returns when the workload may run (resume); complete() makes every page
// resident (after the measured window, not timed as the restore's); stop() tears everything down.
// On every exit path (a throw, a dead handler) stop() leaves nothing registered and no thread of the
// workload blocked in a fault; the destructor calls it.
class Restorer {
 public:
  explicit Restorer(const RestoreEntry& info) : info_(info) {}
  virtual ~Restorer() = default;
  const RestoreEntry& info() const { return info_; }
  virtual Support probe() const = 0;
  virtual void start(RestoreContext& ctx) = 0;
  // Why the restore has failed while the workload ran (a handler died), "" while it is healthy.
  virtual std::string failure() const { return ""; }
  // At the window's end, before complete(): a strategy whose faults and reads the kernel does (mmap)
  // counts them here; the harness reads the metrics right after.
  virtual void measure(RestoreContext&) {}
  virtual void complete(RestoreContext& ctx) = 0;
  virtual void stop() = 0;
  // prefetch's recording restore: the pages served on faults, in order (empty for the others).
  virtual std::vector<uint64_t> recorded() const { return {}; }

 private:
  const RestoreEntry& info_;
};

template <class R>
std::unique_ptr<Restorer> make_restorer_of(const RestoreEntry& info) {
  return std::make_unique<R>(info);
}

// The registry: one line per restore strategy, in restore/registry.cpp.
const Registry<RestoreEntry>& restore_registry();

}  // namespace snap
