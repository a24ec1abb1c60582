// Kernel constants and structs newer than the installed 6.1 headers (userfaultfd WP_ASYNC,
// PAGEMAP_SCAN), each behind #ifndef so newer headers win. Values from the Linux 6.7+ UAPI.
#pragma once
#include <linux/fs.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#include <cstdint>

#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)

struct page_region {
  uint64_t start;
  uint64_t end;
  uint64_t categories;
};

#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)

struct pm_scan_arg {
  uint64_t size;
  uint64_t flags;
  uint64_t start;
  uint64_t end;
  uint64_t walk_end;
  uint64_t vec;
  uint64_t vec_len;
  uint64_t max_pages;
  uint64_t category_inverted;
  uint64_t category_mask;
  uint64_t category_anyof_mask;
  uint64_t return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

// KVM (the installed 6.1 <linux/kvm.h> has the dirty ring and manual dirty-log protect; these are newer).
#ifndef KVM_CAP_MEMORY_FAULT_INFO
#define KVM_CAP_MEMORY_FAULT_INFO 232
#endif
#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39
// kvm_run's exit data for KVM_EXIT_MEMORY_FAULT (Linux 6.8+), read at the union's offset.
struct kvm_memory_fault_compat {
  uint64_t flags;
  uint64_t gpa;
  uint64_t size;
};
#endif

// In C++ the 6.1 headers' __DECLARE_FLEX_ARRAY gives struct kvm_cpuid2 an empty-struct member, so its
// sizeof is 12 instead of the kernel's 8 and the ioctl numbers derived from it are unknown to the
// kernel (EINVAL). These use the real 8-byte header; the entries follow it at byte 8.
struct kvm_cpuid2_head {
  uint32_t nent;
  uint32_t padding;
};
#define SNAP_KVM_GET_SUPPORTED_CPUID _IOWR(KVMIO, 0x05, struct kvm_cpuid2_head)
#define SNAP_KVM_SET_CPUID2 _IOW(KVMIO, 0x90, struct kvm_cpuid2_head)
