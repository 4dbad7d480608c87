#include "record_session.h"

#include <elf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>

#include "code_patch.h"
#include "cpu_info.h"
#include "errors.h"
#include "exit_codes.h"
#include "process_maps.h"
#include "rdtsc_sites.h"
#include "record_task.h"
#include "remote_syscall.h"
#include "seccomp_filter.h"
#include "signals.h"
#include "spawn.h"
#include "syscall_table.h"

extern char** environ;

namespace rec {

volatile sig_atomic_t gRecordStopRequested = 0;
volatile sig_atomic_t gRecordTimeoutExpired = 0;

namespace {

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
    created_ = ::timer_create(CLOCK_MONOTONIC, &ev, &timer_) == 0;
  }
  ~TickTimer() {
    if (created_) ::timer_delete(timer_);
  }
  // Ticks only while there is something to time: a task waiting for the CPU
  // (preemption) or a --timeout. A lone single-threaded program then runs
  // without rec waking up 200 times a second on its CPU.
  void want(bool on) {
    if (!created_ || on == armed_) return;
    itimerspec spec{};
    if (on) {
      spec.it_interval.tv_nsec = std::chrono::nanoseconds(kTick).count();
      spec.it_value = spec.it_interval;
    }
    if (::timer_settime(timer_, 0, &spec, nullptr) == 0) armed_ = on;
  }

 private:
  timer_t timer_{};
  bool created_ = false;
  bool armed_ = false;
};

}  // namespace

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
  h.setRdtscPatched(rdtscPatcher_.has_value());
  h.setTimeShim(timeShim_);
  h.setCheckMemory(options_.checkMemory);
  h.setCpuNumber(cpu_ + 1);
  env_ = std::move(env);
  format::WriterOptions writerOptions;
  writerOptions.onBlobWritten = [cache = blobCache_.get()](const format::BlobHash& hash,
                                                           std::span<const std::byte> framed) {
    cache->onBlobWritten(hash, framed);
  };
  writer_ = format::TraceWriter::create(options_.tracePath, msg, writerOptions);
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
  if (const char* shim = ::getenv("REC_TIME_SHIM"); shim && std::string_view(shim) == "off")
    timeShim_ = false;
  if (!rdtscTrapsHere()) rdtscPatcher_.emplace();
  // The trace writer's compression thread starts here, before rec pins
  // itself, and is then kept off rec's CPU, so zstd and the file writes run
  // beside the program instead of taking turns with it.
  int cpu = chooseCpu();
  cpu_ = cpu;
  writeHeader(executable);
  cpu = pinToCpu(cpu);
  writer_->avoidCpu(cpu);
  blobs_ = std::make_unique<BlobStore>(*writer_, *blobCache_);

  SpawnOptions spawn;
  spawn.path = executable;
  spawn.argv = options_.command;
  spawn.envp = env_;
  spawn.cpu = cpu;
  spawn.tracedSyscalls = tracedBitmap_;
  spawn.untracedIpFrom = kScratchUntracedIp;
  spawn.untracedIpTo = kScratchShimSyscallIp;
  spawn.stdoutFd = options_.stdoutFd;
  spawn.stderrFd = options_.stderrFd;
  spawn.trapRdtsc = !rdtscPatcher_;
  gRecordTimeoutExpired = 0;
  if (options_.timeout.count() > 0) deadline_ = Clock::now() + options_.timeout;
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
  TickTimer tick;
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
    tick.want(!readyQueue_.empty() || deadline_.has_value());
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
      timeslice_ =
          std::chrono::microseconds(std::uniform_int_distribution<int>(100, 50'000)(chaosRandom_));
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
  bool others =
      std::any_of(unannounced_.begin(), unannounced_.end(), [&](RecordTask* u) { return u != &t; });
  if (others) {
    for (RecordTask* u : unannounced_) {
      capnp::MallocMessageBuilder enter;
      auto e = enter.initRoot<schema::Event>();
      e.setTid(u->task.tid());
      e.initSyscallEnter().setNumber(u->nr);
      writeTimeLog(*u, u->task.tid());
      writer_->writeEvent(enter);
      u->enterAnnounced = true;
    }
  }
  for (RecordTask* u : unannounced_) u->enterAnnounced = true;
  unannounced_.clear();
  pid_t tid = tidOverride ? tidOverride : t.task.tid();
  writeTimeLog(t, tid);
  msg.getRoot<schema::Event>().setTid(tid);
  writer_->writeEvent(msg);
}

// The time shim's answers since the task's last event, as syscall events
// marked `buffered`, so replay can hand them back before it runs the task to
// this event. The task (and any vfork parent sharing the log) is stopped.
void RecordSession::writeTimeLog(RecordTask& t, pid_t tid) {
  if (!t.timeSpace || !t.timeSpace->log) return;
  rec_shim_log& log = t.timeSpace->log->log();
  uint32_t count = std::min(log.count, log.capacity);
  for (uint32_t i = 0; i < count; ++i) {
    const rec_shim_entry& entry = log.entries[i];
    capnp::MallocMessageBuilder msg;
    auto e = msg.initRoot<schema::Event>();
    e.setTid(tid);
    auto s = e.initSyscall();
    time_shim::describeEntry(entry, s);
    writer_->writeEvent(msg);
  }
  log.count = 0;
}

void RecordSession::absorbStrays(RecordTask& t, StraySignals& strays) {
  for (const auto& info : strays) holdSignal(t, info);
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
    if (current_ == &t)
      resumeCurrent(t);
    else
      makeReady(t);
    return;
  }
  if (stop.kind != StopKind::Signal) t.justExited = false;
  switch (stop.kind) {
    case StopKind::Seccomp:
      onSeccomp(t);
      break;
    case StopKind::SyscallStop:
      onSyscallExit(t);
      break;
    case StopKind::Signal:
      onSignal(t, stop.signal);
      break;
    case StopKind::Exec:
      onExec(t);
      break;
    case StopKind::Fork:
      onFork(t, stop);
      break;
    case StopKind::VforkDone:
      t.task.resume(Task::Resume::Syscall);
      break;
    case StopKind::ExitEvent:
      onExitEvent(t);
      break;
    default:
      break;
  }
}

bool RecordSession::shouldSwitchAfterSyscall(RecordTask& t) {
  if (t.nr == SYS_sched_yield || Clock::now() - t.sliceStart > timeslice_) return true;
  return options_.chaos.enabled &&
         std::bernoulli_distribution(kChaosSwitchProbability)(chaosRandom_);
}

}  // namespace rec
