#include "record_session.h"

#include <elf.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <cstring>

#include <fmt/format.h>

#include "code_patch.h"
#include "cpu_info.h"
#include "errors.h"
#include "exit_codes.h"
#include "process_maps.h"
#include "remote_syscall.h"
#include "signals.h"
#include "seccomp_filter.h"
#include "spawn.h"
#include "syscall_table.h"

extern char** environ;

namespace rec {

volatile sig_atomic_t gRecordStopRequested = 0;
volatile sig_atomic_t gRecordTimeoutExpired = 0;

namespace {

using Clock = std::chrono::steady_clock;
// A task that keeps making non-blocking syscalls yields to others after this long.
constexpr auto kTimeslice = std::chrono::milliseconds(20);
// Chaos: how often a syscall becomes a switch point.
constexpr double kChaosSwitchProbability = 0.3;

// The scheduler's clock: a tick aimed at the recording thread only (the trace
// writer's thread must not see it), which interrupts its waitpid so it can
// preempt a task that has run its whole timeslice and enforce --timeout.
constexpr auto kTick = std::chrono::milliseconds(5);
void onTick(int) {}

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
    if (::timer_create(CLOCK_MONOTONIC, &ev, &timer_) != 0) return;
    itimerspec spec{};
    spec.it_interval.tv_nsec = std::chrono::nanoseconds(kTick).count();
    spec.it_value = spec.it_interval;
    active_ = ::timer_settime(timer_, 0, &spec, nullptr) == 0;
  }
  ~TickTimer() {
    if (active_) ::timer_delete(timer_);
  }

 private:
  timer_t timer_{};
  bool active_ = false;
};

int64_t nowRealtimeNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::string readLink(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
  if (n < 0) return "";
  return std::string(buf, static_cast<size_t>(n));
}


capnp::Data::Reader asData(const void* p, size_t n) {
  return capnp::Data::Reader(static_cast<const capnp::byte*>(p), n);
}

template <typename T>
capnp::Data::Reader asData(const T& value) {
  return asData(&value, sizeof value);
}

}  // namespace

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
  const sys::SyscallRow* row = nullptr;
  std::vector<std::string> strings;
  bool enterAnnounced = true;
  pid_t newTask = 0;
  bool execSeen = false;

  // Registers as the last syscall returned: a signal delivered with these
  // registers was delivered as that syscall returned.
  Registers exitRegs;
  bool justExited = false;

  std::deque<siginfo_t> heldSignals;   // async signals to deliver at the next syscall
  std::map<int, siginfo_t> injected;   // raised by rec, awaiting their delivery stop
  std::shared_ptr<OutputFds> fds;
  Clock::time_point sliceStart;

  // vfork: the parent's syscall returns once the child has exec'd or exited;
  // its event is written after the child's, so replay runs them in that order.
  bool exitWritten = false;
  bool interruptRequested = false;  // PTRACE_INTERRUPT sent for a preemption
  pid_t formerTid = 0;               // exec'd from a non-leader thread: its id before
  bool stepTrapPending = false;
  std::deque<uint64_t> resumeIps;    // where it resumed after recent points (see patchableHere)
  std::set<uint64_t> jumpTargets;    // jumped-to code seen while choosing a point      // single-stepped into a syscall: a stray SIGTRAP may follow
  std::optional<int> execVictimStatus;  // ended by a sibling's execve; exit written after it
  RecordTask* vforkParent = nullptr;
  RecordTask* vforkChild = nullptr;
  bool vforkReturnPending = false;
};

RecordSession::RecordSession(RecordOptions options) : options_(std::move(options)) {}
RecordSession::~RecordSession() = default;

void RecordSession::writeHeader(const std::string& executable) {
  capnp::MallocMessageBuilder msg;
  auto h = msg.initRoot<schema::Header>();
  h.setRecVersion(REC_VERSION);
  auto argv = h.initArgv(static_cast<unsigned>(options_.command.size()));
  for (unsigned i = 0; i < options_.command.size(); ++i) argv.set(i, options_.command[i]);
  std::vector<std::string> env;
  bool haveOpensslCap = false;
  for (char** e = environ; *e; ++e) {
    env.emplace_back(*e);
    if (env.back().starts_with("OPENSSL_ia32cap=")) haveOpensslCap = true;
  }
  // RDRAND/RDSEED cannot be trapped; OpenSSL's opt-out keeps it off them.
  if (!haveOpensslCap) env.emplace_back("OPENSSL_ia32cap=~0x4000000000000000:~0x40000");
  auto envp = h.initEnvp(static_cast<unsigned>(env.size()));
  for (unsigned i = 0; i < env.size(); ++i) envp.set(i, env[i]);
  char cwd[4096];
  h.setCwd(::getcwd(cwd, sizeof cwd) ? cwd : "");
  h.setExecutable(executable);
  h.setStartTimeNs(nowRealtimeNs());
  utsname u;
  if (::uname(&u) == 0) {
    h.setKernelRelease(u.release);
    h.setHostname(u.nodename);
  }
  CpuDescription cpu = describeThisCpu();
  auto c = h.initCpu();
  c.setVendor(cpu.vendor);
  c.setModelName(cpu.modelName);
  c.setFamily(cpu.family);
  c.setModel(cpu.model);
  c.setStepping(cpu.stepping);
  c.setXsaveFeatures(cpu.xcr0);
  auto leaves = c.initCpuidLeaves(static_cast<unsigned>(cpu.leaves.size()));
  for (unsigned i = 0; i < cpu.leaves.size(); ++i) {
    const auto& a = cpu.leaves[i];
    auto l = leaves[i];
    l.setLeaf(a.leaf);
    l.setSubleaf(a.subleaf);
    l.setEax(a.eax);
    l.setEbx(a.ebx);
    l.setEcx(a.ecx);
    l.setEdx(a.edx);
  }
  h.setPageSize(static_cast<uint32_t>(::sysconf(_SC_PAGESIZE)));
  h.setTracedSyscalls(asData(tracedBitmap_.data(), tracedBitmap_.size()));
  // The stack limit decides where mmap places things: replay must use it too.
  rlimit stack;
  ::getrlimit(RLIMIT_STACK, &stack);
  auto limits = h.initRlimits(1);
  limits[0].setResource(RLIMIT_STACK);
  limits[0].setSoft(stack.rlim_cur);
  limits[0].setHard(stack.rlim_max);
  h.setScratchAddress(kScratchAddress);
  h.setChaosSeed(chaosSeed_);
  env_ = std::move(env);
  writer_ = format::TraceWriter::create(options_.tracePath, msg);
}

int RecordSession::run() {
  std::string executable = resolveProgram(options_.command.at(0));
  timeslice_ = kTimeslice;
  if (options_.chaos.enabled) {
    chaosSeed_ = options_.chaos.seed ? options_.chaos.seed : std::random_device{}() | 1;
    chaosRandom_.seed(chaosSeed_);
    pretendedCpus_ = std::uniform_int_distribution<int>(1, 8)(chaosRandom_);
  }
  tracedBitmap_ = tracedSyscallBitmap();
  // The trace writer's compression thread starts here, before rec pins
  // itself, so zstd runs on another CPU than the program.
  writeHeader(executable);
  int cpu = pinToCpu(-1);
  blobs_ = std::make_unique<BlobStore>(*writer_);

  SpawnOptions spawn;
  spawn.path = executable;
  spawn.argv = options_.command;
  spawn.envp = env_;
  spawn.cpu = cpu;
  spawn.tracedSyscalls = tracedBitmap_;
  spawn.untracedSyscallIp = kScratchUntracedIp;
  spawn.stdoutFd = options_.stdoutFd;
  spawn.stderrFd = options_.stderrFd;
  gRecordTimeoutExpired = 0;
  if (options_.timeout.count() > 0) deadline_ = Clock::now() + options_.timeout;
  TickTimer tick;
  pid_t pid = spawnTraced(spawn);
  initialTid_ = pid;
  auto& t = taskFor(pid);
  t.announcedByParent = true;
  t.sawInitialStop = true;
  t.fds = OutputFds::initial();
  t.state = TaskState::Running;
  current_ = &t;

  loop();

  capnp::MallocMessageBuilder footer;
  auto f = footer.initRoot<schema::Footer>();
  f.setEndTimeNs(nowRealtimeNs());
  f.setExitStatus(initialStatus_);
  f.setTaskCount(static_cast<uint32_t>(tasks_.size()));
  f.setSignalCount(signalCount_);
  f.setInterruptedByUser(interrupted_ && !timedOut_);
  f.setTimedOut(timedOut_);
  writer_->finish(footer);
  return initialStatus_;
}

RecordSession::RecordTask& RecordSession::taskFor(pid_t tid) {
  auto it = tasks_.find(tid);
  if (it != tasks_.end()) return *it->second;
  // A new child can report its first stop before its parent's fork event.
  auto t = std::make_unique<RecordTask>(tid, tid);
  auto& ref = *t;
  tasks_[tid] = std::move(t);
  return ref;
}

void RecordSession::loop() {
  for (;;) {
    bool anyAlive = std::any_of(tasks_.begin(), tasks_.end(),
                                [](const auto& kv) { return kv.second->state != TaskState::Dead; });
    if (!anyAlive) return;
    if (deadline_ && Clock::now() >= *deadline_) gRecordTimeoutExpired = 1;
    if ((gRecordStopRequested || gRecordTimeoutExpired) && !interrupted_) {
      // rec itself was asked to stop, or the program ran out of time: end
      // the program, keep the trace.
      interrupted_ = true;
      timedOut_ = gRecordTimeoutExpired && !gRecordStopRequested;
      for (auto& [tid, t] : tasks_)
        if (t->state != TaskState::Dead) ::kill(tid, SIGKILL);
    }
    scheduleIfIdle();
    maybePreempt();
    int status = 0;
    pid_t tid = ::waitpid(-1, &status, __WALL);
    if (tid < 0) {
      if (errno == EINTR) continue;
      if (errno == ECHILD) return;
      throwErrno(kExitInternal, "waitpid");
    }
    RecordTask& t = taskFor(tid);
    t.task.noteStopped();
    handleStop(t, decodeStop(status));
  }
}

void RecordSession::scheduleIfIdle() {
  while (!current_ && !readyQueue_.empty()) {
    size_t pick = 0;
    if (options_.chaos.enabled) {
      // Chaos: any runnable task may go next, for a random timeslice.
      pick = std::uniform_int_distribution<size_t>(0, readyQueue_.size() - 1)(chaosRandom_);
      timeslice_ = std::chrono::microseconds(
          std::uniform_int_distribution<int>(100, 50'000)(chaosRandom_));
    }
    pid_t tid = readyQueue_[pick];
    readyQueue_.erase(readyQueue_.begin() + static_cast<long>(pick));
    auto it = tasks_.find(tid);
    if (it == tasks_.end()) continue;
    RecordTask& t = *it->second;
    t.queued = false;
    if (t.state != TaskState::Ready) continue;
    resumeCurrent(t, Task::Resume::Cont, std::exchange(t.resumeSignal, 0));
  }
}

void RecordSession::makeReady(RecordTask& t, int signal) {
  t.state = TaskState::Ready;
  t.resumeSignal = signal;
  if (current_ == &t) current_ = nullptr;
  if (!t.queued) {
    readyQueue_.push_back(t.task.tid());
    t.queued = true;
  }
}

void RecordSession::resumeCurrent(RecordTask& t, Task::Resume how, int signal) {
  if (current_ != &t) t.sliceStart = Clock::now();
  current_ = &t;
  t.state = how == Task::Resume::Syscall ? TaskState::InSyscall : TaskState::Running;
  t.task.resume(how, signal);
}

void RecordSession::emit(RecordTask& t, capnp::MallocMessageBuilder& msg, pid_t tidOverride) {
  // Tasks that entered a blocking syscall and let others run are announced
  // in the order they entered, so replay runs each one's user code up to its
  // syscall in the recorded order. A task's own completed syscall implies
  // its entry when no one else entered one meanwhile.
  bool others = std::any_of(unannounced_.begin(), unannounced_.end(),
                            [&](RecordTask* u) { return u != &t; });
  if (others) {
    for (RecordTask* u : unannounced_) {
      capnp::MallocMessageBuilder enter;
      auto e = enter.initRoot<schema::Event>();
      e.setTid(u->task.tid());
      e.initSyscallEnter().setNumber(u->nr);
      writer_->writeEvent(enter);
      u->enterAnnounced = true;
    }
  }
  for (RecordTask* u : unannounced_) u->enterAnnounced = true;
  unannounced_.clear();
  msg.getRoot<schema::Event>().setTid(tidOverride ? tidOverride : t.task.tid());
  writer_->writeEvent(msg);
}

void RecordSession::absorbStrays(RecordTask& t, StraySignals& strays) {
  for (const auto& info : strays) t.heldSignals.push_back(info);
  strays.clear();
}

void RecordSession::handleStop(RecordTask& t, const Stop& stop) {
  if (stop.kind == StopKind::Exited) {
    onExited(t, stop.status);
    return;
  }
  if (stop.kind == StopKind::GroupStop && t.interruptRequested && stop.signal == SIGTRAP) {
    onInterrupted(t);
    return;
  }
  if (stop.kind == StopKind::GroupStop) {
    if (!t.sawInitialStop) {
      t.sawInitialStop = true;
      if (t.announcedByParent) makeReady(t);
      return;
    }
    // A real group-stop (SIGSTOP and friends): let the task go on; job
    // control of recorded programs is not reproduced.
    if (current_ == &t) resumeCurrent(t);
    else makeReady(t);
    return;
  }
  if (stop.kind != StopKind::Signal) t.justExited = false;
  switch (stop.kind) {
    case StopKind::Seccomp: onSeccomp(t); break;
    case StopKind::SyscallStop: onSyscallExit(t); break;
    case StopKind::Signal: onSignal(t, stop.signal); break;
    case StopKind::Exec: onExec(t); break;
    case StopKind::Fork: onFork(t, stop); break;
    case StopKind::VforkDone: t.task.resume(Task::Resume::Syscall); break;
    case StopKind::ExitEvent: onExitEvent(t); break;
    default: break;
  }
}

void RecordSession::onSeccomp(RecordTask& t) {
  if (!t.heldSignals.empty()) {
    injectHeldSignal(t);
    return;
  }
  const Registers& regs = t.task.regs();
  t.nr = regs.syscallNumber();
  t.args = regs.syscallArgs();
  t.row = sys::findSyscall(t.nr);
  t.strings.clear();
  t.newTask = 0;
  t.execSeen = false;

  if (!t.row || t.row->support == sys::Support::Refused) {
    // Programs fall back when a syscall is missing: that is what rec offers
    // for mechanisms it cannot record faithfully.
    refuse(t, ENOSYS);
    return;
  }
  if (movesDataToOutput(t)) {
    // The kernel would copy file data straight to the terminal/output file,
    // past the program's memory, where replay could not show it. EINVAL
    // makes programs (cat, cp) fall back to read/write.
    refuse(t, EINVAL);
    return;
  }
  for (int index : sys::stringArgs(*t.row)) t.strings.push_back(t.task.readCString(t.args[index]));
  resumeCurrent(t, Task::Resume::Syscall);
  // A blocking syscall lets other tasks run meanwhile. fork-like calls stay
  // current until their fork event, which names the child first.
  if (t.row->mayBlock() && t.row->hook != sys::Hook::Clone) {
    t.enterAnnounced = false;
    unannounced_.push_back(&t);
    current_ = nullptr;
  }
}

bool RecordSession::movesDataToOutput(RecordTask& t) {
  long outFd;
  switch (t.nr) {
    case SYS_sendfile: outFd = static_cast<long>(t.args[0]); break;
    case SYS_copy_file_range:
    case SYS_splice: outFd = static_cast<long>(t.args[2]); break;
    case SYS_tee: outFd = static_cast<long>(t.args[1]); break;
    default: return false;
  }
  return t.fds && t.fds->originOf(outFd) != 0;
}

void RecordSession::refuse(RecordTask& t, int error) {
  Registers& r = t.task.mutableRegs();
  r.setSyscallNumber(-1);
  r.setResult(-error);
  capnp::MallocMessageBuilder msg;
  auto s = msg.initRoot<schema::Event>().initSyscall();
  s.setNumber(t.nr);
  auto args = s.initArgs(6);
  for (unsigned i = 0; i < 6; ++i) args.set(i, t.args[i]);
  s.setResult(-error);
  s.setRefused(true);
  s.setIp(r.ip());
  emit(t, msg);
  t.exitRegs = r;
  t.justExited = true;
  if (options_.verbose)
    fmt::print(stderr, "rec: refused {} with {}\n", t.row ? t.row->name : "an unknown syscall",
               sys::errnoName(error));
  t.nr = -1;
  resumeCurrent(t);
}

void RecordSession::finishSyscallEvent(RecordTask& t, capnp::MallocMessageBuilder& msg) {
  const Registers& regs = t.task.regs();
  int64_t result = regs.result();
  auto s = msg.initRoot<schema::Event>().initSyscall();
  s.setNumber(t.nr);
  auto args = s.initArgs(6);
  for (unsigned i = 0; i < 6; ++i) args.set(i, t.args[i]);
  s.setResult(result);
  s.setIp(regs.ip());
  s.setInterrupted(result >= -516 && result <= -512);
  auto strings = s.initStrings(static_cast<unsigned>(t.strings.size()));
  for (unsigned i = 0; i < t.strings.size(); ++i) strings.set(i, t.strings[i]);

  pretendCpuCount(t, result);
  std::vector<sys::MemRange> ranges = sys::outputRanges(*t.row, t.args, result, t.task);
  uint64_t shmSize = 0;
  if (t.row->hook == sys::Hook::ShmAt && result >= 0) {
    // The segment's contents as attached: replay recreates it from them.
    for (const auto& m : readMaps(t.task.tid()))
      if (m.start == static_cast<uint64_t>(result)) shmSize = m.end - m.start;
    if (shmSize) ranges.push_back({static_cast<uint64_t>(result), shmSize});
  }
  std::vector<std::vector<std::byte>> contents;
  for (auto& r : ranges) {
    contents.push_back(t.task.readBytes(r.addr, r.len));
    r.len = contents.back().size();
  }
  auto writes = s.initWrites(static_cast<unsigned>(ranges.size()));
  for (unsigned i = 0; i < ranges.size(); ++i) {
    writes[i].setAddress(ranges[i].addr);
    writes[i].setData(asData(contents[i].data(), contents[i].size()));
  }
  if (result < 0 && result > -4096) return;

  OutputFds& fds = *t.fds;
  if (t.row->flags & sys::kReturnsFd) fds.close(result);
  switch (t.row->hook) {
    case sys::Hook::Write:
      if (result > 0) s.setOutputFd(fds.originOf(static_cast<long>(t.args[0])));
      break;
    case sys::Hook::Dup:
      if (t.nr == SYS_dup) fds.duplicate(static_cast<long>(t.args[0]), result);
      else fds.duplicate(static_cast<long>(t.args[0]), static_cast<long>(t.args[1]));
      break;
    case sys::Hook::Fcntl:
      if (t.args[1] == F_DUPFD || t.args[1] == F_DUPFD_CLOEXEC)
        fds.duplicate(static_cast<long>(t.args[0]), result);
      break;
    case sys::Hook::Close:
      if (t.nr == SYS_close) fds.close(static_cast<long>(t.args[0]));
      else fds.closeRange(t.args[0], t.args[1]);
      break;
    case sys::Hook::Clone:
      s.setNewTask(t.newTask);
      break;
    case sys::Hook::ShmAt: {
      auto m = s.initMapping();
      m.setStart(static_cast<uint64_t>(result));
      m.setEnd(static_cast<uint64_t>(result) + shmSize);
      m.setProt((t.args[2] & SHM_RDONLY) ? PROT_READ : PROT_READ | PROT_WRITE);
      m.setFlags(MAP_SHARED);
      m.setPath(fmt::format("SYSV shmid {}", static_cast<long>(t.args[0])));
      break;
    }
    case sys::Hook::Mmap: {
      int flags = static_cast<int>(t.args[3]);
      int fd = static_cast<int>(t.args[4]);
      if ((flags & MAP_ANONYMOUS) || fd < 0) break;
      std::string fdPath = fmt::format("/proc/{}/fd/{}", t.task.tid(), fd);
      std::string path = readLink(fdPath);
      auto m = s.initMapping();
      m.setStart(static_cast<uint64_t>(result));
      m.setEnd(static_cast<uint64_t>(result) + t.args[1]);
      m.setProt(static_cast<uint32_t>(t.args[2]));
      m.setFlags(static_cast<uint32_t>(flags));
      m.setOffset(t.args[5]);
      m.setPath(path);
      if (path == "/dev/zero") break;  // behaves like anonymous memory
      format::BlobHash hash = blobs_->storePath(fdPath, path);
      auto bytes = hash.bytes();
      m.setBlobHash(asData(bytes.data(), bytes.size()));
      break;
    }
    default:
      break;
  }
  if (t.nr == SYS_pipe || t.nr == SYS_pipe2 || t.nr == SYS_socketpair) {
    int pair[2];
    uint64_t where = t.nr == SYS_socketpair ? t.args[3] : t.args[0];
    if (t.task.read(where, pair, sizeof pair) == sizeof pair) {
      fds.close(pair[0]);
      fds.close(pair[1]);
    }
  }
}

void RecordSession::releaseVforkParent(RecordTask& child) {
  RecordTask* parent = child.vforkParent;
  if (!parent) return;
  child.vforkParent = nullptr;
  parent->vforkChild = nullptr;
  if (parent->vforkReturnPending) {
    parent->vforkReturnPending = false;
    onSyscallExit(*parent);
  }
}

void RecordSession::onSyscallExit(RecordTask& t) {
  if (t.vforkChild) {
    t.vforkReturnPending = true;
    return;
  }
  if (t.execSeen) {
    completeExec(t);
  } else if (t.nr >= 0 && t.row) {
    capnp::MallocMessageBuilder msg;
    finishSyscallEvent(t, msg);
    emit(t, msg);
    t.exitRegs = t.task.regs();
    t.justExited = true;
  }
  bool yield = shouldSwitchAfterSyscall(t);
  t.nr = -1;
  if (current_ == &t) {
    if (yield && !readyQueue_.empty()) makeReady(t);
    else resumeCurrent(t);
  } else if (!current_) {
    resumeCurrent(t);
  } else {
    makeReady(t);
  }
}

// A task that has run user code for a whole timeslice while another task
// could run is interrupted; onInterrupted switches away from it.
void RecordSession::maybePreempt() {
  RecordTask* t = current_;
  if (!t || t->state != TaskState::Running || t->interruptRequested || readyQueue_.empty()) return;
  if (Clock::now() - t->sliceStart < timeslice_) return;
  if (::ptrace(PTRACE_INTERRUPT, t->task.tid(), nullptr, nullptr) == 0) t->interruptRequested = true;
}

void RecordSession::onInterrupted(RecordTask& t) {
  t.interruptRequested = false;
  if (current_ != &t || t.state != TaskState::Running) {
    // It stopped elsewhere first (a syscall); the interrupt came after.
    if (current_ == &t) resumeCurrent(t);
    else makeReady(t);
    return;
  }
  if (t.justExited && t.task.regs().ip() == t.exitRegs.ip() && t.task.regs().sp() == t.exitRegs.sp()) {
    // Right at a syscall's return: a switch there needs no event, replay
    // parks the task after that syscall anyway.
    t.justExited = false;
    makeReady(t);
    return;
  }
  t.justExited = false;
  std::vector<MemoryCheck> memory;
  std::optional<Stop> other = choosePoint(t, memory);
  if (other) {
    // A syscall or a signal came first: carry on with that stop normally.
    handleStop(t, *other);
    return;
  }
  capnp::MallocMessageBuilder msg;
  auto p = msg.initRoot<schema::Event>().initPreempt();
  setPoint(p.initRegisters(), p.initMemory(static_cast<unsigned>(memory.size())), t, memory);
  emit(t, msg);
  rememberResumeIp(t);
  ++preemptions_;
  makeReady(t);
}

// Chooses where the task stops for a preemption or a signal: an instruction
// where replay can plant its conditional breakpoint (tracee/code_patch.h),
// identified by every register plus the memory words the surrounding code
// writes, so that the iterations of a loop whose registers never change
// (a counter in memory, a spin on a flag) are still told apart. It
// single-steps through one round of the loop to learn those words. Returns
// the stop that interrupted the stepping (a syscall, a signal), or nullopt
// once the task stands at the chosen point.
std::optional<Stop> RecordSession::choosePoint(RecordTask& t, std::vector<MemoryCheck>& memory) {
  constexpr int kMaxSteps = 256;
  std::set<uint64_t> visited, written;
  bool loopClosed = false;
  uint64_t fallthrough = 0;
  t.jumpTargets.clear();
  for (int step = 0;; ++step) {
    const user_regs_struct& regs = t.task.regs().raw();
    uint64_t ip = regs.rip;
    uint8_t code[kCodeWindow] = {};
    size_t n = t.task.read(ip, code, sizeof code);
    std::span<const uint8_t> window(code, n);
    // Code reached by a jump must not fall inside a patch (see patchableHere).
    if (step > 0 && ip != fallthrough) t.jumpTargets.insert(ip);
    fallthrough = ip + instructionLength(window, ip);
    if (!visited.insert(ip).second) loopClosed = true;
    if ((loopClosed || step >= kMaxSteps) && patchableHere(t, window, ip)) break;
    if (step >= 4 * kMaxSteps)
      throw RecError(kExitInternal, fmt::format("no patchable instruction near {:#x}", ip));
    for (uint64_t address : memoryWrittenBy(window, ip, regs)) written.insert(address);
    if (::ptrace(PTRACE_SINGLESTEP, t.task.tid(), nullptr, nullptr) != 0)
      throwErrno(kExitInternal, "PTRACE_SINGLESTEP");
    Stop stop = t.task.wait();
    if (stop.kind == StopKind::Signal && stop.signal == SIGTRAP && t.task.siginfo().si_code == TRAP_TRACE)
      continue;
    // Stepped into a syscall (or a signal): the kernel may still report the
    // step as a SIGTRAP when that syscall returns; it is rec's, not the program's.
    t.stepTrapPending = true;
    return stop;
  }
  memory.clear();
  for (uint64_t address : written) {
    MemoryCheck check{address, 0};
    if (t.task.read(address, &check.value, sizeof check.value) == sizeof check.value)
      memory.push_back(check);
    if (memory.size() == 8) break;
  }
  return std::nullopt;
}

// Replay overwrites [ip, ip + length) with a jump while it runs the task to
// the point. The task must not resume inside that range: not where it stands
// now, nor where a signal handler it is in will return to.
bool RecordSession::patchableHere(RecordTask& t, std::span<const uint8_t> window, uint64_t ip) {
  auto length = patchableLength(window, ip);
  if (!length) return false;
  for (uint64_t avoid : t.resumeIps)
    if (avoid > ip && avoid < ip + *length) return false;
  auto target = t.jumpTargets.upper_bound(ip);
  return target == t.jumpTargets.end() || *target >= ip + *length;
}

void RecordSession::rememberResumeIp(RecordTask& t) {
  constexpr size_t kKept = 16;
  t.resumeIps.push_back(t.task.regs().ip());
  if (t.resumeIps.size() > kKept) t.resumeIps.pop_front();
}

void RecordSession::setPoint(schema::Registers::Builder regs, capnp::List<schema::MemWrite>::Builder out,
                             RecordTask& t, const std::vector<MemoryCheck>& memory) {
  regs.setRaw(asData(t.task.regs().raw()));
  for (unsigned i = 0; i < memory.size(); ++i) {
    out[i].setAddress(memory[i].address);
    out[i].setData(asData(memory[i].value));
  }
}

bool RecordSession::shouldSwitchAfterSyscall(RecordTask& t) {
  if (t.nr == SYS_sched_yield || Clock::now() - t.sliceStart > timeslice_) return true;
  return options_.chaos.enabled &&
         std::bernoulli_distribution(kChaosSwitchProbability)(chaosRandom_);
}

// Chaos: programs size thread pools and work splits by the CPUs they may
// use; pretending another count shakes out other schedules. The pretended
// mask is what gets recorded, so replay sees it too.
void RecordSession::pretendCpuCount(RecordTask& t, int64_t result) {
  if (!pretendedCpus_ || t.nr != SYS_sched_getaffinity || result <= 0) return;
  std::vector<uint8_t> mask(static_cast<size_t>(result), 0);
  for (int cpu = 0; cpu < pretendedCpus_ && cpu / 8 < result; ++cpu)
    mask[cpu / 8] |= static_cast<uint8_t>(1u << (cpu % 8));
  t.task.write(t.args[2], mask.data(), mask.size());
}

bool RecordSession::emulateRdtsc(RecordTask& t) {
  Registers& r = t.task.mutableRegs();
  unsigned char insn[3] = {};
  t.task.read(r.ip(), insn, sizeof insn);
  bool rdtsc = insn[0] == 0x0f && insn[1] == 0x31;
  bool rdtscp = insn[0] == 0x0f && insn[1] == 0x01 && insn[2] == 0xf9;
  if (!rdtsc && !rdtscp) return false;
  unsigned aux = 0;
  uint64_t value = rdtscp ? __rdtscp(&aux) : __rdtsc();
  capnp::MallocMessageBuilder msg;
  auto e = msg.initRoot<schema::Event>().initRdtsc();
  e.setValue(value);
  e.setAux(aux);
  e.setIsRdtscp(rdtscp);
  e.setIp(r.ip());
  r.raw().rax = value & 0xffffffff;
  r.raw().rdx = value >> 32;
  if (rdtscp) r.raw().rcx = aux;
  r.setIp(r.ip() + (rdtscp ? 3 : 2));
  emit(t, msg);
  resumeCurrent(t);
  return true;
}

void RecordSession::onSignal(RecordTask& t, int signo) {
  siginfo_t info = t.task.siginfo();
  const Registers& regs = t.task.regs();
  bool atExit = t.justExited && regs.ip() == t.exitRegs.ip() && regs.sp() == t.exitRegs.sp() &&
                regs.result() == t.exitRegs.result();
  t.justExited = false;

  if (signo == SIGTRAP && t.stepTrapPending && (info.si_code == TRAP_TRACE || info.si_code == TRAP_BRKPT)) {
    t.stepTrapPending = false;
    resumeCurrent(t);
    return;
  }
  if (signo == SIGSEGV && info.si_code == SI_KERNEL) {
    if (emulateRdtsc(t)) return;
  }
  auto signalEvent = [&](schema::SignalDisposition disposition, const siginfo_t& si, bool sync) {
    capnp::MallocMessageBuilder msg;
    auto s = msg.initRoot<schema::Event>().initSignal();
    s.setSigno(signo);
    s.setSiginfo(asData(si));
    s.setDisposition(disposition);
    s.setIp(regs.ip());
    s.setSynchronous(sync);
    emit(t, msg);
    ++signalCount_;
  };

  auto injected = t.injected.find(signo);
  if (injected != t.injected.end()) {
    siginfo_t original = injected->second;
    t.injected.erase(injected);
    t.task.setSiginfo(original);
    signalEvent(schema::SignalDisposition::DELIVERED, original, false);
    resumeCurrent(t, Task::Resume::Cont, signo);
    return;
  }
  if (isSynchronousFault(signo, info)) {
    signalEvent(schema::SignalDisposition::DELIVERED, info, true);
    resumeCurrent(t, Task::Resume::Cont, signo);
    return;
  }
  if (atExit) {
    // It interrupted (or arrived during) the syscall that just returned:
    // deliver it right here, as the kernel would.
    signalEvent(schema::SignalDisposition::INJECT_AT_SYSCALL_EXIT, info, false);
    resumeCurrent(t, Task::Resume::Cont, signo);
    return;
  }
  // Arrived while the task ran user code: deliver it at a point replay can
  // find again without a branch counter (rip and every register; see
  // tracee/code_patch.h), a few instructions on if need be.
  std::vector<MemoryCheck> memory;
  std::optional<Stop> other = choosePoint(t, memory);
  if (other) {
    // The task reached a syscall (or another signal) first: deliver this one
    // just before that syscall instead, as replay will.
    t.heldSignals.push_back(info);
    handleStop(t, *other);
    return;
  }
  capnp::MallocMessageBuilder msg;
  auto s = msg.initRoot<schema::Event>().initSignal();
  s.setSigno(signo);
  s.setSiginfo(asData(info));
  s.setDisposition(schema::SignalDisposition::AT_POINT);
  s.setIp(t.task.regs().ip());
  setPoint(s.initRegisters(), s.initMemory(static_cast<unsigned>(memory.size())), t, memory);
  emit(t, msg);
  rememberResumeIp(t);
  ++signalCount_;
  t.task.setSiginfo(info);
  resumeCurrent(t, Task::Resume::Cont, signo);
}

void RecordSession::injectHeldSignal(RecordTask& t) {
  siginfo_t info = t.heldSignals.front();
  t.heldSignals.pop_front();
  int signo = info.si_signo;
  int nr = t.task.regs().syscallNumber();
  capnp::MallocMessageBuilder msg;
  auto s = msg.initRoot<schema::Event>().initSignal();
  s.setSigno(signo);
  s.setSiginfo(asData(info));
  s.setDisposition(schema::SignalDisposition::INJECT_BEFORE_SYSCALL);
  s.setIp(t.task.regs().ip());
  emit(t, msg);
  ++signalCount_;

  // Undo the syscall entry: the signal is raised with the task back at its
  // syscall instruction, which it re-executes after the handler.
  StraySignals strays;
  skipToSyscallExit(t.task, 0, strays);
  Registers& r = t.task.mutableRegs();
  r.setIp(r.ip() - 2);
  r.setResult(nr);
  r.setSyscallNumber(-1);
  absorbStrays(t, strays);
  t.injected[signo] = info;
  resumeCurrent(t, Task::Resume::Cont, signo);
}

// A sibling of `t` is in execve: the kernel is ending the other threads.
bool RecordSession::siblingExecing(const RecordTask& t) const {
  return std::any_of(tasks_.begin(), tasks_.end(), [&](const auto& kv) {
    const RecordTask& o = *kv.second;
    return &o != &t && o.task.tgid() == t.task.tgid() && o.state == TaskState::InSyscall &&
           (o.nr == SYS_execve || o.nr == SYS_execveat);
  });
}

void RecordSession::forget(RecordTask& t) {
  if (current_ == &t) current_ = nullptr;
  std::erase(unannounced_, &t);
  std::erase(readyQueue_, t.task.tid());
}

void RecordSession::onExec(RecordTask& t) {
  pid_t former = static_cast<pid_t>(t.task.eventMessage());
  RecordTask* execer = &t;
  if (former != t.task.tid() && tasks_.count(former)) {
    // A thread other than the leader exec'd: it now has the leader's id and
    // the old leader is gone without a death report. Its slot goes to the
    // exec'ing thread; the Exec event names the thread by its former id so
    // replay finds it.
    pid_t leader = t.task.tid();
    forget(t);
    auto moved = std::move(tasks_[former]);
    tasks_.erase(former);
    forget(*moved);
    tasks_[leader] = std::move(moved);
    execer = tasks_[leader].get();
    execer->task.setTid(leader);
    execer->formerTid = former;
    execer->state = TaskState::InSyscall;
    current_ = execer;
  }
  execer->task.resetMemory();
  execer->execSeen = true;
  execer->task.resume(Task::Resume::Syscall);
}

void RecordSession::completeExec(RecordTask& t) {
  pid_t tid = t.task.tid();
  StraySignals strays;
  installScratchPage(t.task, strays);
  absorbStrays(t, strays);

  capnp::MallocMessageBuilder msg;
  auto e = msg.initRoot<schema::Event>().initExec();
  e.setFilename(t.strings.empty() ? "" : t.strings[0]);
  std::string exePath = readLink(fmt::format("/proc/{}/exe", tid));
  auto exeHash = blobs_->storePath(fmt::format("/proc/{}/exe", tid), exePath).bytes();
  e.setExeBlob(asData(exeHash.data(), exeHash.size()));

  struct stat exeStat;
  if (!warnedSetuid_ && ::geteuid() != 0 &&
      ::stat(fmt::format("/proc/{}/exe", tid).c_str(), &exeStat) == 0 &&
      (exeStat.st_mode & (S_ISUID | S_ISGID))) {
    warnedSetuid_ = true;
    fmt::print(stderr, "rec: {} is set-uid/set-gid; it is recorded without those privileges\n",
               exePath);
  }

  std::vector<MapEntry> maps = readMaps(tid);
  std::vector<const MapEntry*> files;
  const MapEntry* stack = nullptr;
  for (const auto& m : maps) {
    if (m.isFile()) files.push_back(&m);
    if (m.path == "[stack]") stack = &m;
  }
  auto mappings = e.initMappings(static_cast<unsigned>(files.size()));
  std::vector<std::pair<uint64_t, std::vector<std::byte>>> writable;
  for (unsigned i = 0; i < files.size(); ++i) {
    const MapEntry& m = *files[i];
    auto out = mappings[i];
    out.setStart(m.start);
    out.setEnd(m.end);
    out.setProt(static_cast<uint32_t>(m.prot));
    out.setFlags(m.shared ? MAP_SHARED : MAP_PRIVATE);
    out.setOffset(m.offset);
    out.setPath(m.path);
    std::string byRange = fmt::format("/proc/{}/map_files/{:x}-{:x}", tid, m.start, m.end);
    format::BlobHash hash;
    try {
      hash = blobs_->storePath(byRange, m.path);
    } catch (const RecError&) {
      hash = blobs_->storePath(m.path, m.path);  // map_files needs CAP_SYS_ADMIN
    }
    auto bytes = hash.bytes();
    out.setBlobHash(asData(bytes.data(), bytes.size()));
    if (m.prot & PROT_WRITE) writable.emplace_back(m.start, t.task.readBytes(m.start, m.end - m.start));
  }
  auto data = e.initWritableData(static_cast<unsigned>(writable.size()));
  for (unsigned i = 0; i < writable.size(); ++i) {
    data[i].setAddress(writable[i].first);
    data[i].setData(asData(writable[i].second.data(), writable[i].second.size()));
  }

  // The initial stack, with the vDSO hidden from the program: without
  // AT_SYSINFO_EHDR, libc makes real syscalls for the time, which rec records.
  const Registers& regs = t.task.regs();
  uint64_t sp = regs.sp();
  if (!stack || sp < stack->start || sp >= stack->end)
    throw RecError(kExitInternal, "cannot find the initial stack after exec");
  std::vector<std::byte> image = t.task.readBytes(sp, stack->end - sp);
  auto word = [&](size_t index) -> uint64_t* {
    if ((index + 1) * 8 > image.size()) return nullptr;
    return reinterpret_cast<uint64_t*>(image.data() + index * 8);
  };
  std::vector<std::string> argvStrings;
  if (uint64_t* argc = word(0)) {
    size_t index = 1;
    for (uint64_t i = 0; i < *argc && word(index); ++i, ++index)
      argvStrings.push_back(t.task.readCString(*word(index)));
    ++index;  // argv's NULL
    while (word(index) && *word(index)) ++index;
    ++index;  // envp's NULL
    for (; word(index + 1) && *word(index) != AT_NULL; index += 2) {
      if (*word(index) == AT_SYSINFO_EHDR) {
        *word(index) = AT_IGNORE;
        t.task.write(sp + index * 8, word(index), 8);
      }
    }
  }
  e.setStackStart(sp);
  e.setStackImage(asData(image.data(), image.size()));
  e.initRegisters().setRaw(asData(regs.raw()));
  auto argv = e.initArgv(static_cast<unsigned>(argvStrings.size()));
  for (unsigned i = 0; i < argvStrings.size(); ++i) argv.set(i, argvStrings[i]);
  if (t.formerTid) {
    e.setBecomesTid(tid);
    emit(t, msg, std::exchange(t.formerTid, 0));
    // The threads the exec ended, in tid order.
    for (auto& [otherTid, other] : tasks_) {
      if (!other->execVictimStatus || other->task.tgid() != t.task.tgid()) continue;
      other->exitWritten = false;
      writeExit(*other, *std::exchange(other->execVictimStatus, std::nullopt));
      other->state = TaskState::Dead;
    }
  } else {
    emit(t, msg);
  }
  t.execSeen = false;
  t.exitRegs = regs;
  t.justExited = false;
  releaseVforkParent(t);
}

void RecordSession::onFork(RecordTask& t, const Stop& stop) {
  pid_t childTid = static_cast<pid_t>(t.task.eventMessage());
  uint64_t flags = t.nr == SYS_clone ? t.args[0]
                   : t.nr == SYS_vfork ? (CLONE_VM | CLONE_VFORK)
                                       : 0;
  RecordTask& child = taskFor(childTid);
  child.announcedByParent = true;
  child.task.setTgid((flags & CLONE_THREAD) ? t.task.tgid() : childTid);
  child.fds = (flags & CLONE_FILES) ? t.fds : t.fds->copy();
  t.newTask = childTid;
  bool vfork = stop.event == PTRACE_EVENT_VFORK;
  if (vfork) {
    child.vforkParent = &t;
    t.vforkChild = &child;
    // The parent now waits in the kernel until the child execs or exits;
    // replay must create the child before running it.
    capnp::MallocMessageBuilder msg;
    auto e = msg.initRoot<schema::Event>().initSyscallEnter();
    e.setNumber(t.nr);
    e.setNewTask(childTid);
    emit(t, msg);
    t.enterAnnounced = true;
  }
  t.task.resume(Task::Resume::Syscall);
  if (vfork && current_ == &t) current_ = nullptr;
  if (child.sawInitialStop) makeReady(child);
}

// The task is about to exit; its status is known now. The event is written
// here, before the kernel clears CLONE_CHILD_CLEARTID and wakes joiners, so
// that replay lets the task die before those joiners run on.
void RecordSession::onExitEvent(RecordTask& t) {
  int status = static_cast<int>(t.task.eventMessage());
  if (siblingExecing(t)) {
    // Ended by a sibling's execve: its exit is written after the Exec event,
    // because replay sees it die only when it replays that exec.
    t.execVictimStatus = status;
    t.task.resume(Task::Resume::Cont);
    t.state = TaskState::Exiting;
    if (current_ == &t) current_ = nullptr;
    return;
  }
  writeExit(t, status);
  t.task.resume(Task::Resume::Cont);
  bool leaderWithThreads =
      t.task.tid() == t.task.tgid() &&
      std::any_of(tasks_.begin(), tasks_.end(), [&](const auto& kv) {
        const RecordTask& o = *kv.second;
        return &o != &t && o.task.tgid() == t.task.tgid() && o.state != TaskState::Dead;
      });
  if (!leaderWithThreads) {
    // Let it finish dying before anyone else runs: the kernel clears its
    // CLONE_CHILD_CLEARTID word on the way, which others may be reading.
    for (;;) {
      Stop stop = t.task.wait();
      if (stop.kind == StopKind::Exited) {
        onExited(t, stop.status);
        return;
      }
      t.task.resume(Task::Resume::Cont);
    }
  }
  // A leader with live threads lingers as a zombie: it must not stay current.
  t.state = TaskState::Exiting;
  if (current_ == &t) current_ = nullptr;
}

void RecordSession::writeExit(RecordTask& t, int status) {
  if (t.exitWritten) return;
  t.exitWritten = true;
  capnp::MallocMessageBuilder msg;
  auto e = msg.initRoot<schema::Event>().initExit();
  e.setWaitStatus(status);
  e.setThreadOnly(t.task.tid() != t.task.tgid());
  emit(t, msg);
  if (t.task.tid() == initialTid_) initialStatus_ = status;
}

void RecordSession::onExited(RecordTask& t, int status) {
  if (t.execVictimStatus || siblingExecing(t)) {
    if (!t.execVictimStatus) t.execVictimStatus = status;
    t.state = TaskState::Dead;
    if (current_ == &t) current_ = nullptr;
    return;
  }
  writeExit(t, status);  // when no PTRACE_EVENT_EXIT stop came (SIGKILL)
  if (t.task.tid() == initialTid_) initialStatus_ = status;
  t.state = TaskState::Dead;
  if (current_ == &t) current_ = nullptr;
  releaseVforkParent(t);
}

}  // namespace rec
