// Signal classification shared by recorder and replayer.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "remote_syscall.h"

namespace rec {

class Task;

// Whether the task's process has a handler for `signo` (SigCgt in
// /proc/TID/status): delivering it then writes a frame on the task's stack.
bool hasHandler(pid_t tid, int signo);
// Whether the thread blocks `signo` (SigBlk in /proc/TID/status).
bool blocksSignal(pid_t tid, int signo);

// What the kernel writes into a handler's frame from its own record of the
// task's last trap rather than from the task's registers: the error code,
// the trap number and the fault address of the sigcontext. rec's own traps
// (single steps, int3, debug registers) change that record, differently in
// recording and replay, so the recorder stores these three words and replay
// writes them back; the frame is then the same memory in both.
using FrameTrapWords = std::array<uint64_t, 3>;  // err, trapno, cr2
// At the first instruction of a handler (single-stepped into): rdx points at
// the frame's ucontext.
FrameTrapWords readFrameTrapWords(Task& task);
void writeFrameTrapWords(Task& task, const FrameTrapWords& words);

// A handler's whole frame as the kernel wrote it: from the handler's rsp up
// to the frame's top (the end of its XSAVE image, and the alignment padding
// above it up to the interrupted code's red zone). The kernel leaves parts
// of it unwritten: XSAVE skips the state components not in use (on AVX-512
// machines over 1 KiB), and the padding. Those bytes keep what the dead
// stack held, which differs between recording and replay (a lazy-binding
// XSAVEC image there has a header that follows the CPU's XINUSE bits), and
// so may the XSAVE header of the frame itself. The recorder stores the
// frame and replay writes it back, so that the stack is the same memory.
struct HandlerFrame {
  FrameTrapWords trapWords{};
  uint64_t address = 0;        // the handler's rsp; 0: only the trap words are known
  std::vector<uint8_t> bytes;  // [address, address + bytes.size())
};
// Whether the task stands at the first instruction of a handler of `signo`
// the kernel just set up: it passes the signal number in rdi and the frame's
// ucontext, right above the return address, in rdx.
bool atHandlerEntry(Task& task, int signo);
// At the first instruction of a handler; `interruptedRsp` is where the
// signal interrupted the task.
HandlerFrame readHandlerFrame(Task& task, uint64_t interruptedRsp);
// Puts the frame back. False when the handler's rsp is not the recorded
// one (nothing is written then).
bool writeHandlerFrame(Task& task, const HandlerFrame& frame);

// The task's signal mask (PTRACE_GETSIGMASK), if it can be read.
std::optional<uint64_t> readSignalMask(pid_t tid);
inline uint64_t signalBit(int signo) {
  return uint64_t{1} << (signo - 1);
}
// Signals whose default action is to stop the process (job control).
inline bool isStopSignal(int signo) {
  return signo == SIGSTOP || signo == SIGTSTP || signo == SIGTTIN || signo == SIGTTOU;
}

// A trapped rdtsc is a forced fault: when the program has its signal
// (SIGSEGV, or SIGILL at a patched site) blocked, the kernel unblocks it and
// resets its handler to SIG_DFL before rec sees the fault, and never undoes
// that. rec undoes it, in the recording and again in the replay.
constexpr size_t kKernelSigactionSize = 32;  // handler, flags, restorer, mask
// The task's action for `signo` as a kernel struct sigaction, read with a
// remote rt_sigaction into memory below the stack's red zone (put back
// afterwards); empty if it cannot be read.
std::vector<std::byte> readSignalAction(Task& task, int signo, StraySignals& strays);
// Puts back `action` (none if empty) and blocks `signo` again.
void restoreForcedSignal(Task& task, int signo, std::span<const std::byte> action,
                         StraySignals& strays);

// A fault raised by the CPU or kernel for the instruction just executed: it
// recurs by itself when replay executes the same instruction, whereas sent
// signals (si_code <= 0) and timers must be injected from the trace.
inline bool isSynchronousFault(int signo, const siginfo_t& info) {
  switch (signo) {
    case SIGSEGV:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
    case SIGTRAP:
    case SIGSYS:
      return info.si_code > 0;
    default:
      return false;
  }
}

}  // namespace rec
