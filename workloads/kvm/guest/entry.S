/* The guest's entries: a multiboot header; the 32-bit protected-mode entry (what a multiboot loader
   such as QEMU's -kernel calls) that builds identity page tables (2 MiB pages over the first 64 GiB),
   enters long mode and calls guest_main(vcpu); and a 64-bit entry at a fixed address for a VMM that
   sets up long mode itself (the in-tree VMM does: see guest_abi.h, kEntry64Gpa). */
#define MB_MAGIC 0x1badb002
#define MB_FLAGS 0
#define VMM_MAGIC 0x534e4150
#define MULTIBOOT_EAX 0x2badb002
#define MAPPED_GIB 64
#define STACK_BYTES 16384
#define MAX_VCPUS 64

  .section .multiboot, "a"
  .balign 4
  .long MB_MAGIC
  .long MB_FLAGS
  .long -(MB_MAGIC + MB_FLAGS)

  .section .text.entry, "ax"
  .code32
  .globl _start
_start:
  cli
  /* vCPU number: 0 from a multiboot loader, ESI from the in-tree VMM. */
  xorl %edi, %edi
  cmpl $VMM_MAGIC, %eax
  jne 1f
  movl %esi, %edi
1:
  cmpl $MAX_VCPUS, %edi
  jae hang32

  /* Page tables. Every vCPU writes the same values, so concurrent builders cannot disagree. */
  movl $pdpt, %eax
  orl $7, %eax                   /* present | writable | user: the write loop runs at CPL 3 */
  movl %eax, pml4
  movl $0, pml4 + 4
  xorl %ecx, %ecx                /* GiB index */
2:
  movl %ecx, %eax
  shll $12, %eax
  addl $pds, %eax
  movl %eax, %edx
  orl $7, %edx
  movl %edx, pdpt(,%ecx,8)
  movl $0, pdpt + 4(,%ecx,8)
  /* 512 entries of 2 MiB in this PD: address = ecx GiB + ebx * 2 MiB. */
  xorl %ebx, %ebx
3:
  movl %ebx, %edx
  shll $21, %edx
  orl $0x87, %edx                /* present | writable | user | 2 MiB page */
  movl %edx, (%eax,%ebx,8)
  movl %ecx, %edx
  shrl $2, %edx                  /* high bits of (ecx << 30) */
  movl %edx, 4(%eax,%ebx,8)
  movl %ecx, %edx
  shll $30, %edx
  orl %edx, (%eax,%ebx,8)
  incl %ebx
  cmpl $512, %ebx
  jb 3b
  incl %ecx
  cmpl $MAPPED_GIB, %ecx
  jb 2b

  /* CR4: PAE | OSFXSR | OSXMMEXCPT (the C++ code uses SSE for doubles). */
  movl %cr4, %eax
  orl $((1 << 5) | (1 << 9) | (1 << 10)), %eax
  movl %eax, %cr4
  movl $pml4, %eax
  movl %eax, %cr3
  /* EFER.LME */
  movl $0xc0000080, %ecx
  rdmsr
  orl $(1 << 8), %eax
  wrmsr
  /* CR0: PG | PE | MP, EM clear */
  movl %cr0, %eax
  andl $~(1 << 2), %eax
  orl $((1 << 31) | (1 << 1) | 1), %eax
  movl %eax, %cr0
  lgdt gdt_pointer
  ljmp $0x08, $long_mode

hang32:
  hlt
  jmp hang32

  .code64
long_mode:
  movw $0x10, %ax
  movw %ax, %ds
  movw %ax, %es
  movw %ax, %ss
  xorw %ax, %ax
  movw %ax, %fs
  movw %ax, %gs
long_common:
  /* Stack: the top of this vCPU's slot. */
  movl %edi, %eax
  incq %rax
  imulq $STACK_BYTES, %rax
  leaq stacks(%rip), %rsp
  addq %rax, %rsp
  fninit
  /* An idle guest of a VMM without the guest's ports halts in here (main.cpp); EDI survives. Two
     pushes keep RSP 16-byte aligned at the call. */
  pushq %rdi
  pushq %rdi
  call guest_halt_if_idle
  popq %rdi
  popq %rdi
  /* Drop to CPL 3 for good: a KVM that emulates supervisor code (the nested one here does, at
     ~4 us an instruction) runs user code natively. IOPL 3 lets the loop use its I/O ports; IF stays
     clear (a loader may leave a timer interrupt unmasked and there is no IDT). Nothing returns to
     CPL 0: an exception would shut the machine down, which the VMM reports. */
  leaq -8(%rsp), %rax            /* as after a call: (RSP + 8) 16-byte aligned at guest_main */
  pushq $0x1b                    /* SS: user data */
  pushq %rax                     /* RSP */
  pushq $0x3002                  /* RFLAGS: IOPL 3, IF clear */
  pushq $0x23                    /* CS: user code */
  leaq guest_main(%rip), %rax
  pushq %rax                     /* RIP */
  iretq

  /* The 64-bit entry: paging, long mode and flat segments set by the VMM; ESI = the vCPU's number. */
  .section .text.entry64, "ax"
  .code64
  .globl entry64
entry64:
  nop
  movl %esi, %edi
  cmpl $MAX_VCPUS, %edi
  jae 5f
  jmp long_common
5:
  hlt
  jmp 5b

  .section .rodata
  .balign 8
gdt:
  .quad 0
  .quad 0x00af9a000000ffff       /* 0x08: 64-bit code */
  .quad 0x00cf92000000ffff       /* 0x10: data */
  .quad 0x00cff2000000ffff       /* 0x18: user data */
  .quad 0x00affa000000ffff       /* 0x20: user 64-bit code */
gdt_end:
gdt_pointer:
  .word gdt_end - gdt - 1
  .long gdt

  .section .bss
  .balign 4096
pml4:
  .skip 4096
pdpt:
  .skip 4096
pds:
  .skip 4096 * MAPPED_GIB
  .balign 16
stacks:
  .skip STACK_BYTES * MAX_VCPUS
