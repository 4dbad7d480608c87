#include "replay_session.h"

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
#include "cpu_info.h"
#include "environment.h"
#include "errors.h"
#include "exit_codes.h"
#include "process_maps.h"
#include "rdtsc_sites.h"
#include "remote_syscall.h"
#include "replay_observer.h"
#include "replay_task.h"
#include "seccomp_filter.h"
#include "signals.h"
#include "spawn.h"
#include "symbolize.h"
#include "syscall_table.h"

namespace rec {

ReplaySession::ReplaySession(ReplayOptions options)
    : options_(std::move(options)), parallel_(!offByEnvironment("REC_REPLAY_PARALLEL")) {}

ReplaySession::~ReplaySession() {
  killAll();
}

void ReplaySession::killAll() {
  // Only this session's tasks: other sessions' (a debugger's checkpoints)
  // are rec's children too. Threads before their leader, whose death is
  // reported only once its threads are reaped.
  std::vector<pid_t> threads, leaders;
  for (auto& [recorded, t] : tasks_) {
    if (t->park == ReplayTask::Park::Dead) continue;
    ::kill(t->task.tid(), SIGKILL);
    t->park = ReplayTask::Park::Dead;
    (t->task.tid() == t->task.tgid() ? leaders : threads).push_back(t->task.tid());
  }
  leaders.insert(leaders.end(), zombies_.begin(), zombies_.end());
  threads.insert(threads.end(), leaders.begin(), leaders.end());
  for (pid_t pid : threads) {
    // Killed tasks may still report PTRACE_EVENT_EXIT and must be let go.
    for (;;) {
      int status = 0;
      pid_t got = ::waitpid(pid, &status, __WALL);
      if (got < 0) {
        if (errno == EINTR) continue;
        break;  // ECHILD: already reaped
      }
      if (WIFEXITED(status) || WIFSIGNALED(status)) break;
      ::ptrace(PTRACE_CONT, pid, nullptr, nullptr);
    }
  }
  zombies_.clear();
}

ReplaySession::ReplayTask& ReplaySession::taskFor(int recordedTid) {
  auto it = tasks_.find(recordedTid);
  if (it == tasks_.end())
    throw RecError(kExitBadTrace, fmt::format("rec: trace event #{} names unknown task {}",
                                              eventIndex_, recordedTid));
  return *it->second;
}

void ReplaySession::checkCpu() {
  auto c = reader_->header().getCpu();
  CpuDescription recorded;
  recorded.vendor = c.getVendor();
  recorded.modelName = c.getModelName();
  recorded.xcr0 = c.getXsaveFeatures();
  for (auto l : c.getCpuidLeaves())
    recorded.leaves.push_back(
        {l.getLeaf(), l.getSubleaf(), l.getEax(), l.getEbx(), l.getEcx(), l.getEdx()});
  auto diffs = cpuDifferences(recorded, describeCpuFeatures());
  if (diffs.empty()) return;
  std::string list;
  for (const auto& d : diffs) list += (list.empty() ? "" : "; ") + d;
  if (!options_.force)
    throw RecError(kExitUnsupported,
                   fmt::format("rec: this CPU differs from the recording's ({}); the program may "
                               "take other paths (CPUID cannot be trapped here). Use --force to "
                               "try anyway",
                               list));
  fmt::print(stderr, "rec: warning: CPU differs from the recording's: {}\n", list);
}

int ReplaySession::run() {
  open();
  while (step()) {
  }
  return finish();
}

void ReplaySession::open() {
  reader_ = format::TraceReader::open(options_.tracePath);
  if (options_.requireMemoryChecks && !reader_->header().getCheckMemory())
    throw RecError(kExitUsage, fmt::format("rec: replay --check: {} has no memory digests (record "
                                           "it with rec record --check-memory)",
                                           options_.tracePath));
  checkCpu();
  blobs_ = std::make_unique<BlobFiles>(*reader_, *blobCache_);
}

std::optional<schema::Event::Reader> ReplaySession::peekEvent() {
  if (!peeked_) {
    if (seekFirst_) {
      reader_->seek(nextIndex_);
      seekFirst_ = false;
    }
    nextIndex_ = reader_->nextEventIndex();
    next_ = reader_->nextEvent();
    peeked_ = true;
  }
  return next_;
}

bool ReplaySession::step() {
  auto event = peekEvent();
  if (!event) return false;
  peeked_ = false;
  eventIndex_ = nextIndex_;
  if (!started_) {
    start(*event);
    started_ = true;
  }
  collectDue();
  dispatch(*event);
  int tid = event->getTid();
  releaseIfDead(tid);
  nextIndex_ = eventIndex_ + 1;
  if (observer_) {
    observer_->eventDone(eventIndex_, *event);
    return true;
  }
  if (auto it = tasks_.find(tid); it != tasks_.end()) considerAhead(*it->second);
  reconsiderDue();
  return true;
}

int ReplaySession::finish() {
  if (!reader_->complete()) {
    killAll();
    fmt::print(stderr, "rec: the recording was cut short ({}); replay stopped after event #{}\n",
               reader_->cutShortReason(), nextIndex_);
    return kExitTraceCutShort;
  }
  if (!initialExited_) throw RecError(kExitBadTrace, "rec: trace ends before the program exited");
  killAll();
  if (options_.verbose)
    fmt::print(stderr, "rec: {} run(s) started ahead of their turn (parallel replay)\n",
               startedAhead_);
  if (WIFEXITED(initialStatus_)) return WEXITSTATUS(initialStatus_);
  if (WIFSIGNALED(initialStatus_)) return 128 + WTERMSIG(initialStatus_);
  return kExitInternal;
}

std::vector<ReplaySession::TaskInfo> ReplaySession::liveTasks() {
  std::vector<TaskInfo> out;
  for (auto& [recorded, t] : tasks_) {
    if (t->park == ReplayTask::Park::Dead) continue;
    int recordedPid = recorded;
    for (auto& [id, other] : tasks_)
      if (other->park != ReplayTask::Park::Dead && other->task.tid() == t->task.tgid())
        recordedPid = id;
    out.push_back({recorded, recordedPid, t->task.tid()});
  }
  return out;
}

Task* ReplaySession::inspect(int recordedTid) {
  auto it = tasks_.find(recordedTid);
  if (it == tasks_.end() || it->second->park == ReplayTask::Park::Dead) return nullptr;
  ReplayTask& t = *it->second;
  // A new task's first stop comes in its own time; collecting it early (and
  // writing its recorded id where clone wrote the real one) is what the
  // replay would do before running it anyway.
  if (t.park == ReplayTask::Park::Initial) advanceInitial(t);
  return &t.task;
}

Registers ReplaySession::visibleRegisters(int recordedTid) {
  Task* task = inspect(recordedTid);
  if (!task) return {};
  Registers regs = task->regs();
  ReplayTask& t = *tasks_.at(recordedTid);
  if (t.park == ReplayTask::Park::SkipPending) {
    regs.setResult(t.skipResult);
    regs.setSyscallNumber(t.skipNumber);
  }
  return regs;
}

std::string ReplaySession::blobFile(const format::BlobHash& hash, const std::string& recordedPath) {
  return blobs_->path(hash, recordedPath);
}

void ReplaySession::start(schema::Event::Reader first) {
  if (first.which() != schema::Event::EXEC)
    throw RecError(kExitBadTrace, "rec: trace does not start with the program's exec");
  auto header = reader_->header();
  SpawnOptions spawn;
  spawn.path = blobs_->path(hashOf(first.getExec().getExeBlob()), header.getExecutable());
  for (auto a : header.getArgv()) spawn.argv.emplace_back(a.cStr());
  for (auto e : header.getEnvp()) spawn.envp.emplace_back(e.cStr());
  // Nothing the program does depends on the real cwd (file access is
  // emulated), but a recorded directory that exists keeps /proc tidy.
  struct stat st;
  std::string cwd = header.getCwd();
  spawn.cwd = (::stat(cwd.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) ? cwd : "/";
  // The recording's CPU if this machine has it: CPUID, which cannot be
  // trapped here, tells the program the APIC id of the CPU it runs on, and
  // glibc keeps it in memory and registers that replay compares.
  spawn.cpu = pinToCpu(chooseCpu(header.getCpuNumber()));
  for (auto l : header.getRlimits())
    spawn.rlimits.push_back({static_cast<int>(l.getResource()), rlimit{l.getSoft(), l.getHard()}});
  auto bitmap = header.getTracedSyscalls();
  splitHeaderSyscallBitmaps(bitmap.begin(), bitmap.size(), spawn.tracedSyscalls,
                            spawn.refusedSyscalls);
  spawn.untracedIpFrom = kScratchUntracedIp;
  spawn.untracedIpTo = kScratchShimSyscallIp;
  spawn.disableCoreDumps = true;  // replay has no side effects, not even a core file
  // RDTSC traps or not as it did when recorded, and the recording's patched
  // sites are patched again (also where this machine cannot trap it).
  spawn.trapRdtsc = !header.getRdtscPatched();
  if (header.getRdtscPatched() || !rdtscTrapsHere()) rdtscPatcher_.emplace();
  timeShim_ = header.getTimeShim();
  syscallBuffer_ = header.getSyscallBuffer();
  runSpans_ = header.getRunSpans();
  if (header.getScratchAddress() != kScratchAddress)
    throw RecError(kExitBadTrace, "rec: trace uses a different scratch address");
  pid_t pid = spawnTraced(spawn);
  initialRecordedTid_ = first.getTid();
  auto t = std::make_unique<ReplayTask>(first.getTid(), pid);
  t->cpu = spawn.cpu;
  replayerCpu_ = spawn.cpu;
  t->park = ReplayTask::Park::Seccomp;
  Stop stop = t->task.wait();
  if (stop.kind != StopKind::Seccomp)
    throw RecError(kExitUnsupported,
                   fmt::format("rec: the replayed program did not start ({})", describeStop(stop)));
  tasks_[first.getTid()] = std::move(t);
}

// A task that has died keeps its entry (an event naming it later is an
// error) but not its /proc fd or its share of a time log: rec's fds stay
// flat however many processes have lived.
void ReplaySession::releaseIfDead(int recordedTid) {
  auto it = tasks_.find(recordedTid);
  if (it == tasks_.end() || it->second->park != ReplayTask::Park::Dead) return;
  it->second->task.resetMemory();
  it->second->timeSpace.reset();
}

void ReplaySession::followTask(const ReplayTask& t) {
  if (t.cpu < 0 || replayerCpu_ < 0 || t.cpu == replayerCpu_) return;
  if (pinToCpu(t.cpu) == t.cpu) replayerCpu_ = t.cpu;
}

void ReplaySession::dispatch(schema::Event::Reader event) {
  currentEvent_ = event;
  ReplayTask& t = taskFor(event.getTid());
  if (options_.verbose)
    fmt::print(stderr, "rec: event #{} task {} kind {}{}\n", eventIndex_, event.getTid(),
               static_cast<int>(event.which()),
               event.isSyscall() ? fmt::format(" syscall {}", event.getSyscall().getNumber()) : "");
  if (t.park == ReplayTask::Park::Dead && event.isExit() && t.deadStatus) {
    // Ended by a sibling's execve while replaying it.
    if (!sameStatus(*t.deadStatus, event.getExit().getWaitStatus()))
      throw RecError(
          kExitDivergence,
          fmt::format("rec: replay diverged at event #{} (task {}): expected {}, got {}",
                      eventIndex_, t.recordedTid, statusText(event.getExit().getWaitStatus()),
                      statusText(*t.deadStatus)));
    t.deadStatus.reset();
    return;
  }
  if (t.park == ReplayTask::Park::Dead)
    throw RecError(kExitBadTrace, fmt::format("rec: trace event #{} is for task {} after it exited",
                                              eventIndex_, event.getTid()));
  followTask(t);
  if (EventWindow::queued(event) && eventIndex_ < t.queuedUpTo) {
    // Handed to the task when it started ahead toward a later event: only
    // the program's output it holds is left to show, in trace order.
    if (event.isBufferedSyscalls()) showBuffered(event.getBufferedSyscalls());
    noteMatched(t, event);
    return;
  }
  if (!EventWindow::queued(event)) t.lastStopEvent = eventIndex_;
  switch (event.which()) {
    case schema::Event::SYSCALL:
      if (event.getSyscall().getInSyscallBuffer())
        throw RecError(kExitBadTrace,
                       fmt::format("rec: event #{} is a buffered syscall of the format before "
                                   "version 2",
                                   eventIndex_));
      else if (event.getSyscall().getBuffered())
        onBufferedSyscall(t, event.getSyscall());
      else
        onSyscall(t, event.getSyscall());
      break;
    case schema::Event::SYSCALL_ENTER:
      onSyscallEnter(t, event.getSyscallEnter());
      break;
    case schema::Event::SIGNAL:
      onSignal(t, event.getSignal());
      break;
    case schema::Event::EXEC:
      onExec(t, event.getExec());
      break;
    case schema::Event::RDTSC:
      onRdtsc(t, event.getRdtsc());
      break;
    case schema::Event::EXIT:
      onExit(t, event.getExit());
      break;
    case schema::Event::BUFFERED_SYSCALLS:
      onBufferedSyscalls(t, event.getBufferedSyscalls());
      break;
    case schema::Event::PREEMPT: {
      auto p = event.getPreempt();
      reachPoint(t, recordedPoint(p.getRegisters(), p.getMemory(), p.hasState(), p.getState()),
                 "the preemption point");
      break;
    }
    default:
      throw RecError(kExitBadTrace, fmt::format("rec: unknown event kind at #{}", eventIndex_));
  }
  noteMatched(t, event);
}

void ReplaySession::diverge(ReplayTask& t, const std::string& expected, const std::string& actual) {
  std::string where;
  const uint64_t ip = t.task.regs().ip();
  try {
    where = describeCodeAddress(t.task.tid(), ip, [this](const std::string& path) {
      return blobs_->pathForRecorded(path);
    });
  } catch (const RecError&) {
    where = "unknown address";
  }
  // rec's own code in the task has no symbols: say whose it is.
  for (const AddressRange& pages : kRecPages)
    if (ip >= pages.start && ip < pages.end)
      where +=
          " (rec's syscall buffer and time shim, entered from one of the program's patched "
          "syscall sites)";
  throw RecError(
      kExitDivergence,
      fmt::format("rec: replay diverged at event #{} (task {}): expected {}, but the "
                  "program {} at {}{}",
                  eventIndex_, t.recordedTid, expected, actual, where,
                  !lastMatched_.valid ? std::string()
                                      : "; the last event that matched was " + lastMatched_.text()));
}

// Applies the recorded result of the emulated syscall a SkipPending task sits
// in. A -ERESTART* result with no signal following means the kernel restarted
// the syscall during recording (rec's own PTRACE_INTERRUPT can cause that):
// the task goes back to its syscall instruction and makes it again.
void ReplaySession::skipSyscall(ReplayTask& t) {
  Registers& r = t.task.mutableRegs();
  r.setSyscallNumber(-1);
  if (t.skipResult >= kErestartRestartblock && t.skipResult <= kErestartsys) {
    r.setResult(t.skipResult == kErestartRestartblock ? SYS_restart_syscall : t.skipNumber);
    r.setIp(r.ip() - 2);
  } else {
    r.setResult(t.skipResult);
  }
}

// A 32-bit syscall that runs without an event (exit, exit_group by int 0x80).
// The number is looked at first: only exit and exit_group's 32-bit numbers
// (1, 252) need the seccomp data, a PTRACE_GETEVENTMSG this stop would
// otherwise pay at every syscall.
bool ReplaySession::compatPassthrough(ReplayTask& t) {
  const sys::SyscallRow* row = sys::findCompatSyscall(t.task.regs().syscallNumber());
  return row && row->support == sys::Support::Passthrough &&
         t.task.eventMessage() == sys::kSeccompCompatData;
}

// Resumes the task and returns its next stop that matters to the trace,
// dropping signals the kernel generates during replay (a real child's
// SIGCHLD, ...): the recording's asynchronous signals come from the trace.
Stop ReplaySession::advance(ReplayTask& t) {
  if (auto stop = std::exchange(t.aheadStop, std::nullopt)) return *stop;
  if (std::exchange(t.runningAhead, false)) return awaitStop(t);
  if (t.park == ReplayTask::Park::Initial) {
    if (auto death = advanceInitial(t)) return *death;
  }
  beginRun(t);
  return awaitStop(t);
}

void ReplaySession::beginRun(ReplayTask& t) {
  using Park = ReplayTask::Park;
  if (t.park == Park::SkipPending) {
    skipSyscall(t);
    resumeUserCode(t, 0);
  } else if (t.park == Park::Resumable) {
    resumeDeliveringPending(t);
  } else if (t.park == Park::Seccomp) {
    resumeUserCode(t, 0);
  }
  t.lastExecutedNumber = -1;
  t.park = Park::Resumable;
}

Stop ReplaySession::awaitStop(ReplayTask& t) {
  for (;;) {
    Stop stop = t.task.wait();
    if (observerClaims(t, stop)) {
      resumeUserCode(t, 0);
      continue;
    }
    switch (stop.kind) {
      case StopKind::GroupStop:
        resumeUserCode(t, 0);
        continue;
      case StopKind::Seccomp:
        if (compatPassthrough(t)) {  // exit by int 0x80: no event, as when recorded
          t.task.resume(Task::Resume::Cont);
          continue;
        }
        return stop;
      case StopKind::Signal: {
        siginfo_t info = t.task.siginfo();
        if (stop.signal == t.awaitingSignal || isSynchronousFault(stop.signal, info)) return stop;
        resumeUserCode(t, 0);
        continue;
      }
      default:
        return stop;
    }
  }
}

void ReplaySession::resumeUserCode(ReplayTask& t, int signal) {
  ReplayObserver::Run how = ReplayObserver::Run::Continue;
  if (observer_) how = observer_->resuming(t.recordedTid, t.task);
  for (auto& breakpoint : pointBreakpoints_)
    if (!breakpoint->arm())
      throw RecError(kExitUnsupported,
                     fmt::format("rec: event #{}: the replay enters this point through a debug "
                                 "register, and the debugger holds all four (delete a hardware "
                                 "breakpoint or watchpoint)",
                                 eventIndex_));
  t.task.resume(how == ReplayObserver::Run::SingleStep ? Task::Resume::Step : Task::Resume::Cont,
                signal);
}

bool ReplaySession::observerClaims(ReplayTask& t, const Stop& stop) {
  return observer_ && observer_->stopped(t.recordedTid, t.task, stop);
}

}  // namespace rec
