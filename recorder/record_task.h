// What the recorder knows about one traced task, and small helpers shared by
// the recorder's source files: record_session.cc (the event loop),
// scheduler.cc (who runs next), record_syscalls.cc, record_signals.cc
// (signals, preemption and points in user code) and record_exec.cc (exec,
// fork and exit).
#pragma once

#include <capnp/message.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "output_fds.h"
#include "ptrace_emulation.h"
#include "record_session.h"
#include "syscall_buffer.h"
#include "syscall_table.h"
#include "task.h"

namespace rec {

using Clock = std::chrono::steady_clock;

inline int64_t nowRealtimeNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

inline std::string readLink(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
  if (n < 0) return "";
  return std::string(buf, static_cast<size_t>(n));
}

inline capnp::Data::Reader asData(const void* p, size_t n) {
  return capnp::Data::Reader(static_cast<const capnp::byte*>(p), n);
}

template <typename T>
capnp::Data::Reader asData(const T& value) {
  return asData(&value, sizeof value);
}

// One traced task as the recorder sees it: a state machine over the task's
// life, plus the syscall in progress and the per-task data of signals,
// points and the time shim.
//
//   Newborn --(first stop and parent's fork event, either order)--> Ready
//   Ready --(scheduled)--> Running | InSyscall
//   Running --(seccomp stop, resumed with PTRACE_SYSCALL)--> InSyscall
//   Running | InSyscall --(yields, preempted)--> Ready
//   InSyscall --(vfork parent's return while the child lives)--> VforkHeld
//   VforkHeld --(child exec'd or died)--> Running | Ready
//   Ready | Running | InSyscall --(a stop its emulated ptracer sees)--> PtraceStopped
//   PtraceStopped --(the ptracer resumes it: PTRACE_CONT, DETACH, ...)--> Ready
//   Running | InSyscall | Ready --(group-stop, no emulated ptracer)--> JobStopped
//   JobStopped --(SIGCONT woke it)--> Ready
//   JobStopped --(an emulated ptracer attached)--> PtraceStopped
//   VforkHeld --(PTRACE_EVENT_VFORK_DONE for its emulated ptracer)--> PtraceStopped
//   any live state --(PTRACE_EVENT_EXIT)--> Exiting --(reaped)--> Dead
//   any live state --(killed: reaped without an exit stop)--> Dead
//
// Every change goes through setState(), which rejects any other transition
// as an internal error (exit 70) naming both states.
//
// Besides its state a task may owe rec a stop that rec itself caused
// (expect()/consume()), may stand right at the return of a syscall
// (returnedFromSyscall()), and carries how its exit is written to the trace
// (ExitRecord).
class RecordTask {
 public:
  enum class State {
    Newborn,        // created: waits for its first stop and its parent's fork event
    Ready,          // stopped by rec, queued in the scheduler
    Running,        // executing user code
    InSyscall,      // resumed into a traced syscall (PTRACE_SYSCALL); may block in the kernel
    VforkHeld,      // vfork parent stopped at its syscall's return until the child execs or exits
    PtraceStopped,  // in a ptrace stop of its emulated ptracer (ptrace_emulation.h), until resumed
    JobStopped,     // stopped by SIGSTOP/SIGTSTP & co (PTRACE_LISTEN), until SIGCONT
    Exiting,        // past PTRACE_EVENT_EXIT (or ended by a sibling's exec), not yet reaped
    Dead,
  };
  static const char* stateName(State s);

  // Stops rec caused itself and must recognise when they come.
  enum class Expect : uint8_t {
    InterruptStop = 1,  // PTRACE_INTERRUPT sent for a preemption
    StepTrap = 2,       // single-stepped into a syscall or signal: a stray SIGTRAP may follow
  };

  // How the task's Exit event reaches the trace. Replay runs a task to its
  // exit in trace order, so a task that something else killed has its exit
  // written after the event that kills it on replay too.
  enum class ExitRecord {
    NotWritten,
    Written,
    AfterExec,       // ended by a sibling's execve: written after that Exec event
    AfterGroupExit,  // ended by a sibling's exit_group or fatal signal: written after that
                     // sibling's exit (or once no sibling is left to be the one)
  };

  RecordTask(pid_t tid, pid_t tgid) : task(tid, tgid) {}
  RecordTask(const RecordTask&) = delete;
  RecordTask& operator=(const RecordTask&) = delete;

  Task task;

  State state() const { return state_; }
  bool alive() const { return state_ != State::Dead; }
  // Checks and performs one transition of the diagram above.
  void setState(State to);
  // Resumes the task (Cont: into user code, Syscall: through its traced
  // syscall) and moves to Running or InSyscall.
  void resume(Task::Resume how, int signal = 0);

  // Birth. A new task may run once rec has seen both its first stop and its
  // parent's fork event, which come in either order. Each returns true when
  // that completes the pair.
  bool noteInitialStop();
  bool noteAnnouncedByParent();
  bool initialStopSeen() const { return initialStopSeen_; }

  void expect(Expect e) { expected_ |= static_cast<uint8_t>(e); }
  bool expecting(Expect e) const { return expected_ & static_cast<uint8_t>(e); }
  // True (and forgotten) when the stop was expected.
  bool consume(Expect e) {
    bool was = expecting(e);
    expected_ &= static_cast<uint8_t>(~static_cast<uint8_t>(e));
    return was;
  }
  // PTRACE_INTERRUPT for a preemption; false when the task is gone.
  bool requestInterrupt();

  // The task was resumed from a syscall's exit with these registers. A
  // signal or interrupt that stops it still there arrived "at the return of
  // that syscall", which replay reproduces without a point in user code.
  void returnedFromSyscall(const Registers& regs) { syscallReturn_ = regs; }
  // Any other stop: it has left that return.
  void leftSyscallReturn() { syscallReturn_.reset(); }
  // Whether `regs` still stand at that return (ip and sp; and rax with
  // compareResult, since a signal stop may follow a restart).
  bool atSyscallReturn(const Registers& regs, bool compareResult) const;

  ExitRecord exitRecord() const { return exitRecord_; }
  // Marks the exit written; false when it was written or deferred already.
  bool markExitWritten();
  // Holds the exit (with `status`) back until `until` (AfterExec,
  // AfterGroupExit); nothing changes when it was written or deferred.
  void deferExit(ExitRecord until, int status);
  // The status of an exit deferred until `until`, handed over once: the
  // exit is then to be written.
  std::optional<int> takeDeferredExit(ExitRecord until);
  // The signal rec last resumed the task with (0: none).
  int lastResumeSignal() const { return lastResumeSignal_; }

  // The syscall it was in when its exit stop came (-1: none).
  int syscallAtDeath = -1;

  // The traced syscall in progress.
  int nr = -1;
  std::array<uint64_t, 6> args{};
  user_regs_struct entryRegs{};        // every register at its entry: replay compares them
  user_regs_struct lastSyscallRegs{};  // at the previous syscall's entry (see predictSyscallEntry)
  std::optional<MemoryDigest> entryDigest;  // --check-memory: its memory at entry
  std::vector<AddressRange> entryMasked;    // ... hashed as zeros there (pendingOutputsBeside)
  const sys::SyscallRow* row = nullptr;
  bool compat = false;  // a 32-bit syscall (int 0x80), described by its x86-64 twin's row
  std::vector<std::string> strings;
  bool enterAnnounced = true;
  pid_t newTask = 0;
  // The CPU the task is pinned to (docs/parallel.md "CPU placement"): its
  // parent's, or the one rec chose at its process's last exec; -1: unknown.
  int cpu = -1;
  bool execSeen = false;
  bool argsRewritten = false;    // rec changed argument registers: `args` go back at the exit
  bool numberRewritten = false;  // ... and the syscall number: `nr` goes back there too

  int tscMode = 1;      // PR_TSC_ENABLE: the mode the program believes it has (PR_SET_TSC)
  int seccompMode = 0;  // SECCOMP_MODE_*: the mode the program put itself in

  // The signal mask as of the task's last rt_sigprocmask or exec (unknown
  // once a handler has run: its sigreturn restores a mask without a stop),
  // and the action of the rdtsc trap's signal from when it became blocked:
  // what rec puts back after a trapped rdtsc (signals.h, restoreForcedSignal).
  std::optional<uint64_t> signalMask;
  std::vector<std::byte> blockedTrapAction;

  std::deque<siginfo_t> heldSignals;  // async signals to deliver at the next syscall
  std::map<int, siginfo_t> injected;  // raised by rec, awaiting their delivery stop
  // A signal that interrupted a call blocked in the buffer (docs/syscall-
  // buffer.md "Blocking in the buffer"): raised again by rec as the traced
  // call the buffer makes instead is entered (interruptNext), so that it
  // interrupts that call as it did the buffered one; then awaiting its
  // delivery stop (interrupting), where it gets its original siginfo back.
  std::optional<siginfo_t> interruptNext;
  std::optional<siginfo_t> interrupting;
  // SIGCONT ended its job-control stop: the next signal stop is where it
  // stopped (the kernel delivers the pending signals there).
  bool afterJobStop = false;
  int jobStopSignal = 0;  // the signal of its job-control stop (JobStopped)
  std::shared_ptr<OutputFds> fds;
  std::shared_ptr<TimeShimSpace> timeSpace;  // shared by tasks created with CLONE_VM
  std::shared_ptr<SysbufSpace> sysbuf;        // the syscall buffer's, likewise (null: off)
  std::vector<std::byte> pendingBuffered;     // its buffered syscalls not yet in the trace
  SysbufHeld pendingHeld;  // or those, still in the buffer, when large (pendingBuffered empty)
  std::unique_ptr<DeschedEvent> desched;      // its desched event (syscall-buffer.md "Blocking")
  bool deschedTried = false;                  // opened once per task (and image)
  ScopedFd pagemap;                          // /proc/TID/pagemap of the current image
  Clock::time_point sliceStart;
  // Since when it runs user code (resumed Running), and whether rec moves
  // its process to a free CPU at its next syscall's return
  // (docs/parallel.md "CPU placement": moves while running).
  Clock::time_point runningSince;
  bool moveWanted = false;
  // When the last PTRACE_INTERRUPT for a preemption was sent.
  Clock::time_point interruptRequested;
  // Events written when rec last resumed it before the stop that ended its
  // last run of user code, and when rec saw that stop: the run span its
  // next event carries (trace.capnp RunSpan; docs/parallel.md "Parallel
  // replay").
  struct RunSpan {
    uint64_t from = 0, to = 0;
    uint64_t resumedSeq = 0, stoppedSeq = 0;
  };
  std::optional<RunSpan> runSpan;

  EmulatedPtrace ptrace;  // a tracee that ptraces another, or is ptraced by one

  // Parallel recording (docs/parallel.md): its address space may share
  // memory with another (a MAP_SHARED mapping, SysV shm, a CLONE_VM child;
  // inherited by children), so it never executes beside another task.
  bool sharesMemory = false;
  // A child whose parent's fork event is not in the trace yet: it starts
  // only when nothing else executes (its events must follow that one).
  bool forkHeld = false;

  pid_t forkedBy = 0;                 // the thread whose fork-like call created it
  pid_t formerTid = 0;                // exec'd from a non-leader thread: its id before
  RecordTask* vforkParent = nullptr;  // vfork: the parent waiting for this child
  RecordTask* vforkChild = nullptr;   // vfork: the child this parent waits for

 private:
  State state_ = State::Newborn;
  bool initialStopSeen_ = false;
  bool announcedByParent_ = false;
  uint8_t expected_ = 0;
  std::optional<Registers> syscallReturn_;
  ExitRecord exitRecord_ = ExitRecord::NotWritten;
  int deferredExitStatus_ = 0;
  int lastResumeSignal_ = 0;
};

}  // namespace rec
