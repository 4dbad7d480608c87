// Replaying signals and rdtsc (points in user code: replay_points.cc).

#include <elf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "code_patch.h"
#include "errors.h"
#include "exit_codes.h"
#include "process_maps.h"
#include "remote_syscall.h"
#include "replay_session.h"
#include "replay_task.h"
#include "signals.h"
#include "syscall_table.h"

namespace rec {

std::optional<Stop> ReplaySession::advanceInitial(ReplayTask& t) {
  for (;;) {
    Stop stop = t.task.wait();
    if (stop.kind == StopKind::GroupStop) break;
    // Killed before it ever ran (a sibling's exit_group, SIGKILL): it may
    // report its death without a first stop.
    if (stop.kind == StopKind::ExitEvent || stop.kind == StopKind::Exited) {
      t.park = ReplayTask::Park::Resumable;
      return stop;
    }
    t.task.resume(Task::Resume::Cont);
  }
  if (t.childTidAddress) {
    int32_t value = t.childTidValue;
    t.task.write(std::exchange(t.childTidAddress, 0), &value, sizeof value);
  }
  t.park = ReplayTask::Park::Resumable;
  return std::nullopt;
}

// The syscall number the kernel's restart rules look at, as it was at the
// recording's delivery (-1 for a syscall rec answered at entry).
int64_t ReplaySession::numberAtDelivery(schema::SignalEvent::Reader e, int64_t fallback) {
  return e.hasRegisters() ? static_cast<int64_t>(rawRegisters(e.getRegisters()).orig_rax)
                          : fallback;
}

// Completes the emulated syscall a SkipPending task sits in at its exit,
// with its recorded result, and queues `signo` to come there, so the kernel
// applies the same EINTR/SA_RESTART rules.
void ReplaySession::deliverAtSkippedExit(ReplayTask& t, schema::SignalEvent::Reader e, int signo) {
  StraySignals strays;
  skipToSyscallExit(t.task, t.skipResult, strays);
  t.task.mutableRegs().setSyscallNumber(numberAtDelivery(e, t.skipNumber));
  t.pendingSignal = signo;
}

// The signal mask a syscall installs while it waits, when it has one.
std::optional<uint64_t> ReplaySession::temporarySignalMask(ReplayTask& t) {
  const sys::SyscallRow* row = sys::findSyscall(static_cast<int>(t.skipNumber));
  if (!row) return std::nullopt;
  return sys::waitMaskAddress(*row, t.skipArgs, t.task);
}

void ReplaySession::onSignal(ReplayTask& t, schema::SignalEvent::Reader e) {
  int signo = e.getSigno();
  siginfo_t info{};
  std::memcpy(&info, e.getSiginfo().begin(), std::min(sizeof info, e.getSiginfo().size()));
  std::string name(sys::signalName(signo));
  switch (e.getDisposition()) {
    case schema::SignalDisposition::INJECT_BEFORE_SYSCALL: {
      reachSeccomp(t, fmt::format("a syscall (to deliver {} there)", name));
      if (e.hasRegisters())
        checkRegisters(t, e.getRegisters(), fmt::format("a syscall (to deliver {} there)", name));
      checkMemory(t, fmt::format("a syscall (to deliver {} there)", name));
      StraySignals strays;
      unwindSyscallEntry(t.task, strays);
      t.pendingSignal = signo;
      t.awaitingSignal = signo;
      t.park = ReplayTask::Park::Resumable;
      return;
    }
    case schema::SignalDisposition::INJECT_AT_SYSCALL_EXIT: {
      if (e.getPtraceStop()) {
        // Stopped there for its emulated ptracer: nothing delivered now. The
        // kernel restarts the syscall if the ptracer resumes it without a
        // signal (resumeDeliveringPending).
        int64_t result = t.task.regs().result();
        if (t.park == ReplayTask::Park::SkipPending) {
          StraySignals strays;
          skipToSyscallExit(t.task, t.skipResult, strays);
          result = t.skipResult;
        }
        int64_t fallback =
            t.park == ReplayTask::Park::SkipPending ? t.skipNumber : t.lastExecutedNumber;
        t.task.mutableRegs().setSyscallNumber(numberAtDelivery(e, fallback));
        if (result <= -512 && result >= -516 && result != -515) t.restartAfterPtraceStop = result;
        t.ptraceStopAtSyscallExit = true;
        t.park = ReplayTask::Park::Resumable;
        return;
      }
      // Complete the syscall the task sits in and deliver the signal as it
      // returns, so the kernel applies the same EINTR/SA_RESTART rules.
      std::optional<uint64_t> mask;
      if (t.park == ReplayTask::Park::SkipPending) mask = temporarySignalMask(t);
      // A signal the temporary mask blocks arrived during the syscall and
      // was delivered only after it returned with the old mask back: no
      // waiting for it (it would never end the wait).
      uint64_t maskBits = 0;
      if (mask && t.task.read(*mask, &maskBits, sizeof maskBits) == sizeof maskBits &&
          (maskBits & (uint64_t{1} << (signo - 1))))
        mask.reset();
      if (mask || (t.park == ReplayTask::Park::SkipPending && t.skipIsSigsuspend)) {
        // The syscall ran with a temporary signal mask (sigsuspend, pselect6,
        // ppoll, epoll_pwait) that let this signal in: wait for real in
        // rt_sigsuspend with that mask, the signal queued first so it ends
        // the wait at once, and the kernel restores the mask as it did.
        ::syscall(SYS_tgkill, t.task.tgid(), t.task.tid(), signo);
        auto programArgs = t.task.regs().syscallArgs();
        if (mask) {
          Registers& r = t.task.mutableRegs();
          r.setSyscallNumber(SYS_rt_sigsuspend);
          r.setSyscallArg(0, *mask);
          r.setSyscallArg(1, 8);
        }
        t.task.resume(Task::Resume::Syscall);
        waitSyscallExit(t);
        Registers& r = t.task.mutableRegs();
        r.setResult(t.skipResult);
        r.setSyscallNumber(numberAtDelivery(e, t.skipNumber));
        r.setSyscallArgs(programArgs);  // the program's own, not rec's rt_sigsuspend arguments
        t.pendingSignal = 0;
      } else if (t.park == ReplayTask::Park::SkipPending) {
        deliverAtSkippedExit(t, e, signo);
      } else if (t.park == ReplayTask::Park::Resumable && t.lastExecutedNumber >= 0) {
        t.task.mutableRegs().setSyscallNumber(numberAtDelivery(e, t.lastExecutedNumber));
        t.pendingSignal = signo;
        if (!atSyscallExit(t.task)) {
          // Replay finished the syscall with remote syscalls (a file
          // mmap): queued, the signal still comes to its delivery stop as
          // the task returns to user code, which an ignored one would not.
          ::syscall(SYS_tgkill, t.task.tgid(), t.task.tid(), signo);
          t.pendingSignal = 0;
        }
      } else {
        throw RecError(kExitBadTrace, fmt::format("rec: event #{}: signal at a syscall exit "
                                                  "without that syscall",
                                                  eventIndex_));
      }
      t.park = ReplayTask::Park::Resumable;
      t.awaitingSignal = signo;
      break;
    }
    case schema::SignalDisposition::DELIVERED:
      if (!e.getSynchronous() && t.awaitingSignal != signo) {
        // Not the delivery of a signal injected before a syscall (that event
        // comes first and awaits it): the first signal after SIGCONT ended
        // a job-control stop, delivered where the task stopped
        // (RecordTask::afterJobStop). Replay needs no real stop, which may
        // not even happen here (an orphaned process group ignores SIGTTOU):
        // a stopping signal the task is parked at is dropped, and this one
        // is queued to come there.
        if (isStopSignal(t.pendingSignal) && !t.pendingFrame &&
            !hasHandler(t.task.tid(), t.pendingSignal))
          t.pendingSignal = 0;
        if (t.park == ReplayTask::Park::SkipPending) {
          // A thread the stop interrupted in a syscall (-ERESTARTSYS): the
          // signal came at that syscall's exit, before the kernel restarted
          // it, as for a signal injected there.
          deliverAtSkippedExit(t, e, signo);
          t.park = ReplayTask::Park::Resumable;
        } else {
          ::syscall(SYS_tgkill, t.task.tgid(), t.task.tid(), signo);
        }
      }
      if (!e.getSynchronous()) t.awaitingSignal = signo;
      break;
    case schema::SignalDisposition::BY_PTRACER:
      // Its emulated ptracer resumed it from the stop it is parked at.
      if (t.park != ReplayTask::Park::Resumable)
        throw RecError(kExitBadTrace,
                       fmt::format("rec: event #{}: {} from a ptracer to a task not stopped",
                                   eventIndex_, name));
      t.restartAfterPtraceStop.reset();  // the kernel's rules apply, as it delivers the signal
      if (std::exchange(t.ptraceStopAtSyscallExit, false)) {
        // At a syscall-exit stop the signal is queued, and delivered at the
        // signal-delivery-stop that follows: go there, as for a signal
        // injected at a syscall's exit.
        t.pendingSignal = signo;
        t.awaitingSignal = signo;
        break;
      }
      t.task.setSiginfo(info);
      t.pendingSignal = signo;
      t.pendingFrame = recordedFrame(e);
      return;
    case schema::SignalDisposition::AT_POINT: {
      reachPoint(t, recordedPoint(e.getRegisters(), e.getMemory(), e.hasState(), e.getState()),
                 fmt::format("where {} arrived", name));
      t.task.setSiginfo(info);
      t.pendingSignal = e.getPtraceStop() ? 0 : signo;
      t.pendingFrame = e.getPtraceStop() ? std::nullopt : recordedFrame(e);
      return;
    }
  }
  Stop stop = advance(t);
  if (stop.kind != StopKind::Signal || stop.signal != signo) {
    std::string actual = stop.kind == StopKind::Seccomp ? "made a syscall"
                         : stop.kind == StopKind::Signal
                             ? fmt::format("received {}", sys::signalName(stop.signal))
                             : describeStop(stop);
    if (stop.kind == StopKind::Exited) {
      t.park = ReplayTask::Park::Dead;
      throw RecError(kExitDivergence,
                     fmt::format("rec: replay diverged at event #{} (task {}): expected {}, but "
                                 "the program {}",
                                 eventIndex_, t.recordedTid, name, actual));
    }
    diverge(t, fmt::format("{} at {:#x}", name, e.getIp()), actual);
  }
  if (e.getSynchronous() && t.task.regs().ip() != e.getIp())
    diverge(t, fmt::format("{} at {:#x}", name, e.getIp()), "faulted elsewhere");
  if (e.hasRegisters()) checkRegisters(t, e.getRegisters(), fmt::format("{}", name));
  checkMemory(t, name);
  if (!e.getSynchronous()) t.task.setSiginfo(info);
  t.awaitingSignal = 0;
  // A ptrace stop: its emulated ptracer decides what is delivered (BY_PTRACER).
  t.pendingSignal = e.getPtraceStop() ? 0 : signo;
  t.pendingFrame = e.getPtraceStop() ? std::nullopt : recordedFrame(e);
  t.park = ReplayTask::Park::Resumable;
}

std::optional<HandlerFrame> ReplaySession::recordedFrame(schema::SignalEvent::Reader e) {
  if (e.getFrame().size() != 3) return std::nullopt;
  HandlerFrame frame;
  frame.trapWords = FrameTrapWords{e.getFrame()[0], e.getFrame()[1], e.getFrame()[2]};
  if (e.hasFrameMemory()) {
    frame.address = e.getFrameMemory().getAddress();
    auto data = e.getFrameMemory().getData();
    frame.bytes.assign(data.begin(), data.end());
  }
  return frame;
}

// Resumes a Resumable task, delivering its pending signal. Where the
// recording wrote the handler's frame, the task is single-stepped into the
// handler and the frame's trap words are made the recorded ones (signals.h).
void ReplaySession::resumeDeliveringPending(ReplayTask& t) {
  int signo = std::exchange(t.pendingSignal, 0);
  std::optional<HandlerFrame> frame = std::exchange(t.pendingFrame, std::nullopt);
  t.ptraceStopAtSyscallExit = false;
  if (auto result = std::exchange(t.restartAfterPtraceStop, std::nullopt); result && !signo) {
    // Resumed by its ptracer without a signal: the kernel restarts the
    // syscall the stop interrupted, as it did when recording.
    Registers& r = t.task.mutableRegs();
    r.setResult(*result == kErestartRestartblock ? SYS_restart_syscall
                                                 : static_cast<int64_t>(r.raw().orig_rax));
    r.setIp(r.ip() - 2);
  }
  if (!signo || !frame) {
    resumeUserCode(t, signo);
    return;
  }
  t.task.resume(Task::Resume::Step, signo);
  Stop stop = t.task.wait();
  if (stop.kind != StopKind::Signal || stop.signal != SIGTRAP)
    diverge(t, fmt::format("to enter the handler of {}", sys::signalName(signo)),
            describeStop(stop));
  if (!writeHandlerFrame(t.task, *frame))
    diverge(
        t,
        fmt::format("the handler's frame of {} at {:#x}", sys::signalName(signo), frame->address),
        fmt::format("it is at {:#x}", t.task.regs().raw().rsp));
  resumeUserCode(t, 0);
}

void ReplaySession::onRdtsc(ReplayTask& t, schema::RdtscEvent::Reader e) {
  if (e.getInLog()) {
    // answered by the time shim at a patched site: handed back from the log
    if (!t.timeSpace || !t.timeSpace->log)
      throw RecError(kExitBadTrace,
                     fmt::format("rec: event #{} is an rdtsc the time shim answered for task {}, "
                                 "which has no time log",
                                 eventIndex_, t.recordedTid));
    rec_shim_entry entry{};
    entry.function = e.getIsRdtscp() ? REC_SHIM_RDTSCP : REC_SHIM_RDTSC;
    entry.args[0] = e.getIp();
    entry.data[0] = e.getValue();
    entry.data[1] = e.getAux();
    queueTimeAnswer(t, entry);
    return;
  }
  Stop stop = advance(t);
  bool patched = stop.kind == StopKind::Signal && stop.signal == SIGILL && rdtscPatcher_ &&
                 rdtscPatcher_->siteAt(t.task, t.task.regs().ip());
  if (stop.kind != StopKind::Signal || (stop.signal != SIGSEGV && !patched) ||
      t.task.regs().ip() != e.getIp())
    diverge(t, fmt::format("rdtsc at {:#x}", e.getIp()), describeStop(stop));
  if (e.hasRegisters())
    checkRegisters(t, e.getRegisters(), fmt::format("rdtsc at {:#x}", e.getIp()));
  checkMemory(t, "rdtsc");
  if (e.getReblockTrapSignal()) {
    StraySignals strays;  // replay-time signals: the recording's come from the trace
    auto action = e.getTrapAction();
    restoreForcedSignal(t.task, stop.signal,
                        std::as_bytes(std::span(action.begin(), action.size())), strays);
  }
  if (e.getStartsTimeLog()) {
    // the recording mapped this process its time log at this trap
    if (!t.timeSpace || t.timeSpace->log)
      throw RecError(
          kExitBadTrace,
          fmt::format("rec: event #{} starts a time log where there cannot be one", eventIndex_));
    StraySignals strays;  // replay's own signals: the recording's come from the trace
    if (!time_shim::startLog(t.task, *t.timeSpace, REC_SHIM_REPLAY, strays))
      throw RecError(kExitUnsupported,
                     fmt::format("rec: cannot map the time shim's log in task {}", t.task.tid()));
  }
  Registers& r = t.task.mutableRegs();
  r.raw().rax = e.getValue() & 0xffffffff;
  r.raw().rdx = e.getValue() >> 32;
  if (e.getIsRdtscp()) r.raw().rcx = e.getAux();
  r.setIp(r.ip() + (e.getIsRdtscp() ? 3 : 2));
  t.pendingSignal = 0;
  t.park = ReplayTask::Park::Resumable;
}

}  // namespace rec
