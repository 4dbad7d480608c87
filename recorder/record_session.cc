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
#include <cstdlib>
#include <cstring>
#include <set>

#include "code_patch.h"
#include "cpu_info.h"
#include "environment.h"
#include "errors.h"
#include "exit_codes.h"
#include "process_maps.h"
#include "rdtsc_sites.h"
#include "record_task.h"
#include "remote_syscall.h"
#include "scheduler.h"
#include "seccomp_filter.h"
#include "signals.h"
#include "spawn.h"
#include "syscall_table.h"

extern char** environ;

namespace rec {

volatile sig_atomic_t gRecordStopRequested = 0;
volatile sig_atomic_t gRecordTimeoutExpired = 0;

namespace {
// REC_CPUS=N: the program's processes use at most N CPUs, `all` (the
// default): every CPU rec may use (0). REC_CPUS=1 keeps the whole program on
// the header's CPU (docs/parallel.md "CPU placement").
size_t cpusByEnvironment() {
  const char* value = ::getenv("REC_CPUS");
  if (!value || !*value) return 0;
  if (std::string_view(value) == "all") return 0;
  char* end = nullptr;
  long n = std::strtol(value, &end, 10);
  if (*end != '\0' || n < 1)
    throw RecError(kExitUsage,
                   fmt::format("rec: REC_CPUS={}: not a number of CPUs (1 or more) or all", value));
  return static_cast<size_t>(n);
}

uint64_t monotonicRawNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000 + static_cast<uint64_t>(ts.tv_nsec);
}
}  // namespace

RecordSession::RecordSession(RecordOptions options)
    : options_(std::move(options)), scheduler_(std::make_unique<Scheduler>(options_.chaos)) {
  tscBase_ = __rdtsc();
  tscNsBase_ = monotonicRawNs();
}

// The counter as every rdtsc of the recording reports it, the same scale the
// time shim computes in the tracee (which cannot run RDTSC where it traps):
// monotonic, strictly increasing, at the machine's TSC rate as measured
// between rec's start and the first use (at least 200 us apart).
uint64_t RecordSession::tscNow() {
  if (!tscMult_) {
    uint64_t ns = monotonicRawNs();
    while (ns - tscNsBase_ < 200000) ns = monotonicRawNs();
    const uint64_t ticks = __rdtsc() - tscBase_;
    tscMult_ =
        static_cast<uint64_t>((static_cast<unsigned __int128>(ticks) << 32) / (ns - tscNsBase_));
    if (!tscMult_) tscMult_ = uint64_t{1} << 32;
  }
  const uint64_t ns = monotonicRawNs() - tscNsBase_;
  uint64_t value =
      tscBase_ + static_cast<uint64_t>((static_cast<unsigned __int128>(ns) * tscMult_) >> 32);
  if (value <= lastTsc_) value = lastTsc_ + 1;
  lastTsc_ = value;
  return value;
}
RecordSession::~RecordSession() = default;

uint64_t RecordSession::chaosSeed() const {
  return scheduler_->chaosSeed();
}

void RecordSession::writeHeader(const std::string& executable, int cpuNumber) {
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
  CpuDescription cpu = describeThisCpuCached();
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
  const auto bitmaps = headerSyscallBitmaps(tracedBitmap_, refusedBitmap_);
  h.setTracedSyscalls(asData(bitmaps.data(), bitmaps.size()));
  // The stack limit decides where mmap places things: replay must use it too.
  rlimit stack;
  ::getrlimit(RLIMIT_STACK, &stack);
  auto limits = h.initRlimits(1);
  limits[0].setResource(RLIMIT_STACK);
  limits[0].setSoft(stack.rlim_cur);
  limits[0].setHard(stack.rlim_max);
  h.setScratchAddress(kScratchAddress);
  h.setChaosSeed(scheduler_->chaosSeed());
  h.setRdtscPatched(rdtscPatcher_.has_value());
  h.setTimeShim(timeShim_);
  h.setSyscallBuffer(syscallBuffer_);
  h.setRunSpans(true);
  h.setCpuNumber(cpuNumber);
  h.setCheckMemory(options_.checkMemory);
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
  tracedBitmap_ = tracedSyscallBitmap();
  refusedBitmap_ = refusedSyscallBitmap();
  timeShim_ = !offByEnvironment("REC_TIME_SHIM");
  rdtscShim_ = !offByEnvironment("REC_RDTSC_SHIM");
  fileMmapsBuffered_ = !offByEnvironment("REC_SYSBUF_FILE_MMAPS");
  syscallBuffer_ = sysbuf::enabledByEnvironment();
  blocking_ = sysbuf::blockingByEnvironment();
  if (!rdtscTrapsHere()) rdtscPatcher_.emplace();
  parallel_ = !offByEnvironment("REC_PARALLEL");
  cpuMoves_ = !offByEnvironment("REC_CPU_MOVES");
  const size_t mostCpus = cpusByEnvironment();
  blockStreams_ = parallel_ && syscallBuffer_ && sysbuf::blockStreamsByEnvironment();
  echoOutput_ = sysbuf::echoOutputByEnvironment();
  int lanes = 1;
  if (parallel_) {
    cpu_set_t allowed;
    lanes = ::sched_getaffinity(0, sizeof allowed, &allowed) == 0 ? CPU_COUNT(&allowed) : 1;
    // At least two, so that the parallel path is taken (and tested) on one CPU too.
    lanes = std::max(lanes, 2);
  }
  // The trace writer's compression thread starts here, before rec pins
  // itself, and is then kept off rec's CPU, so zstd and the file writes run
  // beside the program instead of taking turns with it. Each process is
  // pinned to one CPU for its life, the first one to rec's: CPUID's answers
  // (APIC ids, which ld.so keeps in memory) differ between CPUs and cannot
  // be trapped, and replay pins each process to its recorded CPU
  // (docs/parallel.md "CPU placement").
  int cpu = chooseCpu(-1);
  writeHeader(executable, cpu);
  cpus_ = allowedCpus(cpu, mostCpus);
  cpu = pinToCpu(cpu);
  if (cpu < 0 || cpus_.empty() || cpus_.front() != cpu) cpus_.assign(1, cpu);
  writer_->avoidCpu(cpu);
  blobs_ = std::make_unique<BlobStore>(*writer_, *blobCache_);

  SpawnOptions spawn;
  spawn.path = executable;
  spawn.argv = options_.command;
  spawn.envp = env_;
  spawn.cpu = cpu;
  spawn.tracedSyscalls = tracedBitmap_;
  spawn.refusedSyscalls = refusedBitmap_;
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
  t.cpu = cpu;
  t.noteAnnouncedByParent();
  t.noteInitialStop();
  t.fds = OutputFds::initial();
  // Already on its way to the seccomp stop of its execve.
  t.setState(RecordTask::State::Ready);
  t.setState(RecordTask::State::Running);
  scheduler_->adopt(t);
  scheduler_->setStarter([this](RecordTask& task) { startTask(task); });
  scheduler_->setSoloHooks(
      [this](RecordTask& task, bool alone) { openEchoWindow(task, alone); },
      [](RecordTask& task) { return !task.sysbuf || sysbuf::closeEchoWindow(*task.sysbuf); });
  if (parallel_) {
    scheduler_->setParallel(
        lanes, [this](const RecordTask& a, const RecordTask& b) { return independent(a, b); });
    scheduler_->setExclusiveStarter([this](RecordTask& task) { startAlone(task); });
  }

  loop();
  if (options_.verbose && parallel_)
    fmt::print(stderr,
               "rec: parallel: {} tasks started beside others, at most {} at once; {} syscalls "
               "waited to be alone; {} processes moved to a free CPU\n",
               scheduler_->parallelStarts(), scheduler_->mostAtOnce(),
               scheduler_->exclusiveWaits(), processMoves_);
  if (options_.verbose)
    fmt::print(stderr, "rec: preemptions in user code: {} ({} interrupts sent again)\n",
               scheduler_->preemptions(), scheduler_->reinterrupts());

  capnp::MallocMessageBuilder footer;
  auto f = footer.initRoot<schema::Footer>();
  f.setEndTimeNs(nowRealtimeNs());
  f.setExitStatus(initialStatus_);
  f.setTaskCount(tasksSeen_);
  f.setSignalCount(signalCount_);
  f.setInterruptedByUser(interrupted_ && !timedOut_);
  f.setTimedOut(timedOut_);
  writer_->finish(footer);
  siteCache_.save();
  return initialStatus_;
}

// Every thread of the first process has died (its pid is its group's id).
bool RecordSession::initialProcessGone() const {
  if (tasksSeen_ == 0) return false;
  return std::none_of(tasks_.begin(), tasks_.end(), [&](const auto& kv) {
    return kv.second->task.tgid() == initialTid_ && kv.second->alive();
  });
}

// Reaped tasks whose exit is in the trace are done with: nothing waits for
// them any more, and the kernel reports nothing more about their ids.
void RecordSession::dropFinishedTasks() {
  std::erase_if(reaped_, [&](pid_t tid) {
    auto it = tasks_.find(tid);
    if (it == tasks_.end()) return true;
    RecordTask& t = *it->second;
    if (t.state() != RecordTask::State::Dead) return true;  // the id lives on (exec)
    if (t.exitRecord() != RecordTask::ExitRecord::Written || t.vforkParent || t.vforkChild)
      return false;
    forget(t);
    tasks_.erase(it);
    return true;
  });
}

RecordTask& RecordSession::taskFor(pid_t tid) {
  auto it = tasks_.find(tid);
  if (it != tasks_.end()) return *it->second;
  // A new child can report its first stop before its parent's fork event.
  auto t = std::make_unique<RecordTask>(tid, tid);
  t->task.setRunClock(writer_->eventCounter(), &tracerSequence_);
  auto& ref = *t;
  tasks_[tid] = std::move(t);
  ++tasksSeen_;
  return ref;
}

void RecordSession::loop() {
  Scheduler::TickScope ticking(*scheduler_);
  for (;;) {
    bool anyAlive = std::any_of(tasks_.begin(), tasks_.end(),
                                [](const auto& kv) { return kv.second->alive(); });
    if (!anyAlive) return;
    if (deadline_ && Clock::now() >= *deadline_) gRecordTimeoutExpired = 1;
    if ((gRecordStopRequested || gRecordTimeoutExpired) && !interrupted_) {
      // rec itself was asked to stop, or the program ran out of time: end
      // the program, keep the trace.
      interrupted_ = true;
      timedOut_ = gRecordTimeoutExpired && !gRecordStopRequested;
      for (auto& [tid, t] : tasks_)
        if (t->alive()) ::kill(tid, SIGKILL);
    }
    if (!orphansEnded_ && initialProcessGone()) {
      // The program has exited: what it left running (a daemon, a
      // background job) ends with it, as under rr, instead of keeping the
      // recording open for as long as it runs.
      orphansEnded_ = true;
      for (auto& [tid, t] : tasks_)
        if (t->alive()) ::kill(tid, SIGKILL);
    }
    if (!reaped_.empty()) dropFinishedTasks();
    scheduler_->scheduleIfIdle();
    scheduler_->maybePreempt();
    const bool movesAsked = askMoves();
    scheduler_->tick(deadline_.has_value() || movesAsked);
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
      attachRunSpan(*u, e);
      attachMemoryDigest(*u, enter, u->entryDigest, u->entryMasked);
      writeTimeLog(*u, u->task.tid());
      writeBuffered(*u, u->task.tid());
      writer_->writeEvent(enter);
      u->enterAnnounced = true;
    }
  }
  for (RecordTask* u : unannounced_) u->enterAnnounced = true;
  unannounced_.clear();
  pid_t tid = tidOverride ? tidOverride : t.task.tid();
  writeTimeLog(t, tid);
  if (scheduler_->isCurrent(t)) drainSyscallBuffer(t);
  writeBuffered(t, tid);
  auto event = msg.getRoot<schema::Event>();
  event.setTid(tid);
  attachRunSpan(t, event);
  writer_->writeEvent(msg);
}

// The task's first event after a run says when it ran (trace.capnp RunSpan),
// and whether its memory is its own.
void RecordSession::attachRunSpan(RecordTask& t, schema::Event::Builder event) {
  if (auto span = std::exchange(t.runSpan, std::nullopt)) {
    auto run = event.initRun();
    run.setFrom(span->from);
    run.setTo(span->to);
    run.setResumedSeq(span->resumedSeq);
    run.setStoppedSeq(span->stoppedSeq);
    // No other live task shares its address space (threads, CLONE_VM: the
    // time shim's space is theirs too), nothing maps memory it can write,
    // and no ptracer reads or writes it.
    run.setMemoryPrivate(!t.sharesMemory && !t.vforkChild && !t.vforkParent && !t.ptrace.tracer &&
                         ptraceTracees_ == 0 && t.timeSpace && t.timeSpace.use_count() == 1);
  }
}

// Memory another process can write: the whole thread group's (threads it
// creates later inherit the mark, as children do).
void RecordSession::markSharesMemory(RecordTask& t) {
  for (auto& [tid, u] : tasks_)
    if (u->task.tgid() == t.task.tgid()) u->sharesMemory = true;  // (t among them)
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
    if (entry.function == REC_SHIM_RDTSC || entry.function == REC_SHIM_RDTSCP) {
      // an rdtsc at a patched site, answered without a stop
      auto r = e.initRdtsc();
      r.setValue(entry.data[0]);
      r.setAux(static_cast<uint32_t>(entry.data[1]));
      r.setIsRdtscp(entry.function == REC_SHIM_RDTSCP);
      r.setIp(entry.args[0]);
      r.setInLog(true);
      lastTsc_ = std::max(lastTsc_, entry.data[0]);
      noteRdtscRan(t, entry.args[0]);
      writer_->writeEvent(msg);
      continue;
    }
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
  // Only a task running user code writes the buffer (one at a time): what
  // it holds now is this task's.
  if (t.state() == RecordTask::State::Running) drainSyscallBuffer(t);
  // A stop that ends a run of user code (a syscall's entry, a signal, an
  // interrupt, its exit) gives the span its next event carries; one that
  // ends the kernel's side of a syscall keeps the span of the run before.
  if (!t.runSpan || t.task.lastResumeRanUserCode())
    t.runSpan = RecordTask::RunSpan{t.task.resumedAt(), writer_->eventCount(), t.task.resumedSeq(),
                                    ++tracerSequence_};
  if (stop.kind == StopKind::Exited) {
    onExited(t, stop.status);
    return;
  }
  if (stop.kind == StopKind::GroupStop && stop.signal == SIGTRAP &&
      t.consume(RecordTask::Expect::InterruptStop)) {
    onInterrupted(t);
    return;
  }
  if (stop.kind == StopKind::GroupStop) {
    if (!t.initialStopSeen()) {
      if (t.noteInitialStop()) scheduler_->makeReady(t);
      return;
    }
    if (t.ptrace.tracer) {
      // Its emulated ptracer sees the group-stop (PTRACE_EVENT_STOP when seized).
      t.ptrace.groupStopSignal = stop.signal;
      enterPtraceStop(t, EmulatedPtrace::Held::GroupStop,
                      ptraceStopStatus(stop.signal, t.ptrace.seized ? PTRACE_EVENT_STOP : 0));
      return;
    }
    if (stop.signal == SIGTRAP) {
      // Not a stop: the kernel's notice of a SIGCONT (it is seized), which
      // ends a job-control stop or came while the task ran; on with it, the
      // signal's own delivery stop follows.
      if (t.state() == RecordTask::State::JobStopped) t.afterJobStop = true;
      if (scheduler_->isCurrent(t))
        scheduler_->run(t);
      else
        scheduler_->makeReady(t);
      return;
    }
    // A real group-stop (SIGSTOP and friends) of a task nobody emulated
    // ptraces: it stays stopped, as natively, and since rec is not its
    // parent the kernel reports the stop to the parent's WUNTRACED wait.
    // PTRACE_LISTEN keeps it there until SIGCONT, which the next stop shows.
    t.task.listen();
    t.jobStopSignal = stop.signal;
    if (t.state() == RecordTask::State::JobStopped) return;
    scheduler_->forget(t);
    t.setState(RecordTask::State::JobStopped);
    return;
  }
  if (stop.kind != StopKind::Signal) {
    t.leftSyscallReturn();
    t.afterJobStop = false;
  }
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

}  // namespace rec
