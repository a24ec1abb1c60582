// The explicit registry of restore strategies: one line per unit, naming the function (defined in the
// unit's own file) that returns its descriptor.
#include "restore/restore.h"

// In the order `snapbench list` shows them.
#define SNAP_RESTORES(X)          \
  X(eager_restore)                \
  X(mmap_restore)                 \
  X(uffd_lazy_restore)            \
  X(uffd_lazy_prefault_restore)   \
  X(prefetch_restore)

namespace snap {

#define SNAP_DECLARE_RESTORE(descriptor) const RestoreEntry& descriptor();
#define SNAP_ENTRY(descriptor) descriptor(),
SNAP_RESTORES(SNAP_DECLARE_RESTORE)

const Registry<RestoreEntry>& restore_registry() {
  static const Registry<RestoreEntry> registry("--restore", "restore strategy", {SNAP_RESTORES(SNAP_ENTRY)});
  return registry;
}

}  // namespace snap
