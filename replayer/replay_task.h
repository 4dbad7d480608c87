// What the replayer knows about one replayed task, and helpers shared by the
// replayer's source files: replay_session.cc (the event loop), replay_syscalls.cc,
// replay_signals.cc (signals, rdtsc and points in user code) and replay_exec.cc
// (exec and exits).
#pragma once

#include <fmt/format.h>
#include <sys/wait.h>

#include <array>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "replay_session.h"
#include "signals.h"
#include "syscall_buffer.h"
#include "syscall_table.h"
#include "task.h"
#include "trace_file.h"

namespace rec {

// Kernel-internal results a tracer sees when a syscall is to be restarted.
inline constexpr int64_t kErestartsys = -512;
inline constexpr int64_t kErestartRestartblock = -516;

inline format::BlobHash hashOf(capnp::Data::Reader d) {
  return format::BlobHash::fromBytes(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(d.begin()), d.size()));
}

inline std::string describeRecordedSyscall(schema::SyscallEvent::Reader e) {
  return RecordedCall::of(e).text();
}

// Whether a core file was written (0x80) depends on RLIMIT_CORE, and replay
// writes none.
inline bool sameStatus(int a, int b) {
  auto normal = [](int s) { return WIFSIGNALED(s) ? s & ~0x80 : s; };
  return normal(a) == normal(b);
}

inline std::string statusText(int status) {
  if (WIFEXITED(status)) return fmt::format("exit status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("killed by {}", sys::signalName(WTERMSIG(status)));
  return fmt::format("status {:#x}", status);
}

struct ReplaySession::ReplayTask {
  ReplayTask(int recorded, pid_t tid) : recordedTid(recorded), task(tid, tid) {}
  // Where the task is parked between its events.
  enum class Park {
    Initial,      // new child: its first ptrace stop not yet collected
    Seccomp,      // at the seccomp stop of a syscall not yet applied
    SkipPending,  // at the seccomp stop of an emulated syscall: skip it with skipResult when
                  // resumed
    Resumable,    // PTRACE_CONT it (with pendingSignal) to run on
    InKernel,     // inside an executed blocking syscall (vfork parent)
    Dead,
  };
  int recordedTid;
  Task task;
  Park park = Park::Initial;
  // The CPU rec pinned the task to (its recorded CPU where this machine has
  // it: docs/parallel.md "CPU placement"); -1: the one it inherited.
  int cpu = -1;
  int pendingSignal = 0;                     // delivered/raised when the task is next resumed
  std::optional<HandlerFrame> pendingFrame;  // and the frame its handler had (signals.h)
  int awaitingSignal = 0;                    // a signal rec raised whose delivery stop is due
  // The emulated syscall a SkipPending task sits in. Whether it is simply
  // skipped or completed at its exit (to deliver a signal there with the
  // kernel's restart rules) is decided by the task's next event.
  int skipNumber = -1;
  std::array<uint64_t, 6> skipArgs{};
  int64_t skipResult = 0;
  bool skipIsSigsuspend = false;
  int lastExecutedNumber = -1;    // Resumable at the exit of this executed syscall
  uint64_t childTidAddress = 0;   // CLONE_CHILD_SETTID: fixed at the first stop
  int32_t childTidValue = 0;      // ... to this (its id as its parent's clone returned it)
  uint64_t parentTidAddress = 0;  // CLONE_PARENT_SETTID: fixed when clone returns
  int32_t parentTidValue = 0;
  // Stopped for its emulated ptracer at the exit of a syscall that the kernel
  // restarts when the task goes on without a signal: this -ERESTART* result.
  std::optional<int64_t> restartAfterPtraceStop;
  bool ptraceStopAtSyscallExit = false;      // that stop is at a syscall-exit stop, not a signal's
  bool exiting = false;                      // passed PTRACE_EVENT_EXIT
  std::optional<int> deadStatus;             // reaped while replaying a sibling's execve
  std::shared_ptr<TimeShimSpace> timeSpace;  // shared by tasks created with CLONE_VM
  uint64_t lastBufferedEvent = UINT64_MAX - 1;  // index of its last time shim answer
  std::shared_ptr<SysbufSpace> sysbuf;          // the syscall buffer's, likewise (null: off)
  uint64_t lastSysbufEvent = UINT64_MAX - 1;    // index of its last buffered syscall
  uint64_t lastStopEvent = 0;  // index of its last event that was not a batch or time answer
  // Registers recorded at the entry of its current and previous syscall
  // (the previous one predicts the current one: task_state.h).
  std::optional<user_regs_struct> entryRegs;
  user_regs_struct lastSyscallRegs{};
  // The file its last replayed mmap mapped, kept open inside the task (at
  // `fd`): the next mmap of the same file uses the same open file, so the
  // kernel merges adjacent mappings of it as it did when recorded (mapping
  // from a fresh open each time would leave them apart, and an mremap
  // across both fails). Closed by exec (O_CLOEXEC).
  struct MappedFile {
    std::string path;
    bool writable = false;
    int64_t fd = -1;
  };
  std::optional<MappedFile> mappedFile;
  // Parallel replay (replay_ahead.cc): resumed toward its next event ahead
  // of that event's turn, and then the stop it reached, collected before
  // the trace gets to what happened after it in the recording.
  bool runningAhead = false;
  std::optional<Stop> aheadStop;
  uint64_t queuedUpTo = 0;  // its queued events (buffered batches, time answers) before
                            // this index were handed to it when it started ahead
};

}  // namespace rec
