// The recorder's scheduler: which task runs, for how long, and who is next.
//
// Invariant: at most one task executes at a time, current(). Every other
// live task is stopped by rec and queued (Ready), blocked in the kernel in a
// syscall that lets others run (InSyscall, not current), held (a vfork
// parent), new or exiting. The recorded event order is the schedule, so replay
// needs nothing from here but the events.
//
// Parallel recording (on unless REC_PARALLEL=off, docs/parallel.md) relaxes the
// invariant: tasks the recorder calls independent (different address
// spaces, neither sharing memory with anything) may execute at once, each
// in a lane of its own; all of them are "current". A task about to make a
// syscall that must not overlap others (parkExclusive) waits until it is
// the only one executing, and nothing new starts meanwhile.
//
// A task gives up the CPU at a blocking syscall, after a syscall once its
// timeslice is used up (or at sched_yield), or by preemption in user code
// (PTRACE_INTERRUPT after a longer slice, then a point chosen by
// record_signals.cc). The next
// task is a ready one picked at random (scheduleIfIdle says why). Under
// --chaos the pick, the timeslice, extra switch points at syscalls and the
// CPU count sched_getaffinity reports are random from a seed stored in the
// trace.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "record_session.h"
#include "task.h"

namespace rec {

class RecordTask;
class TickTimer;

class Scheduler {
 public:
  explicit Scheduler(const ChaosOptions& chaos);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  uint64_t chaosSeed() const { return chaosSeed_; }
  // Chaos: the CPU count sched_getaffinity reports; 0: the real one.
  int pretendedCpus() const { return pretendedCpus_; }
  uint64_t preemptions() const { return preemptions_; }
  // Interrupts sent again because the first never stopped the task.
  uint64_t reinterrupts() const { return reinterrupts_; }

  // The tasks executing (serial: at most one).
  const std::vector<RecordTask*>& executing() const { return running_; }
  // The task executing (in parallel recording: one of them), or null.
  RecordTask* current() const { return running_.empty() ? nullptr : running_.front(); }
  bool isCurrent(const RecordTask& t) const {
    return std::find(running_.begin(), running_.end(), &t) != running_.end();
  }
  bool othersWaiting() const { return !ready_.empty() || exclusive_; }

  // Parallel recording: up to `lanes` tasks execute at once, any two of
  // them `independent`. Off (one at a time) unless called.
  void setParallel(int lanes,
                   std::function<bool(const RecordTask&, const RecordTask&)> independent);
  bool parallel() const { return lanes_ > 1; }
  // Whether `t` (not executing) may be resumed now: nothing executes, or
  // (parallel) a lane is free and `t` is independent of every executing task.
  bool mayStart(const RecordTask& t) const;
  // `t`, executing and stopped at a syscall's entry, may not make it while
  // others execute: it leaves its lane and is resumed into the syscall (by
  // the exclusive starter) once it would be alone. Others that stop
  // meanwhile queue; nothing starts before it.
  void parkExclusive(RecordTask& t);
  bool exclusiveWaiting() const { return exclusive_ != nullptr; }
  // `t` (executing, alone) enters such a syscall now: nothing starts beside
  // it until endExclusive(t), its syscall's exit (or it leaves its lane).
  void beginExclusive(RecordTask& t) { inExclusive_ = &t; }
  void endExclusive(const RecordTask& t) {
    if (inExclusive_ == &t) inExclusive_ = nullptr;
  }
  bool alone(const RecordTask& t) const {
    return running_.empty() || (running_.size() == 1 && running_.front() == &t);
  }
  void setExclusiveStarter(std::function<void(RecordTask&)> starter) {
    exclusiveStarter_ = std::move(starter);
  }
  // The buffer's output window (docs/syscall-buffer.md "The program's
  // output"): `resumed(t, alone)` for each task run() resumes, whether it
  // executes alone; `closeBeside(u)` for each executing task before another
  // starts beside it: false while u is inside an output write (nothing
  // starts beside it meanwhile).
  void setSoloHooks(std::function<void(RecordTask&, bool)> resumed,
                    std::function<bool(RecordTask&)> closeBeside) {
    resumed_ = std::move(resumed);
    closeBeside_ = std::move(closeBeside);
  }
  // Lanes started beside an executing task, and the most executing at once.
  uint64_t parallelStarts() const { return parallelStarts_; }
  // Syscalls that waited for the others to stop (parkExclusive).
  uint64_t exclusiveWaits() const { return exclusiveWaits_; }
  size_t mostAtOnce() const { return mostAtOnce_; }

  // Resumes `t` as the current task; a task that was not current starts a
  // new timeslice.
  void run(RecordTask& t, Task::Resume how = Task::Resume::Cont, int signal = 0);
  // `t` is already executing (the first task, a thread that exec'd and took
  // the leader's place): it becomes current without a resume.
  void adopt(RecordTask& t);
  // `t` stops being current without being queued: it blocks in the kernel,
  // is held, or exits.
  void release(RecordTask& t);
  // `t` (stopped) waits for its turn.
  void makeReady(RecordTask& t);
  // `t` is gone or moved: no longer current nor queued.
  void forget(RecordTask& t);

  // The current task `t` was just resumed into a syscall that may block.
  // Lets it run until it stops (returns that stop, which the caller
  // handles: the syscall did not block) or sleeps in the kernel (nullopt:
  // release it, others may run). A syscall that completes without sleeping
  // (a write to a file or a pipe with room) thus takes effect before any
  // other task runs, in the order the trace records.
  std::optional<Stop> stopUnlessAsleep(RecordTask& t);

  // Who starts a task scheduleIfIdle picks (default: run(t)); the recorder
  // starts a task its emulated ptracer resumed in its own way.
  void setStarter(std::function<void(RecordTask&)> starter) { starter_ = std::move(starter); }
  // When no task is current, resumes a ready one picked at random (under
  // chaos also for a random timeslice).
  void scheduleIfIdle();
  // After the syscall `t` just finished (t.nr): whether it yields now.
  bool shouldSwitchAfterSyscall(const RecordTask& t);
  // Interrupts the current task if it has run user code for its whole
  // timeslice while another waits (see RecordTask::Expect::InterruptStop).
  void maybePreempt();
  void notePreemption() { ++preemptions_; }
  // The tick that wakes rec's waitpid, on while a task waits for the CPU or
  // `otherReason` (a --timeout) holds; only inside a TickScope.
  void tick(bool otherReason);
  // The lifetime of the tick: the recording's event loop.
  class TickScope {
   public:
    explicit TickScope(Scheduler& s);
    ~TickScope();
    TickScope(const TickScope&) = delete;
    TickScope& operator=(const TickScope&) = delete;

   private:
    Scheduler& scheduler_;
  };

 private:
  // Takes ready_[pick] off the queue and starts it, if it is still ready.
  void startReady(size_t pick);
  ChaosOptions chaos_;
  uint64_t chaosSeed_ = 0;
  std::mt19937_64 chaosRandom_;
  std::mt19937_64 pickRandom_;  // which ready task runs next (outside chaos)
  int pretendedCpus_ = 0;
  std::chrono::nanoseconds timeslice_;
  std::deque<RecordTask*> ready_;
  std::vector<RecordTask*> running_;  // executing (serial: at most one)
  RecordTask* lastRun_ = nullptr;  // the task that ran last (not picked next if another is ready)
  uint64_t preemptions_ = 0;
  uint64_t reinterrupts_ = 0;
  // REC_TEST_DROP_INTERRUPT (tests only): provoke a dropped interrupt.
  bool dropInterruptTest_ = false;
  std::unique_ptr<TickTimer> tick_;
  std::function<void(RecordTask&)> starter_;
  size_t lanes_ = 1;
  std::function<bool(const RecordTask&, const RecordTask&)> independent_;
  RecordTask* exclusive_ = nullptr;    // parked at a syscall entry until alone
  RecordTask* inExclusive_ = nullptr;  // in that syscall now
  std::function<void(RecordTask&)> exclusiveStarter_;
  std::function<void(RecordTask&, bool)> resumed_;
  std::function<bool(RecordTask&)> closeBeside_;
  uint64_t parallelStarts_ = 0;
  uint64_t exclusiveWaits_ = 0;
  size_t mostAtOnce_ = 0;
  void noteRunning(RecordTask& t);
};

}  // namespace rec
