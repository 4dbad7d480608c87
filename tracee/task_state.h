// The state a task's future depends on: its general registers, its extended
// registers (x87, SSE, AVX, ...) and the memory of its address space.
//
// Exactness rests on comparing these (docs/exactness.md): two moments of a
// task whose registers, extended registers and memory are all equal cannot
// be told apart by anything the program does next, since everything else it
// sees comes from rec. Memory is compared through a digest that does not
// depend on how the kernel happens to lay out or populate the address space
// (which mappings are merged, which pages were faulted in, which are the
// shared zero page), only on the bytes the program can read:
//   - pages of writable mappings only: read-only memory cannot change
//     without a syscall, and syscalls are events, checked on their own;
//   - a page that is absent, or present and all zeros, counts as zeros and
//     adds nothing: anonymous memory reads as zeros until written;
//   - a page of a private file mapping that was never written (pagemap: a
//     file page, not an anonymous copy) holds the file's bytes, which are
//     the same in recording and replay: skipped;
//   - shared mappings are read through their file (tmpfs, memfd, SysV shm or
//     a regular file), holes skipped, so pages written by other processes
//     and never touched by this one count too;
//   - the digest is a list of (1 MiB block of the address space, hash of its
//     non-zero pages), so a mismatch can be named.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace rec {

// First general register that differs, as "r8 = 0xffffffff (recorded
// 0xffffffffffffffff)"; nullopt when all are equal. eflags is compared
// without RF and TF, which debug traps and single-stepping set.
std::optional<std::string> registerDifference(const user_regs_struct& recorded,
                                              const user_regs_struct& now);

// Registers at a syscall's entry are stored as their difference from a
// prediction: the task's registers at its previous syscall entry, with this
// syscall's number, arguments and address (and what the kernel makes of
// them at entry: rax = -ENOSYS, rcx = the return address, r11 = the flags).
// Between two syscalls mostly the argument registers change, and those are
// stored anyway: the difference is a few registers, not 216 bytes.
user_regs_struct predictSyscallEntry(const user_regs_struct& previous, int number,
                                     const std::array<uint64_t, 6>& args, uint64_t ip);
struct RegisterDelta {
  uint32_t mask = 0;             // bit i: register i (struct order) differs
  std::vector<uint64_t> values;  // the differing ones, in struct order
};
RegisterDelta registerDelta(const user_regs_struct& predicted, const user_regs_struct& actual);
user_regs_struct applyRegisterDelta(user_regs_struct predicted, const RegisterDelta& delta);

// The extended registers as PTRACE_GETREGSET NT_X86_XSTATE returns them
// (XSAVE standard format), the whole area (PTRACE_SETREGSET takes nothing
// shorter). Empty when the kernel offers none.
std::vector<uint8_t> readExtendedRegisters(pid_t tid);

// Name of the first extended register that differs ("xmm3", "mxcsr",
// "ymm5 upper half", ...), nullopt when equal. The XSAVE header (which
// components the CPU happens to track as in use) and the bytes reserved
// for software are not compared: the kernel fills components not in use
// with their initial values.
std::optional<std::string> extendedRegisterDifference(std::span<const uint8_t> recorded,
                                                      std::span<const uint8_t> now);

struct AddressRange {
  uint64_t start = 0;
  uint64_t end = 0;
};

inline constexpr uint64_t kDigestBlock = 1 << 20;

struct BlockDigest {
  uint64_t start = 0;  // kDigestBlock-aligned
  uint64_t hash = 0;   // XXH3-64 of (address, bytes) of each non-zero page, in order
  uint32_t pages = 0;  // non-zero pages hashed
  bool operator==(const BlockDigest&) const = default;
};

struct MemoryDigest {
  std::vector<BlockDigest> blocks;  // by address; blocks without non-zero pages left out
  bool operator==(const MemoryDigest& other) const { return blocks == other.blocks; }
};

struct DigestStats {
  uint64_t bytesRead = 0;
  uint64_t pagesHashed = 0;
};

// Digests the writable memory of `tid`'s address space, leaving out
// `excluded` (rec's own pages, which differ between recording and replay;
// whole pages) and hashing the bytes of `masked` as zeros (any alignment).
MemoryDigest digestMemory(pid_t tid, std::span<const AddressRange> excluded,
                          DigestStats* stats = nullptr, std::span<const AddressRange> masked = {});
// The same for one block (kDigestBlock-aligned `start`) only: what
// digestMemory's block there would be (pages == 0: none).
BlockDigest digestBlock(pid_t tid, std::span<const AddressRange> excluded, uint64_t start,
                        std::span<const AddressRange> masked = {});

// The whole pages of the stack mapping holding `rsp` that lie below its red
// zone (rsp - 128): dead by the ABI (any signal may overwrite them), and not
// deterministic: glibc's lazy-binding trampoline saves the vector registers
// there with XSAVEC, whose XSTATE_BV header follows the CPU's XINUSE bits,
// which context switches reset. Empty when rsp is in no mapping.
AddressRange deadStackBelow(pid_t tid, uint64_t rsp);
// The rest of that dead stack: from the end of deadStackBelow's pages to the
// red zone, inside rsp's own page (the digest leaves out whole pages only;
// this part is masked, hashed as zeros). Empty when there is none.
AddressRange deadStackInRspPage(pid_t tid, uint64_t rsp);
// An XSAVEC image's header left in the red zone, [redZone, redZone +
// bytes.size()), by code that ran deeper before (glibc's lazy-binding
// trampoline saves the vector registers there): its XSTATE_BV follows the
// CPU's XINUSE bits, which differ between recording and replay (ptrace stops
// reset them), and the components it marks unused are not written. The
// image is dead, but the red zone is live for a leaf function, so only such
// a header (XCOMP_BV's compacted bit and components, XSTATE_BV within them,
// zero reserved bytes) and the image above it are left out: from the header
// to the red zone's end. Empty when there is none.
AddressRange staleXsaveInRedZone(std::span<const uint8_t> bytes, uint64_t redZone);

// The start of the first block where two digests differ.
std::optional<uint64_t> firstDifferingBlock(const MemoryDigest& recorded, const MemoryDigest& now);

// Where two digests differ first: "the 1 MiB at 0x7ffff7e00000 (in
// /usr/lib/.../libc.so.6 rw-p) differs (12 non-zero pages, recorded 11)";
// nullopt when equal. `tid` names the mappings as they are now.
std::optional<std::string> memoryDifference(const MemoryDigest& recorded, const MemoryDigest& now,
                                            pid_t tid);

}  // namespace rec
