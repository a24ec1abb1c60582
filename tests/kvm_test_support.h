// SKIP_WITHOUT_KVM: skips a kvm test with the reason this machine cannot run a guest.
#pragma once
#include <gtest/gtest.h>

#include <string>

#include "workloads/kvm/vm.h"

#define SKIP_WITHOUT_KVM()                                                          \
  do {                                                                             \
    if (const std::string why = snap::kvm::kvm_unavailable_reason(); !why.empty()) \
      GTEST_SKIP() << "no usable /dev/kvm: " << why;                               \
  } while (0)
