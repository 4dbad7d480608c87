// What the recorder knows about one traced task, and small helpers shared by
// the recorder's source files: record_session.cc (the event loop and the
// scheduler), record_syscalls.cc, record_signals.cc (signals, preemption and
// points in user code) and record_exec.cc (exec, fork and exit).
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
#include "record_session.h"
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

struct RecordSession::RecordTask {
  RecordTask(pid_t tid, pid_t tgid) : task(tid, tgid) {}
  Task task;
  TaskState state = TaskState::Ready;
  int resumeSignal = 0;
  bool sawInitialStop = false;
  bool announcedByParent = false;
  bool queued = false;

  // The traced syscall in progress.
  int nr = -1;
  std::array<uint64_t, 6> args{};
  user_regs_struct entryRegs{};        // every register at its entry: replay compares them
  user_regs_struct lastSyscallRegs{};  // at the previous syscall's entry (see predictSyscallEntry)
  std::optional<MemoryDigest> entryDigest;  // --check-memory: its memory at entry
  const sys::SyscallRow* row = nullptr;
  std::vector<std::string> strings;
  bool enterAnnounced = true;
  pid_t newTask = 0;
  bool execSeen = false;

  // Registers as the last syscall returned: a signal delivered with these
  // registers was delivered as that syscall returned.
  Registers exitRegs;
  bool justExited = false;

  std::deque<siginfo_t> heldSignals;  // async signals to deliver at the next syscall
  std::map<int, siginfo_t> injected;  // raised by rec, awaiting their delivery stop
  std::shared_ptr<OutputFds> fds;
  std::shared_ptr<TimeShimSpace> timeSpace;  // shared by tasks created with CLONE_VM
  ScopedFd pagemap;                          // /proc/TID/pagemap of the current image
  Clock::time_point sliceStart;

  // vfork: the parent's syscall returns once the child has exec'd or exited;
  // its event is written after the child's, so replay runs them in that order.
  bool exitWritten = false;
  bool interruptRequested = false;  // PTRACE_INTERRUPT sent for a preemption
  pid_t formerTid = 0;              // exec'd from a non-leader thread: its id before
  bool stepTrapPending = false;
  std::optional<int> execVictimStatus;  // ended by a sibling's execve; exit written after it
  RecordTask* vforkParent = nullptr;
  RecordTask* vforkChild = nullptr;
  bool vforkReturnPending = false;
};

}  // namespace rec
