# Builds the KVM guest program from source with the project's own compiler and binutils: 64-bit code
# linked at 1 MiB, then rewrapped as an ELF32 (QEMU's multiboot loader refuses ELF64), embedded into
# the library by workloads/kvm/guest_image.cpp.
set(SNAP_GUEST_SRC ${CMAKE_CURRENT_SOURCE_DIR}/workloads/kvm/guest)
set(SNAP_GUEST_OUT ${CMAKE_BINARY_DIR}/guest)
set(SNAP_GUEST_ELF ${SNAP_GUEST_OUT}/snapbench-guest.elf)
set(SNAP_GUEST_CXXFLAGS -std=c++20 -m64 -march=x86-64 -O2 -ffreestanding -nostdlib -fno-pic -fno-pie
  -fno-exceptions -fno-rtti -fno-asynchronous-unwind-tables -fno-stack-protector -fcf-protection=none
  -mno-red-zone -fno-builtin -Wall -Wextra -Werror -I${CMAKE_CURRENT_SOURCE_DIR})
file(MAKE_DIRECTORY ${SNAP_GUEST_OUT})
add_custom_command(OUTPUT ${SNAP_GUEST_ELF}
  COMMAND ${CMAKE_CXX_COMPILER} ${SNAP_GUEST_CXXFLAGS} -c ${SNAP_GUEST_SRC}/main.cpp -o main.o
  COMMAND ${CMAKE_CXX_COMPILER} -m64 -c ${SNAP_GUEST_SRC}/entry.S -o entry.o
  COMMAND ${CMAKE_LINKER} -m elf_x86_64 -static -nostdlib -z max-page-size=4096 -z noexecstack
    --no-warn-rwx-segments -T ${SNAP_GUEST_SRC}/guest.ld -o guest64.elf entry.o main.o
  COMMAND ${CMAKE_OBJCOPY} -O elf32-i386 guest64.elf snapbench-guest.elf
  DEPENDS ${SNAP_GUEST_SRC}/main.cpp ${SNAP_GUEST_SRC}/entry.S ${SNAP_GUEST_SRC}/guest.ld
    ${CMAKE_CURRENT_SOURCE_DIR}/workloads/kvm/guest_abi.h ${CMAKE_CURRENT_SOURCE_DIR}/workloads/pattern_math.h
    ${CMAKE_CURRENT_SOURCE_DIR}/core/histogram_layout.h
  WORKING_DIRECTORY ${SNAP_GUEST_OUT}
  COMMENT "Building the KVM guest program")
add_custom_target(snapbench-guest DEPENDS ${SNAP_GUEST_ELF})
set_source_files_properties(${CMAKE_CURRENT_SOURCE_DIR}/workloads/kvm/guest_image.cpp PROPERTIES
  COMPILE_DEFINITIONS "SNAPBENCH_GUEST_ELF=\"${SNAP_GUEST_ELF}\"" OBJECT_DEPENDS ${SNAP_GUEST_ELF})
