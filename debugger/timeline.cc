#include "timeline.h"

#include <elf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "errors.h"
#include "exit_codes.h"
#include "gdb_protocol.h"
#include "predecessors.h"

namespace rec::dbg {

namespace {

// REC_DEBUG_TIMELINE=1: what the timeline does, on stderr (for rec's developers).
bool tracing() {
  static const bool on = std::getenv("REC_DEBUG_TIMELINE") != nullptr;
  return on;
}

format::BlobHash hashOf(capnp::Data::Reader d) {
  return format::BlobHash::fromBytes(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(d.begin()), d.size()));
}

// Whether the task sits at a syscall's entry, where resuming it with a
// single step first reports the syscall's end without executing anything.
bool atSyscallEntry(Task& task) {
  __ptrace_syscall_info info{};
  long n = ::ptrace(static_cast<__ptrace_request>(PTRACE_GET_SYSCALL_INFO), task.tid(),
                    reinterpret_cast<void*>(sizeof info), &info);
  return n > 0 && (info.op == PTRACE_SYSCALL_INFO_SECCOMP || info.op == PTRACE_SYSCALL_INFO_ENTRY);
}

// The auxiliary vector in a recorded initial stack image: after argc, argv,
// NULL, envp, NULL.
std::string auxvFromStack(capnp::Data::Reader image) {
  size_t words = image.size() / 8;
  auto word = [&](size_t i) {
    uint64_t v;
    std::memcpy(&v, image.begin() + 8 * i, 8);
    return v;
  };
  if (words == 0) return {};
  size_t i = 1 + word(0) + 1;  // argc, argv..., NULL
  while (i < words && word(i) != 0) ++i;
  ++i;  // envp NULL
  size_t start = i;
  while (i + 1 < words && word(i) != AT_NULL) i += 2;
  i += 2;
  if (i > words) return {};
  return std::string(reinterpret_cast<const char*>(image.begin()) + 8 * start, 8 * (i - start));
}

}  // namespace

Moment Moment::then(const Segment& segment) const {
  Moment m = *this;
  if (segment.kind == Segment::Kind::Step && !m.path.empty() &&
      m.path.back().kind == Segment::Kind::Step) {
    m.path.back().count += segment.count;
    return m;
  }
  if (segment.count == 0) return m;
  m.path.push_back(segment);
  return m;
}

std::string describe(const Moment& moment) {
  std::string out = fmt::format("event {}", moment.event);
  for (const auto& s : moment.path) {
    if (s.kind == Segment::Kind::Step) {
      out += fmt::format(", then {} instruction(s)", s.count);
      continue;
    }
    out += fmt::format(", then {} stop(s) at {} breakpoint(s)/{} watchpoint(s)", s.count,
                       s.traps.breakpoints.size(), s.traps.watches.size());
    if (tracing()) {
      out += " [";
      for (uint64_t b : s.traps.breakpoints) out += fmt::format(" {:#x}", b);
      out += " ]";
    }
  }
  return out;
}

Timeline::Timeline(TimelineOptions options, StopHandler& handler)
    : options_(std::move(options)), handler_(handler) {
  indexReader_ = format::TraceReader::open(options_.tracePath);
  index_ = std::make_unique<TraceIndex>(*indexReader_);
  debuggee_ = options_.debuggee ? options_.debuggee : index_->initialPid();
  if (!index_->process(debuggee_)) {
    std::string pids;
    for (const auto& [pid, p] : index_->processes())
      pids += (pids.empty() ? "" : ", ") + std::to_string(pid);
    throw RecError(
        kExitUsage,
        fmt::format("rec: the recording has no process {} (its processes: {})", debuggee_, pids));
  }
  checkpoints_ = std::make_unique<CheckpointStore>(
      ReplayOptions{options_.tracePath, options_.force, false}, options_.checkpoints);
}

Timeline::~Timeline() = default;

// ---------------------------------------------------------------------------
// Driving

int Timeline::run() {
  StopInfo info;
  Moment start = startMoment(info);
  std::optional<Request> next;
  for (;;) {
    try {
      if (next)
        execute(*next);
      else
        gotoMoment(start, info);
      // Only a Quit request ends the loop (thrown as Navigate).
    } catch (const Navigate& n) {
      if (n.request.kind == Request::Kind::Quit) break;
      next = n.request;
    }
  }
  session_.reset();
  return 0;
}

Moment Timeline::startMoment(StopInfo& info) {
  const ProcessInfo& p = *index_->process(debuggee_);
  info = StopInfo{StopInfo::Why::Start};
  switch (options_.start) {
    case TimelineOptions::Start::AtEvent:
      return Moment{std::min(options_.startEvent, index_->eventCount())};
    case TimelineOptions::Start::AtEnd:
      // Just before the event that ends the debugged process: a crash shows
      // as its signal.
      if (p.exited) {
        if (p.lastSignal && *p.lastSignal + 1 == *p.exited) {
          info.why = StopInfo::Why::Signal;
          info.signo = p.lastSigno;
        }
        return Moment{*p.exited};
      }
      return Moment{index_->eventCount()};
    case TimelineOptions::Start::AtFork:
      return Moment{p.created + 1};
    case TimelineOptions::Start::Beginning:
    default:
      // At the first instruction of its (first) program.
      if (!p.execs.empty()) return Moment{p.execs.front() + 1};
      return Moment{p.created + 1};
  }
}

void Timeline::newSession(uint64_t event, Mode mode) {
  session_.reset();  // its processes first: fewer at a time
  arming_.reset();
  runs_.clear();
  session_ = checkpoints_->restore(event);
  session_->setObserver(this);
  session_->echoOutputFrom(mode == Mode::Scan ? UINT64_MAX : echoFrom_);
  mode_ = mode;
  now_ = Moment{session_->nextEventIndex()};
  atSegmentStart_ = false;
  arrivalHandled_ = false;
  lastStateObserved_ = false;
  firstResumeOfEvent_ = true;
  runningTid_ = 0;
  exited_ = false;
  sinceCheckpoint_ = std::chrono::steady_clock::now();
}

// Between two events: keeps a copy of the replay here when the last one is
// `interval` of replay time behind, so that going back later replays at
// most that much (forward runs and reverse scans alike leave them).
void Timeline::maybeCheckpoint() {
  const CheckpointPolicy& policy = checkpoints_->policy();
  if (!policy.enabled) return;
  auto now = std::chrono::steady_clock::now();
  if (now - sinceCheckpoint_ < policy.interval) return;
  // Not possible at every boundary (a task inside a real blocking
  // syscall): then at the next one.
  if (checkpoints_->add(*session_)) sinceCheckpoint_ = std::chrono::steady_clock::now();
}

// Replays until the session's end; every stop on the way goes through the
// observer callbacks (and gdb). Returns only by throwing Navigate.
void Timeline::driveToEnd() {
  for (;;) {
    while (session_->step()) maybeCheckpoint();
    if (mode_ == Mode::Scan) throw ScanDone{};
    StopInfo info;
    if (mode_ == Mode::Goto) {
      // A target past the end (a jump to an event beyond the last).
      info = targetInfo_;
    } else if (!session_->trace().complete()) {
      info.why = StopInfo::Why::HistoryEnd;
    } else {
      info.why = StopInfo::Why::Exited;
      info.waitStatus = index_->process(debuggee_)->waitStatus;
    }
    now_ = Moment{session_->nextEventIndex()};
    if (info.why != StopInfo::Why::Exited || !exited_) {
      exited_ = exited_ || info.why == StopInfo::Why::Exited;
      reportAndApply(info, now_);
    } else {
      reportAndApply(StopInfo{StopInfo::Why::HistoryEnd}, now_);
    }
  }
}

void Timeline::gotoMoment(const Moment& target, const StopInfo& info) {
  if (tracing()) fmt::print(stderr, "timeline: go to {}\n", describe(target));
  newSession(target.event, Mode::Goto);
  target_ = target;
  targetInfo_ = info;
  followIndex_ = followProgress_ = followCombined_ = 0;
  if (session_->nextEventIndex() == target.event && target.path.empty()) {
    // Already there (a checkpoint at that very boundary, or the start).
    if (target.event == 0) session_->step();  // the exec: there is no program before it
    mode_ = Mode::Free;
    now_ = Moment{session_->nextEventIndex()};
    reportAndApply(info, now_);
  }
  driveToEnd();
}

void Timeline::execute(Request request) {
  Moment here = now_;
  switch (request.kind) {
    case Request::Kind::GotoEvent:
      gotoMoment(Moment{std::max<uint64_t>(1, std::min(request.event, index_->eventCount()))},
                 StopInfo{StopInfo::Why::Start});
      return;
    case Request::Kind::GotoCheckpoint:
      gotoMoment(userCheckpoints_.at(request.checkpoint), StopInfo{StopInfo::Why::Start});
      return;
    case Request::Kind::ReverseContinue: {
      StopInfo info;
      Moment target = reverseContinueTarget(here, info);
      gotoMoment(target, info);
      return;
    }
    case Request::Kind::ReverseStep: {
      auto before = predecessor(here, request.tid);
      if (!before) {
        gotoMoment(Moment{1}, StopInfo{StopInfo::Why::HistoryStart});
        return;
      }
      StopInfo info{StopInfo::Why::Step};
      info.tid = request.tid;
      gotoMoment(*before, info);
      return;
    }
    default:
      throw RecError(kExitInternal, "rec: internal: a forward request reached execute()");
  }
}

// At a stop: asks gdb what next, and either sets the replay going forward
// again (returning into it) or throws Navigate to move elsewhere in time.
void Timeline::reportAndApply(const StopInfo& given, const Moment& here) {
  StopInfo info = given;
  if (info.tid == 0 || !threadAlive(info.tid)) {
    auto peek = session_->peekEvent();
    int next = peek ? peek->getTid() : 0;
    auto live = threads();
    info.tid = (next && isDebuggee(next) && threadAlive(next)) ? next
               : live.empty()                                  ? debuggee_
                                                               : live.front();
  }
  now_ = here;
  Request request = handler_.stopped(info);
  apply(request, here);
}

void Timeline::apply(const Request& request, const Moment& here) {
  now_ = here;
  switch (request.kind) {
    case Request::Kind::Continue:
    case Request::Kind::Step:
      mode_ = Mode::Forward;
      stepTid_ = request.kind == Request::Kind::Step ? request.tid : 0;
      if (stepTid_) runs_[stepTid_].stepPending = true;
      running_ = Segment{Segment::Kind::Run, gdbTraps(), 0};
      // Mid-run, the rest of this event's run is the stepped thread's or
      // not; at a boundary it is decided when the next run starts.
      segmentKindSet_ = runningTid_ != 0;
      if (stepTid_ && stepTid_ == runningTid_) running_.kind = Segment::Kind::Step;
      atSegmentStart_ = true;
      arrivalHandled_ = true;
      session_->echoOutputFrom(echoFrom_);
      return;
    default:
      throw Navigate{request};
  }
}

// ---------------------------------------------------------------------------
// For the gdb server, while stopped

std::vector<int> Timeline::threads() {
  std::vector<int> out;
  if (!session_ || exited_) return out;
  for (const auto& t : session_->liveTasks())
    if (isDebuggee(t.recordedTid)) out.push_back(t.recordedTid);
  return out;
}

bool Timeline::threadAlive(int tid) {
  if (!session_ || exited_ || !isDebuggee(tid)) return false;
  for (const auto& t : session_->liveTasks())
    if (t.recordedTid == tid) return true;
  return false;
}

std::optional<gdb::RegisterFile> Timeline::registers(int tid) {
  if (!threadAlive(tid)) return std::nullopt;
  Task* task = session_->inspect(tid);
  if (!task) return std::nullopt;
  return gdb::readRegisterFile(*task, session_->visibleRegisters(tid));
}

size_t Timeline::readMemory(uint64_t address, uint8_t* out, size_t length) {
  auto live = threads();
  if (live.empty()) return 0;
  Task* task = session_->inspect(live.front());
  if (!task) return 0;
  size_t n = task->read(address, out, length);
  // What the program's code really holds where traps or a patch sit now
  // (only while a stop is reported from inside a run).
  for (auto [at, original] : arming_.inserted())
    if (at >= address && at < address + n) out[at - address] = original;
  if (const auto& patch = session_->activePatch()) {
    for (size_t i = 0; i < patch->original.size(); ++i) {
      uint64_t at = patch->ip + i;
      if (at >= address && at < address + n) out[at - address] = patch->original[i];
    }
  }
  return n;
}

bool Timeline::insertBreakpoint(uint64_t address, bool hardware) {
  if (hardware) {
    int used = 0;
    for (const auto& [w, n] : watches_) used += debugRegistersFor(w);
    used += static_cast<int>(hardBreakpoints_.size());
    if (!hardBreakpoints_.count(address) && used >= kDebugRegisters) return false;
    hardBreakpoints_[address]++;
  } else {
    softBreakpoints_[address]++;
  }
  return true;
}

void Timeline::removeBreakpoint(uint64_t address, bool hardware) {
  auto& set = hardware ? hardBreakpoints_ : softBreakpoints_;
  auto it = set.find(address);
  if (it != set.end() && --it->second <= 0) set.erase(it);
}

bool Timeline::insertWatch(const Watch& watch) {
  if (watch.length == 0) return false;
  int used = static_cast<int>(hardBreakpoints_.size());
  for (const auto& [w, n] : watches_) used += debugRegistersFor(w);
  if (!watches_.count(watch) && used + debugRegistersFor(watch) > kDebugRegisters) return false;
  watches_[watch]++;
  return true;
}

void Timeline::removeWatch(const Watch& watch) {
  auto it = watches_.find(watch);
  if (it != watches_.end() && --it->second <= 0) watches_.erase(it);
}

std::string Timeline::procPath(const std::string& path) {
  // /proc/<pid>[/task/<tid>]/rest
  auto parts = gdb::split(path, '/');
  if (!session_ || parts.size() < 3) return path;
  auto real = [&](std::string_view id) -> std::string {
    for (const auto& t : session_->liveTasks())
      if (std::to_string(t.recordedTid) == id) return std::to_string(t.tid);
    return std::string(id);
  };
  std::string out;
  for (size_t i = 1; i < parts.size(); ++i) {
    bool isId = (i == 2 && parts[1] == "proc") || (i == 4 && parts[3] == "task");
    out += "/" + (isId ? real(parts[i]) : std::string(parts[i]));
  }
  return out;
}

std::string Timeline::localFileFor(const std::string& recordedPath) {
  auto it = recordedFiles_.find(recordedPath);
  if (it == recordedFiles_.end()) return {};
  if (!files_) {
    blobCache_ = BlobCache::fromEnvironment();
    files_ = std::make_unique<BlobFiles>(*indexReader_, *blobCache_);
  }
  return files_->path(it->second, recordedPath);
}

int Timeline::addCheckpoint() {
  int id = nextCheckpointId_++;
  userCheckpoints_[id] = now_;
  // Make going back there cheap: a copy of the replay at its boundary.
  if (session_ && now_.atBoundary() && session_->nextEventIndex() == now_.event)
    checkpoints_->add(*session_);
  return id;
}

std::string Timeline::describeCheckpoints() const {
  std::string out;
  for (const auto& [id, moment] : userCheckpoints_)
    out += fmt::format("{} {}\n", id, describe(moment));
  return out.empty() ? "No checkpoints.\n" : out;
}

// ---------------------------------------------------------------------------
// Observer

bool Timeline::isDebuggee(int tid) const {
  return index_->processOf(tid) == debuggee_;
}

std::set<uint64_t> Timeline::hardwareBreakpoints() const {
  std::set<uint64_t> out;
  for (const auto& [address, n] : hardBreakpoints_) out.insert(address);
  return out;
}

TrapSet Timeline::gdbTraps() const {
  TrapSet t;
  for (const auto& [address, n] : softBreakpoints_) t.breakpoints.insert(address);
  for (const auto& [address, n] : hardBreakpoints_) t.breakpoints.insert(address);
  for (const auto& [watch, n] : watches_) t.watches.insert(watch);
  return t;
}

bool Timeline::followingHere() const {
  return (mode_ == Mode::Goto || mode_ == Mode::Scan) && now_.event == target_.event &&
         followIndex_ < target_.path.size();
}

const Segment* Timeline::followSegment() const {
  return followingHere() ? &target_.path[followIndex_] : nullptr;
}

TrapSet Timeline::armedTraps() const {
  switch (mode_) {
    case Mode::Forward:
      return running_.traps;
    case Mode::Goto:
      if (const Segment* s = followSegment(); s && s->kind == Segment::Kind::Run) return s->traps;
      return {};
    case Mode::Scan: {
      TrapSet t = now_.event >= scan_.fromEvent ? scan_.traps : TrapSet{};
      if (const Segment* s = followSegment(); s && s->kind == Segment::Kind::Run) t = t | s->traps;
      return t;
    }
    default:
      return {};
  }
}

Moment Timeline::currentMoment() const {
  switch (mode_) {
    case Mode::Forward:
      return now_.then(running_);
    case Mode::Goto:
    case Mode::Scan: {
      if (now_.event != target_.event) {
        if (mode_ == Mode::Scan && followCombined_ > 0)
          return Moment{now_.event}.then(Segment{Segment::Kind::Run, scan_.traps, followCombined_});
        return Moment{now_.event};
      }
      Moment m{now_.event};
      for (size_t i = 0; i < followIndex_ && i < target_.path.size(); ++i)
        m = m.then(target_.path[i]);
      if (const Segment* s = followSegment()) {
        if (s->kind == Segment::Kind::Step)
          m = m.then(Segment{Segment::Kind::Step, {}, followProgress_});
        else if (mode_ == Mode::Scan)
          m = m.then(Segment{Segment::Kind::Run, s->traps | scan_.traps, followCombined_});
        else
          m = m.then(Segment{Segment::Kind::Run, s->traps, followProgress_});
      }
      return m;
    }
    default:
      return now_;
  }
}

ReplayObserver::Run Timeline::resuming(int tid, Task& task) {
  bool first = firstResumeOfEvent_;
  firstResumeOfEvent_ = false;
  runningTid_ = tid;
  if (!isDebuggee(tid)) return Run::Continue;
  TaskRun& r = runs_[tid];
  if (mode_ == Mode::Free) {
    arming_.arm(task, {}, std::nullopt, session_->activePatch());  // clears old debug registers
    return Run::Continue;
  }
  if (first && mode_ == Mode::Forward && !segmentKindSet_) {
    running_.kind = stepTid_ == tid && r.stepPending ? Segment::Kind::Step : Segment::Kind::Run;
    segmentKindSet_ = true;
  }
  uint64_t ip = task.regs().ip();

  // A step whose instruction was a syscall is done now that the syscall is.
  if (r.stepCrossedSyscall) {
    r.stepCrossedSyscall = false;
    newState(tid, ip, {}, true, 0, first);
  } else if (!arrivalHandled_ && armedTraps().breakpoints.count(ip)) {
    // The run starts on a breakpoint (after a syscall, or where an earlier
    // run was interrupted): that is an arrival there.
    newState(tid, ip, {}, false, 0, first);
  }
  if (mode_ == Mode::Free || !isDebuggee(tid)) {
    arming_.arm(task, {}, std::nullopt, session_->activePatch());
    return Run::Continue;
  }
  TrapSet armed = armedTraps();
  bool overBreakpoint = armed.breakpoints.count(ip) != 0;
  bool wantStep = false;
  if (mode_ == Mode::Forward) {
    wantStep = stepTid_ == tid && r.stepPending;
  } else if (const Segment* s = followSegment(); s && s->kind == Segment::Kind::Step) {
    wantStep = true;
  }
  if (mode_ == Mode::Scan && now_.event >= scan_.fromEvent) {
    if (!steppingAll_ && scan_.stepFrom && now_.event == target_.event &&
        observations_.size() >= *scan_.stepFrom) {
      steppingAll_ = true;
      stepBase_ = !observations_.empty() && observations_.back().moment.event == now_.event
                      ? observations_.back().moment
                      : Moment{now_.event};
      stepsSinceBase_ = 0;
    }
    if (steppingAll_) wantStep = true;
    if (scan_.stepAfterArrival && lastStateObserved_) wantStep = true;
  }
  if (r.keepStepping) {
    // Stepping through the replay's trampoline: the step asked for is
    // still the one in progress.
    r.keepStepping = false;
    arming_.arm(task, armed, std::nullopt, session_->activePatch(), hardwareBreakpoints());
    r.stepRequested = true;
    r.expectSyscallReport = false;
    return Run::SingleStep;
  }
  if (!wantStep) lastStateObserved_ = false;
  arming_.arm(task, armed, overBreakpoint ? std::optional<uint64_t>(ip) : std::nullopt,
              session_->activePatch(), hardwareBreakpoints());
  r.stepRequested = overBreakpoint || wantStep;
  r.modeStep = wantStep;
  r.resumeIp = ip;
  r.resumeFlags = task.regs().raw().eflags;
  r.expectSyscallReport = r.stepRequested && atSyscallEntry(task);
  return r.stepRequested ? Run::SingleStep : Run::Continue;
}

bool Timeline::stopped(int tid, Task& task, const Stop& stop) {
  if (!isDebuggee(tid) || mode_ == Mode::Free) return false;
  TaskRun& r = runs_[tid];
  arming_.disarm(task);
  bool stepping = r.stepRequested;
  r.stepRequested = false;
  if (stepping) undoStepFlagInR11(r, task);
  TrapHit hit = arming_.classify(task, stop, stepping);
  if (!hit.ours) {
    // The run ended (a syscall, a signal, an exit) or the replay's own stop.
    // A step of a syscall instruction completes once the syscall has.
    if (stepping && r.modeStep && stop.kind == StopKind::Seccomp) r.stepCrossedSyscall = true;
    r.expectSyscallReport = false;
    atSegmentStart_ = false;
    arrivalHandled_ = false;
    lastStateObserved_ = false;
    return false;
  }
  if (hit.stepped && r.expectSyscallReport && hit.watches.empty() &&
      task.regs().ip() == r.resumeIp) {
    // The syscall it sat in ended; no instruction ran yet: step again.
    r.expectSyscallReport = false;
    return true;
  }
  r.expectSyscallReport = false;
  atSegmentStart_ = false;
  arrivalHandled_ = false;
  uint64_t ip = task.regs().ip();
  const auto& patch = session_->activePatch();
  if (patch && ip >= patch->page && ip < patch->page + kTrampolineSize && ip != patch->trapIp) {
    // Inside the replay's own trampoline (stepping through a patched
    // point): not program code; keep stepping until back in the program.
    if (hit.stepped) r.keepStepping = true;
    return true;
  }
  newState(tid, ip, hit.watches, hit.stepped && r.modeStep, hit.watchAddress, false);
  return true;
}

// A single-stepped `syscall` instruction saves rflags in r11 with the trap
// flag the step set: the program would see a value it did not have when
// recorded (and the replay's register checks would fail). Put back the
// program's own flag.
void Timeline::undoStepFlagInR11(TaskRun& r, Task& task) {
  constexpr uint64_t kTrapFlag = 0x100;
  if (r.resumeFlags & kTrapFlag) return;  // the program's own single-stepping
  user_regs_struct& regs = task.mutableRegs().raw();
  if (regs.rip != r.resumeIp + 2 || !(regs.r11 & kTrapFlag)) return;
  uint8_t insn[2] = {};
  if (task.read(r.resumeIp, insn, sizeof insn) != sizeof insn || insn[0] != 0x0f || insn[1] != 0x05)
    return;
  regs.r11 &= ~kTrapFlag;
}

// The running task `tid` reached a new state at `ip`: an arrival there, after
// an instruction that accessed `watches`, and/or the end of a step the mode
// asked for. Decides what the mode makes of it: a stop for gdb, progress
// along a path, an observation of a scan.
void Timeline::newState(int tid, uint64_t ip, const std::vector<Watch>& watches, bool stepDone,
                        uint64_t watchAddress, bool atRunStart) {
  arrivalHandled_ = true;
  auto trapOf = [&](const TrapSet& set) {
    if (set.breakpoints.count(ip)) return true;
    for (const Watch& w : watches)
      if (set.watches.count(w)) return true;
    return false;
  };
  auto infoFor = [&](const TrapSet& set) {
    StopInfo info{StopInfo::Why::Step};
    info.tid = tid;
    for (const Watch& w : watches) {
      if (!set.watches.count(w)) continue;
      info.why = StopInfo::Why::Watchpoint;
      info.watch = w;
      info.watchAddress = watchAddress ? watchAddress : w.address;
      return info;
    }
    if (set.breakpoints.count(ip)) {
      info.why = StopInfo::Why::Breakpoint;
      info.hardware = hardBreakpoints_.count(ip) != 0;
    }
    return info;
  };
  switch (mode_) {
    case Mode::Forward: {
      bool trap = trapOf(running_.traps);
      StopInfo info = infoFor(running_.traps);
      TaskRun& r = runs_[tid];
      bool gdbStep = stepDone && stepTid_ == tid && r.stepPending;
      if (!trap && !gdbStep) return;
      if (gdbStep) r.stepPending = false;
      // A stop where the run starts is the boundary itself: no count.
      if (!atRunStart) {
        if (running_.kind == Segment::Kind::Step)
          running_.count = 1;
        else
          running_.count++;
      }
      Moment here = now_.then(running_);
      mode_ = Mode::Free;
      reportAndApply(info, here);
      return;
    }
    case Mode::Goto:
    case Mode::Scan: {
      bool scanning = mode_ == Mode::Scan && now_.event >= scan_.fromEvent;
      bool recordable = scanning && trapOf(scan_.traps);
      const Segment* seg = followSegment();
      // The state where a run starts is the boundary: never counted, and
      // observed as the boundary moment itself.
      bool counts = !atRunStart && !atSegmentStart_ && seg &&
                    (seg->kind == Segment::Kind::Step ? stepDone : trapOf(seg->traps));
      if (!atRunStart &&
          (seg ? seg->kind == Segment::Kind::Run && (counts || recordable) : recordable))
        followCombined_++;
      if (counts) followProgress_++;
      if (stepDone && mode_ == Mode::Scan && ++stepsTaken_ > kStepBudget)
        throw RecError(kExitInternal,
                       "rec: going back one instruction needed more single steps than allowed");
      bool stepObserved = scanning && steppingAll_;
      bool reachesEnd =
          seg && counts && followProgress_ >= seg->count && followIndex_ + 1 >= target_.path.size();
      if (recordable || (stepObserved && stepDone) || (reachesEnd && mode_ == Mode::Scan)) {
        Observation o;
        o.moment = atRunStart ? Moment{now_.event}
                   : stepObserved
                       ? stepBase_.then(Segment{Segment::Kind::Step, {}, ++stepsSinceBase_})
                       : currentMoment();
        o.info = infoFor(scan_.traps);
        o.ip = ip;
        o.rightAfterPrevious = stepDone && lastStateObserved_;
        o.isEnd = reachesEnd;
        observations_.push_back(std::move(o));
        lastStateObserved_ = true;
      } else {
        lastStateObserved_ = false;
      }
      if (seg && counts && followProgress_ >= seg->count) {
        followIndex_++;
        followProgress_ = 0;
        followCombined_ = 0;
        atSegmentStart_ = true;
        if (followIndex_ >= target_.path.size()) {
          if (mode_ == Mode::Scan) {
            scanReachedEnd_ = true;
            throw ScanDone{};
          }
          mode_ = Mode::Free;
          StopInfo reached = targetInfo_;
          if (!reached.tid) reached.tid = tid;
          reportAndApply(reached, target_);
        }
      }
      return;
    }
    default:
      return;
  }
}

void Timeline::eventDone(uint64_t index, schema::Event::Reader event) {
  now_ = Moment{index + 1};
  running_.count = 0;
  segmentKindSet_ = false;
  runningTid_ = 0;
  atSegmentStart_ = false;
  arrivalHandled_ = false;
  firstResumeOfEvent_ = true;
  followCombined_ = 0;
  if (mode_ != Mode::Scan) echoFrom_ = std::max(echoFrom_, index + 1);
  noteMappings(event);
  int tid = event.getTid();
  bool debuggee = isDebuggee(tid);
  if (event.isExec()) noteExec(tid, event.getExec());
  if (event.isSyscall() && event.getSyscall().getNewTask()) {
    // A new process runs its parent's program until it execs one.
    int child = event.getSyscall().getNewTask();
    if (index_->processOf(child) == child && programs_.count(index_->processOf(tid)))
      programs_[child] = programs_[index_->processOf(tid)];
  }

  // Following a path that should have ended inside this event: it is lost.
  if ((mode_ == Mode::Goto || mode_ == Mode::Scan) && index == target_.event &&
      !target_.path.empty())
    throw RecError(kExitInternal,
                   fmt::format("rec: internal: lost the way to {}", describe(target_)));

  StopInfo stop;
  stop.tid = tid;
  bool stops = false;
  if (debuggee) {
    switch (event.which()) {
      case schema::Event::SIGNAL:
        if (!passSignals_.count(event.getSignal().getSigno())) {
          stop.why = StopInfo::Why::Signal;
          stop.signo = event.getSignal().getSigno();
          stops = true;
        }
        break;
      case schema::Event::SYSCALL: {
        auto s = event.getSyscall();
        if (s.getBuffered()) break;  // the shim wrote it in user code: the hardware saw it
        TrapSet traps = mode_ == Mode::Forward ? running_.traps
                        : mode_ == Mode::Scan  ? scan_.traps
                                               : TrapSet{};
        for (auto w : s.getWrites()) {
          for (const Watch& watch : traps.watches) {
            if (watch.kind == WatchKind::Read ||
                !watch.overlaps(w.getAddress(), w.getData().size()))
              continue;
            stop.why = StopInfo::Why::Watchpoint;
            stop.watch = watch;
            stop.watchAddress = std::max(watch.address, w.getAddress());
            stops = true;
          }
        }
        break;
      }
      case schema::Event::EXIT: {
        const ProcessInfo* p = index_->process(debuggee_);
        if (p->exited && *p->exited == index) {
          stop.why = StopInfo::Why::Exited;
          stop.waitStatus = p->waitStatus;
          stops = true;
          exited_ = true;
        }
        break;
      }
      case schema::Event::EXEC:
        if (index != index_->process(debuggee_)->execs.front() || mode_ != Mode::Forward) {
          stop.why = StopInfo::Why::Exec;
          stops = index > 0;
        }
        break;
      default:
        break;
    }
  }

  if (mode_ == Mode::Forward && !stops && handler_.interruptRequested()) {
    stop = StopInfo{StopInfo::Why::Interrupted};
    stops = true;
  }
  switch (mode_) {
    case Mode::Forward:
      if (stops) {
        mode_ = Mode::Free;
        reportAndApply(stop, now_);
      }
      break;
    case Mode::Goto:
      nearTargetCheckpoint(index + 1);
      if (index + 1 == target_.event) {
        followIndex_ = followProgress_ = followCombined_ = 0;
        atSegmentStart_ = true;
        if (target_.path.empty()) {
          mode_ = Mode::Free;
          reportAndApply(targetInfo_, now_);
        }
      }
      break;
    case Mode::Scan:
      nearTargetCheckpoint(index + 1);
      if (stops && scan_.boundaryStops && index + 1 >= scan_.fromEvent &&
          stop.why != StopInfo::Why::Exited && stop.why != StopInfo::Why::Exec) {
        Observation o;
        o.moment = Moment{index + 1};
        o.info = stop;
        if (event.isSyscall()) o.syscallIp = event.getSyscall().getIp();
        o.isEnd = index + 1 == target_.event && target_.path.empty();
        observations_.push_back(std::move(o));
      }
      if (index + 1 == target_.event) {
        followIndex_ = followProgress_ = followCombined_ = 0;
        atSegmentStart_ = true;
        if (target_.path.empty()) {
          scanReachedEnd_ = true;
          throw ScanDone{};
        }
      }
      break;
    default:
      break;
  }
}

// Going (or scanning) to a moment: the boundaries of its event and of the
// one before get checkpoints, so that the next steps back or forward from
// there (gdb's reverse-step and reverse-next ask many, some across the
// syscall before) replay one or two events, not all since the last
// periodic checkpoint.
void Timeline::nearTargetCheckpoint(uint64_t boundary) {
  if (!checkpoints_->policy().enabled || boundary > target_.event || boundary + 1 < target_.event)
    return;
  if (boundary == target_.event && target_.path.empty()) return;  // the stop is the boundary
  checkpoints_->add(*session_);
}

void Timeline::noteExec(int tid, schema::ExecEvent::Reader e) {
  ProgramInfo& p = programs_[index_->processOf(tid)];
  p.path = e.getFilename();
  for (auto m : e.getMappings())
    if (m.getBlobHash() == e.getExeBlob()) p.path = m.getPath();
  p.auxv = auxvFromStack(e.getStackImage());
}

std::string Timeline::execPath() const {
  auto it = programs_.find(debuggee_);
  return it == programs_.end() ? std::string() : it->second.path;
}

std::string Timeline::auxv() const {
  auto it = programs_.find(debuggee_);
  return it == programs_.end() ? std::string() : it->second.auxv;
}

void Timeline::noteMappings(schema::Event::Reader event) {
  auto remember = [&](schema::Mapping::Reader m) {
    if (m.getBlobHash().size() == 16 && m.hasPath())
      recordedFiles_.emplace(m.getPath().cStr(), hashOf(m.getBlobHash()));
  };
  if (event.isExec()) {
    for (auto m : event.getExec().getMappings()) remember(m);
  } else if (event.isSyscall() && event.getSyscall().hasMapping()) {
    remember(event.getSyscall().getMapping());
  }
}

// ---------------------------------------------------------------------------
// Reverse execution

std::vector<Timeline::Observation> Timeline::scan(const ScanSpec& spec) {
  newSession(spec.fromEvent, Mode::Scan);
  scan_ = spec;
  target_ = spec.end;
  targetInfo_ = StopInfo{};
  followIndex_ = followProgress_ = followCombined_ = 0;
  observations_.clear();
  stepsTaken_ = 0;
  scanReachedEnd_ = false;
  steppingAll_ = false;
  try {
    if (session_->nextEventIndex() == spec.end.event && spec.end.path.empty()) {
      scanReachedEnd_ = true;
      throw ScanDone{};
    }
    if (session_->nextEventIndex() == spec.end.event) atSegmentStart_ = true;
    driveToEnd();
  } catch (const ScanDone&) {
  }
  std::vector<Observation> out = std::move(observations_);
  observations_.clear();
  if (tracing()) {
    fmt::print(stderr, "timeline: scan from {} to {}: {} observation(s){}\n", spec.fromEvent,
               describe(spec.end), out.size(), scanReachedEnd_ ? "" : " (end not reached)");
    for (const auto& o : out)
      fmt::print(stderr, "timeline:   {} ip {:#x} tid {}{}\n", describe(o.moment), o.ip, o.info.tid,
                 o.rightAfterPrevious ? " (one step after the previous)" : "");
  }
  // The session stays (its code is read to find predecessors) until the next.
  mode_ = Mode::Free;
  return out;
}

// The moment reverse-continue stops at: the last stop (gdb's breakpoints,
// watchpoints, signals) before `from`, scanning back one checkpoint
// interval at a time. A watchpoint or signal stop is then moved to the
// state before the instruction (or syscall) that triggered it, as gdb
// expects when executing backwards.
uint64_t Timeline::scanStart(const Moment& end) const {
  uint64_t limit = end.path.empty() ? (end.event ? end.event - 1 : 0) : end.event;
  return checkpoints_->latest(limit);
}

Moment Timeline::reverseContinueTarget(const Moment& from, StopInfo& info) {
  TrapSet traps = gdbTraps();
  Moment end = from;
  for (;;) {
    ScanSpec spec;
    spec.fromEvent = scanStart(end);
    spec.end = end;
    spec.traps = traps;
    spec.boundaryStops = true;
    auto seen = scan(spec);
    // Standing right after an access to a watched range (where a forward
    // watchpoint stop leaves gdb), going back crosses that access first.
    if (end == from && !seen.empty() && seen.back().isEnd &&
        seen.back().info.why == StopInfo::Why::Watchpoint) {
      Observation here = seen.back();
      if (auto before = predecessorOf(here, here.info.tid)) {
        info = here.info;
        return *before;
      }
    }
    // The last observation strictly before `end` (scans stop at `end`).
    while (!seen.empty() && seen.back().isEnd) seen.pop_back();
    if (!seen.empty()) {
      Observation last = seen.back();
      info = last.info;
      if (info.why == StopInfo::Why::Watchpoint) {
        // Backwards, a watchpoint stops before the instruction that wrote.
        if (auto before = predecessorOf(last, info.tid)) return *before;
      }
      return last.moment;
    }
    if (spec.fromEvent <= 1) {
      info = StopInfo{StopInfo::Why::HistoryStart};
      return Moment{1};
    }
    end = Moment{spec.fromEvent};
  }
}

// The state before an observed one: for a boundary (a syscall that wrote a
// watched range), the arrival at the syscall instruction; in a run, see
// predecessorInRun.
std::optional<Moment> Timeline::predecessorOf(const Observation& o, int tid) {
  if (!o.moment.path.empty())
    return predecessorInRun(o.moment, o.ip, tid, candidatesAt(tid, o.ip, std::nullopt));
  if (o.syscallIp) {
    TrapSet traps;
    traps.breakpoints.insert(o.syscallIp - 2);
    return lastArrival(traps, o.moment, tid, o.syscallIp - 2);
  }
  return std::nullopt;
}

std::set<uint64_t> Timeline::candidatesAt(int tid, uint64_t ip,
                                          std::optional<uint64_t> returnAddress) {
  Task* task = session_ ? session_->inspect(tid) : nullptr;
  if (!task) {
    for (int other : threads())
      if ((task = session_ ? session_->inspect(other) : nullptr)) break;
  }
  if (!task) return {};
  return analyzer_.predecessorCandidates(*task, ip, returnAddress);
}

// The last arrival of `tid` at `address` before `end`, looking back one
// checkpoint interval at a time.
std::optional<Moment> Timeline::lastArrival(const TrapSet& traps, const Moment& end, int tid,
                                            uint64_t address) {
  Moment until = end;
  for (;;) {
    ScanSpec spec;
    spec.fromEvent = scanStart(until);
    spec.end = until;
    spec.traps = traps;
    auto seen = scan(spec);
    for (auto it = seen.rbegin(); it != seen.rend(); ++it) {
      if (it->info.tid != tid || it->ip != address || it->isEnd) continue;
      return it->moment;
    }
    if (spec.fromEvent <= 1) return std::nullopt;
    until = Moment{spec.fromEvent};
  }
}

// The state right before `of` in the replay of thread `tid`.
std::optional<Moment> Timeline::predecessor(const Moment& of, int tid) {
  Task* task = session_ ? session_->inspect(tid) : nullptr;
  if (!task) return std::nullopt;
  Registers regs = session_->visibleRegisters(tid);
  uint64_t ip = regs.ip();
  uint64_t top = 0;
  task->read(regs.sp(), &top, sizeof top);
  auto candidates = analyzer_.predecessorCandidates(*task, ip, top);
  if (!of.path.empty() && runningTid_ == tid) return predecessorInRun(of, ip, tid, candidates);

  // The thread is parked: its last run ended with the instruction before
  // its ip (a syscall, an emulated rdtsc), or at its ip (a fault, a point
  // where the replay stopped it), not executed.
  auto before = analyzer_.instructionBefore(*task, ip);
  TrapSet traps;
  traps.breakpoints.insert(ip);
  if (before) traps.breakpoints.insert(*before);
  Moment until = of;
  for (;;) {
    ScanSpec spec;
    spec.fromEvent = scanStart(until);
    spec.end = until;
    spec.traps = traps;
    auto seen = scan(spec);
    for (auto it = seen.rbegin(); it != seen.rend(); ++it) {
      if (it->info.tid != tid || it->isEnd) continue;
      if (before && it->ip == *before) return it->moment;
      if (it->moment.path.empty()) return std::nullopt;  // only its start: nothing before here
      return predecessorInRun(it->moment, ip, tid, candidates);
    }
    if (spec.fromEvent <= 1) return std::nullopt;
    until = Moment{spec.fromEvent};
  }
}

// The state before `target` (a state of `tid` at `targetIp` inside a run):
// replays to it with breakpoints at the candidates, stepping once from each
// arrival there; if the step right before `target` came from one, that
// arrival is the answer. Else single-steps from the last arrival seen
// before it (or from the start of the run) and takes the state before.
std::optional<Moment> Timeline::predecessorInRun(const Moment& target, uint64_t targetIp, int tid,
                                                 const std::set<uint64_t>& candidates) {
  ScanSpec spec;
  spec.fromEvent = scanStart(target);
  spec.end = target;
  spec.traps.breakpoints = candidates;
  spec.traps.breakpoints.insert(targetIp);
  spec.stepAfterArrival = true;
  auto seen = scan(spec);
  if (!scanReachedEnd_ || seen.empty() || !seen.back().isEnd) return std::nullopt;
  size_t n = seen.size();
  if (n >= 2 && seen[n - 1].rightAfterPrevious && seen[n - 2].info.tid == tid)
    return seen[n - 2].moment;
  // Step from the last observation in the target's event before it.
  size_t base = 0;
  for (size_t i = n - 1; i-- > 0;) {
    if (seen[i].moment.event == target.event && seen[i].info.tid == tid) {
      base = i + 1;
      break;
    }
    if (seen[i].moment.event < target.event) {
      base = i + 1;
      break;
    }
  }
  spec.stepAfterArrival = false;
  spec.stepFrom = base;
  seen = scan(spec);
  if (!scanReachedEnd_ || seen.size() < 2 || !seen.back().isEnd) return std::nullopt;
  const Observation& previous = seen[seen.size() - 2];
  if (previous.moment.event != target.event) return std::nullopt;
  return previous.moment;
}

}  // namespace rec::dbg
