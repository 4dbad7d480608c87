// In-process conditional breakpoints: how replay stops a task at an exact
// point in the middle of user code without a branch counter.
//
// A point is an instruction address X plus the full register file R seen
// there during recording (a preemption or an asynchronous signal). Replay
// replaces the first instructions at X with a jump to a trampoline in a page
// near X; the trampoline compares the live registers with R and executes
// int3 on a match, otherwise runs the displaced instructions and jumps back.
// A miss costs a few nanoseconds, so hot loops stay fast, unlike a debug
// register breakpoint (a ptrace stop per hit).
//
// The recorder only records points that are patchable (it single-steps a few
// instructions on when needed), so replay can always plant the breakpoint.
#pragma once

#include <sys/user.h>

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace rec {

inline constexpr size_t kJumpSize = 5;     // jmp rel32
inline constexpr size_t kCodeWindow = 32;  // bytes read at X to decide
inline constexpr uint64_t kTrampolineSize = 4096;

// Bytes of whole instructions at `ip` that a 5-byte jump may replace, or
// nullopt when they cannot be moved: a call, syscall, interrupt, loop/jrcxz,
// or a branch before the last displaced instruction.
std::optional<size_t> patchableLength(std::span<const uint8_t> code, uint64_t ip);

// A memory word that must hold `value` at the point: tells apart the
// iterations of a loop whose registers are the same every time round.
struct MemoryCheck {
  uint64_t address;
  uint64_t value;
};

struct Trampoline {
  std::vector<uint8_t> page;  // contents of the trampoline page
  uint64_t trapIp = 0;        // rip after the int3 when the registers matched
  std::vector<uint8_t> jump;  // what to write at X (jmp rel32, padded with nops)
};

// Builds the trampoline for a page at `pageAddress` (within +-2 GiB of ip).
// nullopt when the displaced code cannot be relocated there.
std::optional<Trampoline> buildTrampoline(uint64_t pageAddress, uint64_t ip,
                                          std::span<const uint8_t> code, size_t length,
                                          const user_regs_struct& expected,
                                          std::span<const MemoryCheck> memory = {});

// Addresses of the memory the instruction at `ip` writes, computed from the
// registers it will execute with (fs/gs-relative operands included).
std::vector<uint64_t> memoryWrittenBy(std::span<const uint8_t> code, uint64_t ip,
                                      const user_regs_struct& regs);

// Length of the instruction at ip (0 when it does not decode).
size_t instructionLength(std::span<const uint8_t> code, uint64_t ip);

}  // namespace rec
