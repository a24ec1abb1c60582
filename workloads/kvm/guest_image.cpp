// The guest program's ELF32 image (built from workloads/kvm/guest/ at build time), embedded as bytes.
// SNAPBENCH_GUEST_ELF is the built file's path, set by workloads/kvm/guest/guest.cmake.
asm(".section .rodata.snap_guest, \"a\"\n"
    ".balign 16\n"
    ".globl snap_guest_elf_start\n"
    "snap_guest_elf_start:\n"
    ".incbin \"" SNAPBENCH_GUEST_ELF "\"\n"
    ".globl snap_guest_elf_end\n"
    "snap_guest_elf_end:\n"
    ".previous\n");
