// Running syscalls inside a stopped tracee, and rec's scratch page.
//
// Every tracee gets one page at kScratchAddress, mapped right after each exec
// in record and in replay alike (so the program never gets that address from
// the kernel and replay never clobbers it). It holds `syscall; int3` — the
// seccomp filter lets syscalls from there through without a stop —, the
// time shim's `syscall; ret`, and a data area for strings rec passes to the
// syscalls it injects.
#pragma once

#include <signal.h>

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "task.h"

namespace rec {

inline constexpr uint64_t kScratchAddress = 0x70000000;
inline constexpr uint64_t kScratchSize = 4096;
inline constexpr uint64_t kScratchSyscallInsn = kScratchAddress;
inline constexpr uint64_t kScratchUntracedIp = kScratchAddress + 2;  // ip seccomp sees
// `syscall; ret`: the time shim's untraced clock reads while recording.
inline constexpr uint64_t kScratchShimSyscall = kScratchAddress + 16;
inline constexpr uint64_t kScratchShimSyscallIp = kScratchShimSyscall + 2;
// `syscall; jmp *%rbx`: inside the range the seccomp filter lets through,
// so that a batch of remote syscalls (remoteSyscalls) runs in one stop.
inline constexpr uint64_t kScratchBatchSyscall = kScratchAddress + 8;
inline constexpr uint64_t kScratchData = kScratchAddress + 64;
inline constexpr uint64_t kScratchDataSize = kScratchSize - 64;
// Where remoteSyscalls writes its code: the end of the data area.
inline constexpr uint64_t kScratchBatchCode = kScratchAddress + kScratchSize - 512;

// Signals that arrived while rec was running its own syscalls in the task;
// the caller decides what they mean (held for later at record, dropped at replay).
using StraySignals = std::vector<siginfo_t>;

// The task must be at a stop from which it returns to user mode: a
// syscall-exit-stop, a signal-delivery-stop (that signal is then discarded),
// or the SIGTRAP of a previous remote syscall. Registers are restored after.
int64_t remoteSyscall(Task& task, int nr, std::array<uint64_t, 6> args, StraySignals& strays);

// Several syscalls run one after another in a single stop (each ptrace
// stop costs two context switches): an argument may be the result of an
// earlier call of the batch (`fromResult[i]` its index, else -1). Up to 8
// calls; returns their results, of which only the first 4 are kept (a
// later call's is 0, and no call can use it). Same conditions as
// remoteSyscall.
struct RemoteCall {
  int nr;
  std::array<uint64_t, 6> args;
  std::array<int8_t, 6> fromResult = {-1, -1, -1, -1, -1, -1};
};
std::vector<int64_t> remoteSyscalls(Task& task, const std::vector<RemoteCall>& calls,
                                    StraySignals& strays);

// Whether the task is at a syscall-exit stop. A signal given when resuming
// it there is sent to it (its delivery stop follows); at a signal stop (where
// a remote syscall leaves it) the signal is delivered at once, without one.
bool atSyscallExit(Task& task);

// Same, before the scratch page exists: uses the syscall instruction at
// `syscallInsn` (found in the vDSO) and steps with PTRACE_SYSCALL. When the
// task's seccomp filter is known to stop at `nr` (`filterStops`), it goes
// straight to that stop instead of the syscall-entry-stop before it: two
// stops instead of three.
int64_t remoteSyscallVia(Task& task, uint64_t syscallInsn, int nr, std::array<uint64_t, 6> args,
                         StraySignals& strays, bool filterStops = false);

// At a seccomp stop: lets the syscall be skipped with `result` and stops at
// its syscall-exit-stop, from where remote syscalls can run.
void skipToSyscallExit(Task& task, int64_t result, StraySignals& strays);

// At a seccomp stop: cancels the syscall and puts the task back on its
// syscall instruction at the syscall's exit stop, as if it had not made it
// yet; a signal raised now is handled first, then the syscall is made again.
void unwindSyscallEntry(Task& task, StraySignals& strays);

// After exec, at the execve syscall-exit-stop: maps and fills the scratch
// page, and after it the time shim's image and control page (time_shim.h).
// `mmapStops`: the task's seccomp filter traces mmap (its traced-syscall
// bitmap has it), so the mmap takes two stops instead of three.
void installScratchPage(Task& task, StraySignals& strays, bool withTimeShim,
                        bool mmapStops = false);

// Puts a NUL-terminated string into the scratch data area; returns its address.
uint64_t putScratchString(Task& task, const std::string& s);

// Maps one of rec's own memfds (rec's fd `recFd`) shared into the task at a
// fixed address, through /proc/<rec>/fd: how rec shares its logs and buffers
// with a tracee. False when the tracee cannot open it (it may be dying);
// throws RecError (naming `what`) when the mapping lands elsewhere.
bool mapRecMemoryAt(Task& task, int recFd, uint64_t address, uint64_t size, const char* what,
                    StraySignals& strays);
// Several such mappings (at most 2) in one stop: the time shim's log and the
// syscall buffer, which a process's first patches at exec both need. False
// when the tracee cannot open one of them.
struct RecMemory {
  int recFd;
  uint64_t address;
  uint64_t size;
  const char* what;
};
bool mapRecMemoriesAt(Task& task, std::span<const RecMemory> memories, StraySignals& strays);

// Address of a `syscall` instruction in the task's vDSO (0 when none).
uint64_t findVdsoSyscall(Task& task);

}  // namespace rec
