#include "record_task.h"

#include <fmt/format.h>
#include <sys/ptrace.h>

#include "errors.h"
#include "exit_codes.h"

namespace rec {

const char* RecordTask::stateName(State s) {
  switch (s) {
    case State::Newborn:
      return "Newborn";
    case State::Ready:
      return "Ready";
    case State::Running:
      return "Running";
    case State::InSyscall:
      return "InSyscall";
    case State::VforkHeld:
      return "VforkHeld";
    case State::PtraceStopped:
      return "PtraceStopped";
    case State::JobStopped:
      return "JobStopped";
    case State::Exiting:
      return "Exiting";
    case State::Dead:
      return "Dead";
  }
  return "?";
}

namespace {
using State = RecordTask::State;

// The transitions of the diagram in record_task.h. Staying in a state is
// always allowed.
bool allowed(State from, State to) {
  if (from == to) return true;
  // Death (PTRACE_EVENT_EXIT, or a SIGKILL reaped at once) can come in any
  // live state.
  if (to == State::Exiting) return from != State::Dead;
  if (to == State::Dead) return true;
  switch (from) {
    case State::Newborn:
      return to == State::Ready;
    case State::Ready:
    case State::Running:
    case State::InSyscall:
      return to == State::Ready || to == State::Running || to == State::InSyscall ||
             to == State::PtraceStopped || to == State::JobStopped ||
             (from == State::InSyscall && to == State::VforkHeld);
    case State::VforkHeld:
      return to == State::Running || to == State::Ready || to == State::PtraceStopped;
    case State::PtraceStopped:
      return to == State::Ready;
    case State::JobStopped:
      return to == State::Ready || to == State::PtraceStopped;
    case State::Exiting:
    case State::Dead:
      return false;
  }
  return false;
}
}  // namespace

void RecordTask::setState(State to) {
  if (!allowed(state_, to))
    throw RecError(kExitInternal,
                   fmt::format("rec: internal error: task {} cannot go from {} to {}", task.tid(),
                               stateName(state_), stateName(to)));
  state_ = to;
}

void RecordTask::resume(Task::Resume how, int signal) {
  setState(how == Task::Resume::Syscall ? State::InSyscall : State::Running);
  if (how != Task::Resume::Syscall) runningSince = Clock::now();
  lastResumeSignal_ = signal;
  task.resume(how, signal);
}

bool RecordTask::noteInitialStop() {
  initialStopSeen_ = true;
  return announcedByParent_;
}

bool RecordTask::noteAnnouncedByParent() {
  announcedByParent_ = true;
  return initialStopSeen_;
}

bool RecordTask::requestInterrupt() {
  if (::ptrace(PTRACE_INTERRUPT, task.tid(), nullptr, nullptr) != 0) return false;
  expect(Expect::InterruptStop);
  interruptRequested = Clock::now();
  return true;
}

bool RecordTask::atSyscallReturn(const Registers& regs, bool compareResult) const {
  return syscallReturn_ && regs.ip() == syscallReturn_->ip() && regs.sp() == syscallReturn_->sp() &&
         (!compareResult || regs.result() == syscallReturn_->result());
}

bool RecordTask::markExitWritten() {
  if (exitRecord_ != ExitRecord::NotWritten) return false;
  exitRecord_ = ExitRecord::Written;
  return true;
}

void RecordTask::deferExit(ExitRecord until, int status) {
  if (exitRecord_ != ExitRecord::NotWritten) return;
  exitRecord_ = until;
  deferredExitStatus_ = status;
}

std::optional<int> RecordTask::takeDeferredExit(ExitRecord until) {
  if (exitRecord_ != until) return std::nullopt;
  exitRecord_ = ExitRecord::NotWritten;
  return deferredExitStatus_;
}

}  // namespace rec
