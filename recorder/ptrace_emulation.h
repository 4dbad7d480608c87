// Emulated ptrace between tracees (docs/ptrace-emulation.md).
//
// rec is the kernel's tracer of every task it records, and the kernel allows
// one tracer per task: a recorded program that ptraces another recorded task
// (a debugger, a crash reporter, a sandbox) gets a tracer played by rec.
// rec answers the program's ptrace and wait calls at their seccomp stops,
// holds the tracee in the stops the program expects (PtraceStopped), and
// sends the tracer the SIGCHLD a real stop sends. Everything the emulation
// answers is an ordinary syscall event, which replay injects.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>

namespace rec {

// One task's part in emulated ptrace, as a tracee.
struct EmulatedPtrace {
  pid_t tracer = 0;       // tid of its emulated ptracer (a recorded task); 0: not traced
  pid_t tracerGroup = 0;  // that tracer's thread group: any of its threads may wait
  bool seized = false;    // PTRACE_SEIZE: group stops and interrupts report PTRACE_EVENT_STOP
  uint64_t options = 0;   // PTRACE_O_*

  // Where the kernel holds the task while it is PtraceStopped for its tracer.
  enum class Held : uint8_t {
    None,
    SignalStop,  // at a signal-delivery-stop: the tracer decides what is delivered
    GroupStop,   // in a group-stop (SIGSTOP, SIGTSTP, ...)
    ExitStop,    // at PTRACE_EVENT_EXIT (PTRACE_O_TRACEEXIT): its exit goes on when resumed
    ForkStop,    // at PTRACE_EVENT_FORK/VFORK/CLONE: resumed through its syscall's exit
    VforkDone,   // at PTRACE_EVENT_VFORK_DONE (its vfork child exec'd or exited):
                 // the syscall's exit (event and all) follows when resumed
    Parked,      // stopped in rec's queue, between events (PTRACE_INTERRUPT)
  };
  Held held = Held::None;
  int waitStatus = 0;         // what wait reports for the stop
  bool reported = false;      // a wait of its tracer has collected that stop
  siginfo_t siginfo{};        // PTRACE_GETSIGINFO at a signal-delivery-stop
  uint64_t eventMessage = 0;  // PTRACE_GETEVENTMSG
  int groupStopSignal = 0;    // the stop signal of a group-stop it is in (0: none)
  // Resumed by its tracer (PTRACE_CONT & co): the signal it is to get when
  // rec next runs it (0: none). Queued in the scheduler meanwhile.
  std::optional<int> resumeSignal;
  bool interruptWanted = false;  // PTRACE_INTERRUPT while it slept in a syscall
  bool vforkDoneWanted = false;  // in a vfork its tracer follows with PTRACE_O_TRACEVFORKDONE
};

// A traced task that died while its tracer is not its parent: the kernel
// reports its exit to the tracer first, so the emulation keeps it until a
// wait of the tracer's thread group collects it.
struct PtraceZombie {
  pid_t tid = 0;
  pid_t tracer = 0;
  int waitStatus = 0;
};

// wait status words, as <sys/wait.h> decodes them.
constexpr int ptraceStopStatus(int signo, int event = 0) {
  return (event << 16) | (signo << 8) | 0x7f;
}

}  // namespace rec
