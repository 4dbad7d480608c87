#include "scheduler.h"

#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "record_task.h"

namespace rec {

namespace {
// A task that keeps making non-blocking syscalls yields to others after this long.
constexpr auto kTimeslice = std::chrono::milliseconds(20);
// A task whose timeslice is up is first asked to stop at its next buffered
// syscall (a free switch point); it is interrupted in user code (which costs
// a point: record_signals.cc) only once it has run this long. A point costs
// a walk of ~100 single-steps at record (~2.7 ms on this VM) and a chase at
// replay, and gains nothing in throughput (one task executes at a time), so
// a CPU-bound thread runs rr's timeslice (50 ms) before one: the thread pool
// bench took 5 points with 20 ms (+10 ms grace), 2-3 now. Syscall switches
// (free) keep the 20 ms slice.
constexpr auto kUserSlice = std::chrono::milliseconds(50);
// Chaos: how often a syscall becomes a switch point.
constexpr double kChaosSwitchProbability = 0.3;
// The scheduler's clock (see TickTimer).
constexpr auto kTick = std::chrono::milliseconds(5);
volatile sig_atomic_t gTicked = 0;
void onTick(int) {
  gTicked = 1;
}
}  // namespace

// A tick aimed at the recording thread only (the trace writer's thread must
// not see it), which interrupts its waitpid so it can preempt a task that has
// run its whole timeslice and enforce --timeout.
class TickTimer {
 public:
  TickTimer() {
    struct sigaction sa {};
    sa.sa_handler = onTick;  // no SA_RESTART: waitpid returns EINTR
    ::sigaction(SIGALRM, &sa, nullptr);
    sigevent ev{};
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = SIGALRM;
    ev._sigev_un._tid = static_cast<pid_t>(::syscall(SYS_gettid));
    created_ = ::timer_create(CLOCK_MONOTONIC, &ev, &timer_) == 0;
  }
  ~TickTimer() {
    if (created_) ::timer_delete(timer_);
  }
  TickTimer(const TickTimer&) = delete;
  TickTimer& operator=(const TickTimer&) = delete;
  // Ticks only while there is something to time: a task waiting for the CPU
  // (preemption) or a --timeout. A lone single-threaded program then runs
  // without rec waking up 200 times a second on its CPU. Turned off only
  // once a tick has come since it was turned on: a ping-pong between two
  // tasks that each block makes the ready queue empty and not empty again
  // at every round, which cost two timer_settime calls per round; now at
  // most two per tick, and a lone program sees at most one more tick.
  void want(bool on) {
    if (!created_ || on == armed_) return;
    if (!on && !gTicked) return;
    itimerspec spec{};
    if (on) {
      spec.it_interval.tv_nsec = std::chrono::nanoseconds(kTick).count();
      spec.it_value = spec.it_interval;
    }
    gTicked = 0;
    if (::timer_settime(timer_, 0, &spec, nullptr) == 0) armed_ = on;
  }

 private:
  timer_t timer_{};
  bool created_ = false;
  bool armed_ = false;
};

Scheduler::Scheduler(const ChaosOptions& chaos)
    : chaos_(chaos),
      pickRandom_(std::random_device{}()),
      timeslice_(kTimeslice),
      dropInterruptTest_(std::getenv("REC_TEST_DROP_INTERRUPT") != nullptr) {
  if (chaos_.enabled) {
    chaosSeed_ = chaos_.seed ? chaos_.seed : std::random_device{}() | 1;
    chaosRandom_.seed(chaosSeed_);
    pretendedCpus_ = std::uniform_int_distribution<int>(1, 8)(chaosRandom_);
  }
}

Scheduler::~Scheduler() = default;

void Scheduler::noteRunning(RecordTask& t) {
  if (isCurrent(t)) return;
  t.sliceStart = Clock::now();
  if (lanes_ <= 1) running_.clear();  // serial: the one current task
  if (!running_.empty()) {
    ++parallelStarts_;
    if (closeBeside_)
      for (RecordTask* u : running_) closeBeside_(*u);
  }
  running_.push_back(&t);
  mostAtOnce_ = std::max(mostAtOnce_, running_.size());
}

void Scheduler::run(RecordTask& t, Task::Resume how, int signal) {
  // Test: an interrupt sent while `t` stands at a syscall's entry, which its
  // exit stop drops (tests/integration/threads.sh preempt_after_syscalls).
  if (dropInterruptTest_ && how == Task::Resume::Syscall && !ready_.empty() &&
      !t.expecting(RecordTask::Expect::InterruptStop) && Clock::now() - t.sliceStart >= timeslice_)
    t.requestInterrupt();
  noteRunning(t);
  lastRun_ = &t;
  if (resumed_) resumed_(t, running_.size() == 1);
  t.resume(how, signal);
}

void Scheduler::adopt(RecordTask& t) {
  noteRunning(t);
  lastRun_ = &t;
}

void Scheduler::release(RecordTask& t) {
  std::erase(running_, &t);
  endExclusive(t);
}

void Scheduler::makeReady(RecordTask& t) {
  t.setState(RecordTask::State::Ready);
  release(t);
  if (std::find(ready_.begin(), ready_.end(), &t) == ready_.end()) ready_.push_back(&t);
}

void Scheduler::forget(RecordTask& t) {
  release(t);
  if (lastRun_ == &t) lastRun_ = nullptr;
  if (exclusive_ == &t) exclusive_ = nullptr;
  std::erase(ready_, &t);
}

void Scheduler::setParallel(int lanes,
                            std::function<bool(const RecordTask&, const RecordTask&)> independent) {
  lanes_ = static_cast<size_t>(std::max(1, lanes));
  independent_ = std::move(independent);
}

bool Scheduler::mayStart(const RecordTask& t) const {
  if (exclusive_) return false;
  if (running_.empty()) return true;
  if (inExclusive_) return false;
  if (running_.size() >= lanes_ || !independent_) return false;
  if (!std::all_of(running_.begin(), running_.end(),
                   [&](const RecordTask* r) { return independent_(t, *r); }))
    return false;
  return !closeBeside_ || std::all_of(running_.begin(), running_.end(),
                                      [&](RecordTask* r) { return closeBeside_(*r); });
}

void Scheduler::parkExclusive(RecordTask& t) {
  release(t);
  exclusive_ = &t;
  ++exclusiveWaits_;
  // The others stop at their next buffered call instead of running on to
  // their next traced one or their timeslice's end: a compiler parked at
  // its mmap of glibc's gconv cache waited for the other one for up to 20 ms.
  for (RecordTask* r : running_)
    if (r->sysbuf) sysbuf::stopAtNextCall(*r->sysbuf);
}

void Scheduler::scheduleIfIdle() {
  for (;;) {
    if (exclusive_) {
      // Parked until alone; nothing else starts first.
      if (!running_.empty()) return;
      RecordTask& x = *std::exchange(exclusive_, nullptr);
      exclusiveStarter_(x);
      continue;
    }
    if (ready_.empty()) return;
    if (!running_.empty()) {
      // Parallel: a ready task independent of all that run, at random.
      if (lanes_ <= 1 || running_.size() >= lanes_ || inExclusive_) return;
      std::vector<size_t> fit;
      for (size_t i = 0; i < ready_.size(); ++i)
        if (ready_[i]->state() != RecordTask::State::Ready || mayStart(*ready_[i]))
          fit.push_back(i);
      if (fit.empty()) return;
      size_t pick = fit[std::uniform_int_distribution<size_t>(
          0, fit.size() - 1)(chaos_.enabled ? chaosRandom_ : pickRandom_)];
      startReady(pick);
      continue;
    }
    size_t pick = 0;
    if (chaos_.enabled) {
      // Chaos: any runnable task may go next, for a random timeslice.
      pick = std::uniform_int_distribution<size_t>(0, ready_.size() - 1)(chaosRandom_);
      timeslice_ =
          std::chrono::microseconds(std::uniform_int_distribution<int>(100, 50'000)(chaosRandom_));
    } else {
      // Any ready task but the one that just gave up the CPU (a sched_yield
      // or a preemption lets another run), at random: a fixed order locks
      // lock hand-offs into a cycle (CPython's GIL went back and forth
      // between two spinning threads for a minute, the main thread starved;
      // docs/process-compat.md). The schedule is recorded, so replay needs
      // nothing of it.
      auto last = std::find(ready_.begin(), ready_.end(), lastRun_);
      if (last == ready_.end() || ready_.size() == 1) {
        pick = std::uniform_int_distribution<size_t>(0, ready_.size() - 1)(pickRandom_);
      } else {
        size_t skip = static_cast<size_t>(last - ready_.begin());
        pick = std::uniform_int_distribution<size_t>(0, ready_.size() - 2)(pickRandom_);
        if (pick >= skip) ++pick;
      }
    }
    startReady(pick);
  }
}

void Scheduler::startReady(size_t pick) {
  RecordTask& t = *ready_[pick];
  ready_.erase(ready_.begin() + static_cast<long>(pick));
  // Queued, then something else happened to it (it was killed).
  if (t.state() != RecordTask::State::Ready) return;
  if (starter_)
    starter_(t);
  else
    run(t);
}

std::optional<Stop> Scheduler::stopUnlessAsleep(RecordTask& t) {
  // rec and its tracees share one CPU: yielding it lets the task run.
  for (;;) {
    if (auto stop = t.task.poll()) return stop;
    if (gRecordStopRequested || gRecordTimeoutExpired) return std::nullopt;
    char state = t.task.kernelState();
    if (state == 'S' || state == 'D') {
      // Asleep; it may have woken meanwhile, finished and stopped.
      if (auto stop = t.task.poll()) return stop;
      return std::nullopt;
    }
    ::sched_yield();
  }
}

bool Scheduler::shouldSwitchAfterSyscall(const RecordTask& t) {
  if ((t.row && (t.row->flags & sys::kYields)) || Clock::now() - t.sliceStart > timeslice_)
    return true;
  return chaos_.enabled && std::bernoulli_distribution(kChaosSwitchProbability)(chaosRandom_);
}

void Scheduler::maybePreempt() {
  if (ready_.empty() && !exclusive_) return;
  // Copied: requestInterrupt leaves the lanes as they are, but be safe.
  std::vector<RecordTask*> lanes = running_;
  for (RecordTask* t : lanes) {
    if (t->state() != RecordTask::State::Running) continue;
    // Asleep in the buffer (docs/syscall-buffer.md "Blocking in the
    // buffer"): it holds its lane doing nothing, and a task waits. The
    // interrupt turns its call into a traced one, which blocks here instead.
    // Asked at every tick until it comes (an interrupt can be dropped: below).
    if (t->sysbuf && sysbuf::blockArmed(t->sysbuf.get())) {
      t->requestInterrupt();
      continue;
    }
    const auto now = Clock::now();
    // An interrupt that meets another ptrace stop first (a syscall entered
    // as it came) is dropped by the kernel ("any trap clears pending STOP
    // trap"), and waiting for it would never preempt the task again. Asked
    // again, as a new one, once a timeslice passed without it.
    const bool stale = t->expecting(RecordTask::Expect::InterruptStop);
    if (stale && now - t->interruptRequested < timeslice_) continue;
    auto ran = now - t->sliceStart;
    if (ran < timeslice_) continue;
    // A switch at a syscall costs nothing: replay parks the task there. One
    // in user code costs a point: rec single-steps the task for hundreds to
    // thousands of instructions to find one replay can recognise (a make -j2
    // recording took 1.45 s instead of 0.30 s with 5 of them), and replay
    // stops there too. So a task making buffered calls is first asked to make
    // the next one traced. Chaos keeps preempting anywhere: switches inside
    // user code are what shake out races between threads.
    if (!chaos_.enabled) {
      if (t->sysbuf) sysbuf::stopAtNextCall(*t->sysbuf);
      if (ran < kUserSlice) continue;
    }
    if (stale) {
      // Not while it stands in a ptrace stop rec has not seen yet: that may
      // be the interrupt's own, and one sent now would stop it once more.
      if (t->task.kernelState() == 't') continue;
      ++reinterrupts_;
    }
    t->requestInterrupt();
  }
}

void Scheduler::tick(bool otherReason) {
  if (tick_) tick_->want(!ready_.empty() || exclusive_ || otherReason);
}

Scheduler::TickScope::TickScope(Scheduler& s) : scheduler_(s) {
  scheduler_.tick_ = std::make_unique<TickTimer>();
}

Scheduler::TickScope::~TickScope() {
  scheduler_.tick_.reset();
}

}  // namespace rec
