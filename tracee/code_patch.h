// In-process conditional breakpoints: how replay finds a point in the
// middle of user code without a branch counter.
//
// A point is an instruction address X plus the state recorded there: every
// general register, the extended registers, a digest of memory
// (task_state.h), and a few memory words the surrounding loop writes. Replay
// runs the task with a check at X that compares the general registers and
// those words in-process, at a few nanoseconds a pass, and traps into rec
// only when they all match; rec then compares the rest of the state and
// either stops there (the point: every bit the program's future depends on
// is as recorded) or lets the task go on.
//
// The check lives in a trampoline: a code page and a data page mapped near
// X. It compares the general registers, the arithmetic flags, the words,
// xmm0-15 and the stack above rsp, cheapest first. It never writes the
// program's memory: it saves rsp in its data page and runs on its own small
// stack there (one task runs at a time during replay). The task enters it one of two ways:
//   - Jump: the instruction at X is at least 5 bytes long; replay writes a
//     jmp over it. No path can enter the middle of one instruction, so
//     nothing else is disturbed. Each pass costs the check alone.
//   - DebugRegister: any instruction (a 2-byte `jmp .`, `pause`, a tight
//     `dec; jnz` loop). Code is not touched; a hardware breakpoint at X stops
//     the task (~26 us) and rec moves it into the trampoline, which holds a
//     copy of the code around X (the loop, when X is in one: back branches
//     stay inside the copy), so a hot loop keeps running checked in-process
//     until it leaves the copied code.
//   - DebugRegister entered by a jump (buildTrampoline's jumpOver, replay
//     without a debugger): the jmp is written over X and the instructions
//     after it that its 5 bytes reach, all copied; each of those others'
//     starts is guarded by a debug register (a branch, a return or a
//     sigreturn landing there would run the jump's bytes: rec moves the task
//     to that instruction's copy instead). A loop entered again and again
//     (the thread pool's, once per work item) then costs no stop per entry.
// The copied instructions run at other addresses: relative branches and
// rip-relative operands are adjusted, and the copy ends before anything that
// would notice its own address (call, syscall, traps).
#pragma once

#include <sys/user.h>

#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace rec {

inline constexpr size_t kJumpSize = 5;     // jmp rel32
inline constexpr size_t kCodeWindow = 32;  // bytes read at X to decide
inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint64_t kTrampolineSize = 2 * kPageSize;  // code page, data page
// Code copied around X for a DebugRegister entry: at most this far back
// (the start of a loop X is in) and forward.
inline constexpr uint64_t kRegionBack = 96;
inline constexpr uint64_t kRegionForward = 96;

enum class PointEntry { Jump, DebugRegister };

// Whether the instruction at `ip` alone can take the 5-byte jump (Jump).
bool jumpPatchable(std::span<const uint8_t> code, uint64_t ip);

// Whether the instruction at `ip` can run from a copy (DebugRegister): not a
// call, syscall, trap or anything else that depends on where it runs.
bool relocatable(std::span<const uint8_t> code, uint64_t ip);

// The length of the instruction at the start of `code` if it is a string
// instruction with a REP/REPE/REPNE prefix, else 0. Such an instruction is
// interrupted between iterations (rip stays on it, rcx counts down), and a
// breakpoint on it fires only before the first iteration: a point can never
// be in the middle of one.
size_t repStringLength(std::span<const uint8_t> code);

// A memory word that must hold `value` at the point: tells apart the
// iterations of a loop whose registers are the same every time round.
struct MemoryCheck {
  uint64_t address;
  uint64_t value;
};
// At most this many words are checked in-process.
inline constexpr size_t kMaxPointWords = 16;
// And at most this much of the stack from rsp up, compared whole: the state
// of the loops around the point's (their counters, spilled or saved by
// callees), which the walk round the inner loop never sees written.
inline constexpr size_t kPointStackBytes = 2048;
// And xmm0-15 (their low 128 bits, as in the legacy area of XSAVE at
// kXmmOffset): loops whose rounds differ only in a vector register.
inline constexpr size_t kXmmBytes = 256;
inline constexpr size_t kXmmOffset = 160;

struct Trampoline {
  std::vector<uint8_t> code;  // the code page (mapped read + execute) at pageAddress
  std::vector<uint8_t> data;  // the data page (read + write) after it
  uint64_t checkIp = 0;       // the check: X's jump lands here, or rec moves the task here
  uint64_t trapIp = 0;        // rip after the int3 of a match; registers are the program's
  uint64_t resumeIp = 0;      // a candidate that was not the point goes on here (X's copy)
  std::vector<uint8_t> jump;  // Jump, or DebugRegister with jumpOver: the bytes written at X
  // jumpOver: the starts of the other instructions the jump covers, each to
  // be guarded by a debug register (see the top of this file).
  std::vector<uint64_t> guards;
  // Each copied instruction: its address in the trampoline, its original one.
  std::vector<std::pair<uint64_t, uint64_t>> moved;
  // The check's loads of the program's memory (its words, its stack): a
  // fault in [start, end) is a miss, not the program's; rec moves the task
  // to missIp.
  struct FaultSite {
    uint64_t start, end, missIp;
  };
  std::vector<FaultSite> loads;

  // The original address of a copied instruction (for reports).
  std::optional<uint64_t> originalOf(uint64_t copyIp) const;
  // The copy of the instruction at `original`, if it was copied.
  std::optional<uint64_t> copyOf(uint64_t original) const;
  std::optional<uint64_t> faultMissFor(uint64_t ip) const;
};

// Builds the trampoline for pages at `pageAddress` (within +-2 GiB of ip).
// `code` holds the task's code from `codeStart` on, covering ip (for a
// DebugRegister entry, up to kRegionBack before and kRegionForward after it).
// nullopt when the code at ip cannot be moved there. `jumpOver` (with a
// DebugRegister entry): also a jump over X and what follows, in `jump` and
// `guards`, when the instructions its 5 bytes reach are all copied, none of
// the copy's branches lands inside one of them, and the copy does not
// leave the code into them; else `jump` stays empty.
std::optional<Trampoline> buildTrampoline(uint64_t pageAddress, uint64_t ip,
                                          std::span<const uint8_t> code, uint64_t codeStart,
                                          PointEntry entry, const user_regs_struct& expected,
                                          std::span<const MemoryCheck> memory = {},
                                          std::span<const uint8_t> stack = {},
                                          std::span<const uint8_t> xmm = {},
                                          bool jumpOver = false);

// Addresses of the memory the instruction at `ip` writes, computed from the
// registers it will execute with (fs/gs-relative operands included).
std::vector<uint64_t> memoryWrittenBy(std::span<const uint8_t> code, uint64_t ip,
                                      const user_regs_struct& regs);

// The whole instructions from `ip` on (`code` starts at ip) covering at
// least `minLength` bytes, re-encoded to run at `to`: none may branch, trap
// or depend on its address other than through a rip-relative operand, which
// is adjusted. nullopt when they cannot be moved (rdtsc patches,
// syscall_buffer.h).
std::optional<std::vector<uint8_t>> moveCode(std::span<const uint8_t> code, uint64_t ip,
                                             size_t minLength, uint64_t to);

// The targets of the relative branches (jmp, jcc, loop, call) in the code
// decoded linearly from its start (`code` starts at ip) to its end or the
// first byte that does not decode.
std::vector<uint64_t> branchTargets(std::span<const uint8_t> code, uint64_t ip);

// Length of the instruction at ip (0 when it does not decode).
size_t instructionLength(std::span<const uint8_t> code, uint64_t ip);
// Length of the padding instruction (a nop of any length, int3) at ip; 0 for
// anything else.
size_t paddingLength(std::span<const uint8_t> code, uint64_t ip);

}  // namespace rec
