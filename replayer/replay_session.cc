#include "replay_session.h"

#include <elf.h>
#include <fcntl.h>
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

#include <fmt/format.h>

#include "code_patch.h"
#include "cpu_info.h"
#include "errors.h"
#include "exit_codes.h"
#include "process_maps.h"
#include "remote_syscall.h"
#include "signals.h"
#include "spawn.h"
#include "symbolize.h"
#include "syscall_table.h"

namespace rec {

namespace {


format::BlobHash hashOf(capnp::Data::Reader d) {
  return format::BlobHash::fromBytes(std::span<const std::byte>(
      reinterpret_cast<const std::byte*>(d.begin()), d.size()));
}

std::string describeRecordedSyscall(schema::SyscallEvent::Reader e) {
  const sys::SyscallRow* row = sys::findSyscall(e.getNumber());
  if (!row) return fmt::format("syscall_{}", e.getNumber());
  std::array<uint64_t, 6> args{};
  for (unsigned i = 0; i < 6 && i < e.getArgs().size(); ++i) args[i] = e.getArgs()[i];
  std::vector<std::string> strings;
  for (auto s : e.getStrings()) strings.emplace_back(s.cStr());
  return sys::formatCall(*row, args, strings);
}

// Whether a core file was written (0x80) depends on RLIMIT_CORE, and replay
// writes none.
bool sameStatus(int a, int b) {
  auto normal = [](int s) { return WIFSIGNALED(s) ? s & ~0x80 : s; };
  return normal(a) == normal(b);
}

std::string statusText(int status) {
  if (WIFEXITED(status)) return fmt::format("exit status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("killed by {}", sys::signalName(WTERMSIG(status)));
  return fmt::format("status {:#x}", status);
}

}  // namespace

struct ReplaySession::ReplayTask {
  ReplayTask(int recorded, pid_t tid) : recordedTid(recorded), task(tid, tid) {}
  // Where the task is parked between its events.
  enum class Park {
    Initial,    // new child: its first ptrace stop not yet collected
    Seccomp,    // at the seccomp stop of a syscall not yet applied
    SkipPending,  // at the seccomp stop of an emulated syscall: skip it with skipResult when resumed
    Resumable,  // PTRACE_CONT it (with pendingSignal) to run on
    InKernel,   // inside an executed blocking syscall (vfork parent)
    Dead,
  };
  int recordedTid;
  Task task;
  Park park = Park::Initial;
  int pendingSignal = 0;     // delivered/raised when the task is next resumed
  int awaitingSignal = 0;    // a signal rec raised whose delivery stop is due
  // The emulated syscall a SkipPending task sits in. Whether it is simply
  // skipped or completed at its exit (to deliver a signal there with the
  // kernel's restart rules) is decided by the task's next event.
  int skipNumber = -1;
  std::array<uint64_t, 6> skipArgs{};
  int64_t skipResult = 0;
  bool skipIsSigsuspend = false;
  int lastExecutedNumber = -1;  // Resumable at the exit of this executed syscall
  uint64_t childTidAddress = 0;  // CLONE_CHILD_SETTID: fixed at the first stop
  uint64_t parentTidAddress = 0; // CLONE_PARENT_SETTID: fixed when clone returns
  int32_t parentTidValue = 0;
  bool exiting = false;          // passed PTRACE_EVENT_EXIT
  std::optional<int> deadStatus; // reaped while replaying a sibling's execve
};

ReplaySession::ReplaySession(ReplayOptions options) : options_(std::move(options)) {}

ReplaySession::~ReplaySession() { killAll(); }

void ReplaySession::killAll() {
  bool any = false;
  for (auto& [recorded, t] : tasks_) {
    if (t->park != ReplayTask::Park::Dead) {
      ::kill(t->task.tid(), SIGKILL);
      t->park = ReplayTask::Park::Dead;
      any = true;
    }
  }
  if (!any && zombies_.empty()) return;
  // Reap every task (threads before their leader); killed tasks may still
  // report PTRACE_EVENT_EXIT and must be let go on dying.
  int status;
  for (;;) {
    pid_t pid = ::waitpid(-1, &status, __WALL);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;  // ECHILD: all gone
    }
    if (!WIFEXITED(status) && !WIFSIGNALED(status)) ::ptrace(PTRACE_CONT, pid, nullptr, nullptr);
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
  auto diffs = cpuDifferences(recorded, describeThisCpu());
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
  reader_ = format::TraceReader::open(options_.tracePath);
  checkCpu();
  blobs_ = std::make_unique<BlobFiles>(*reader_);
  bool started = false;
  for (;;) {
    eventIndex_ = reader_->nextEventIndex();
    auto event = reader_->nextEvent();
    if (!event) break;
    if (!started) {
      start(*event);
      started = true;
    }
    dispatch(*event);
  }
  if (!reader_->complete()) {
    killAll();
    fmt::print(stderr, "rec: the recording was cut short ({}); replay stopped after event #{}\n",
               reader_->cutShortReason(), eventIndex_);
    return kExitTraceCutShort;
  }
  if (!initialExited_) throw RecError(kExitBadTrace, "rec: trace ends before the program exited");
  killAll();
  if (WIFEXITED(initialStatus_)) return WEXITSTATUS(initialStatus_);
  if (WIFSIGNALED(initialStatus_)) return 128 + WTERMSIG(initialStatus_);
  return kExitInternal;
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
  spawn.cpu = pinToCpu(-1);
  for (auto l : header.getRlimits())
    spawn.rlimits.push_back({static_cast<int>(l.getResource()), rlimit{l.getSoft(), l.getHard()}});
  auto bitmap = header.getTracedSyscalls();
  spawn.tracedSyscalls.assign(bitmap.begin(), bitmap.end());
  spawn.untracedSyscallIp = header.getScratchAddress() + 2;
  spawn.disableCoreDumps = true;  // replay has no side effects, not even a core file
  if (header.getScratchAddress() != kScratchAddress)
    throw RecError(kExitBadTrace, "rec: trace uses a different scratch address");
  pid_t pid = spawnTraced(spawn);
  initialRecordedTid_ = first.getTid();
  auto t = std::make_unique<ReplayTask>(first.getTid(), pid);
  t->park = ReplayTask::Park::Seccomp;
  Stop stop = t->task.wait();
  if (stop.kind != StopKind::Seccomp)
    throw RecError(kExitUnsupported,
                   fmt::format("rec: the replayed program did not start ({})", describeStop(stop)));
  tasks_[first.getTid()] = std::move(t);
}

void ReplaySession::dispatch(schema::Event::Reader event) {
  ReplayTask& t = taskFor(event.getTid());
  if (options_.verbose)
    fmt::print(stderr, "rec: event #{} task {} kind {}{}\n", eventIndex_, event.getTid(),
               static_cast<int>(event.which()),
               event.isSyscall() ? fmt::format(" syscall {}", event.getSyscall().getNumber()) : "");
  if (t.park == ReplayTask::Park::Dead && event.isExit() && t.deadStatus) {
    // Ended by a sibling's execve while replaying it.
    if (!sameStatus(*t.deadStatus, event.getExit().getWaitStatus()))
      throw RecError(kExitDivergence,
                     fmt::format("rec: replay diverged at event #{} (task {}): expected {}, got {}",
                                 eventIndex_, t.recordedTid, statusText(event.getExit().getWaitStatus()),
                                 statusText(*t.deadStatus)));
    t.deadStatus.reset();
    return;
  }
  if (t.park == ReplayTask::Park::Dead)
    throw RecError(kExitBadTrace,
                   fmt::format("rec: trace event #{} is for task {} after it exited", eventIndex_,
                               event.getTid()));
  switch (event.which()) {
    case schema::Event::SYSCALL: onSyscall(t, event.getSyscall()); break;
    case schema::Event::SYSCALL_ENTER: onSyscallEnter(t, event.getSyscallEnter()); break;
    case schema::Event::SIGNAL: onSignal(t, event.getSignal()); break;
    case schema::Event::EXEC: onExec(t, event.getExec()); break;
    case schema::Event::RDTSC: onRdtsc(t, event.getRdtsc()); break;
    case schema::Event::EXIT: onExit(t, event.getExit()); break;
    case schema::Event::PREEMPT: {
      auto p = event.getPreempt();
      reachPoint(t, rawRegisters(p.getRegisters()), memoryChecks(p.getMemory()), "the preemption point");
      break;
    }
    default:
      throw RecError(kExitBadTrace, fmt::format("rec: unknown event kind at #{}", eventIndex_));
  }
}

void ReplaySession::diverge(ReplayTask& t, const std::string& expected, const std::string& actual) {
  std::string where;
  try {
    where = describeCodeAddress(t.task.tid(), t.task.regs().ip(), [this](const std::string& path) {
      return blobs_->pathForRecorded(path);
    });
  } catch (const RecError&) {
    where = "unknown address";
  }
  throw RecError(kExitDivergence,
                 fmt::format("rec: replay diverged at event #{} (task {}): expected {}, but the "
                             "program {} at {}",
                             eventIndex_, t.recordedTid, expected, actual, where));
}

// Resumes the task and returns its next stop that matters to the trace,
// dropping signals the kernel generates during replay (a real child's
// SIGCHLD, ...): the recording's asynchronous signals come from the trace.
Stop ReplaySession::advance(ReplayTask& t) {
  using Park = ReplayTask::Park;
  if (t.park == Park::SkipPending) {
    Registers& r = t.task.mutableRegs();
    r.setSyscallNumber(-1);
    r.setResult(t.skipResult);
    t.task.resume(Task::Resume::Cont);
  } else if (t.park == Park::Resumable) {
    t.task.resume(Task::Resume::Cont, std::exchange(t.pendingSignal, 0));
  } else if (t.park == Park::Seccomp) {
    t.task.resume(Task::Resume::Cont);
  }
  t.lastExecutedNumber = -1;
  bool initial = t.park == Park::Initial;
  t.park = Park::Resumable;
  for (;;) {
    Stop stop = t.task.wait();
    switch (stop.kind) {
      case StopKind::GroupStop:
        if (initial) {
          initial = false;
          if (t.childTidAddress) {
            int32_t value = t.recordedTid;
            t.task.write(std::exchange(t.childTidAddress, 0), &value, sizeof value);
          }
        }
        t.task.resume(Task::Resume::Cont);
        continue;
      case StopKind::Signal: {
        siginfo_t info = t.task.siginfo();
        if (stop.signal == t.awaitingSignal || isSynchronousFault(stop.signal, info)) return stop;
        t.task.resume(Task::Resume::Cont);
        continue;
      }
      default:
        return stop;
    }
  }
}

void ReplaySession::reachSeccomp(ReplayTask& t, const std::string& expected) {
  if (t.park == ReplayTask::Park::Seccomp) return;
  Stop stop = advance(t);
  if (stop.kind == StopKind::Exited) {
    t.park = ReplayTask::Park::Dead;
    throw RecError(kExitDivergence,
                   fmt::format("rec: replay diverged at event #{} (task {}): expected {}, but the "
                               "program {}",
                               eventIndex_, t.recordedTid, expected, describeStop(stop)));
  }
  if (stop.kind != StopKind::Seccomp) {
    std::string what = stop.kind == StopKind::Signal
                           ? fmt::format("received {}", sys::signalName(stop.signal))
                           : describeStop(stop);
    diverge(t, expected, what);
  }
  t.park = ReplayTask::Park::Seccomp;
}

void ReplaySession::checkSyscallMatches(ReplayTask& t, int number,
                                        capnp::List<uint64_t>::Reader recordedArgs,
                                        capnp::List<capnp::Text>::Reader strings) {
  const Registers& regs = t.task.regs();
  int nr = regs.syscallNumber();
  auto args = regs.syscallArgs();
  const sys::SyscallRow* row = sys::findSyscall(nr);
  auto actual = [&] {
    if (!row) return fmt::format("made syscall_{}", nr);
    std::vector<std::string> s;
    for (int index : sys::stringArgs(*row)) s.push_back(t.task.readCString(args[index]));
    return "made " + sys::formatCall(*row, args, s);
  };
  auto expected = [&] {
    const sys::SyscallRow* r = sys::findSyscall(number);
    if (!r) return fmt::format("syscall_{}", number);
    std::array<uint64_t, 6> a{};
    for (unsigned i = 0; i < 6 && i < recordedArgs.size(); ++i) a[i] = recordedArgs[i];
    std::vector<std::string> s;
    for (auto str : strings) s.emplace_back(str.cStr());
    return sys::formatCall(*r, a, s);
  };
  if (nr != number) diverge(t, expected(), actual());
  unsigned count = row ? row->argCount : 6;
  for (unsigned i = 0; i < count && i < recordedArgs.size(); ++i)
    if (args[i] != recordedArgs[i]) diverge(t, expected(), actual());
  if (row) {
    auto indexes = sys::stringArgs(*row);
    for (size_t i = 0; i < indexes.size() && i < strings.size(); ++i)
      if (t.task.readCString(args[indexes[i]]) != std::string_view(strings[i].cStr()))
        diverge(t, expected(), actual());
  }
}

Stop ReplaySession::waitSyscallExit(ReplayTask& t) {
  for (;;) {
    Stop stop = t.task.wait();
    switch (stop.kind) {
      case StopKind::SyscallStop:
        return stop;
      case StopKind::VforkDone:
      case StopKind::GroupStop:
        t.task.resume(Task::Resume::Syscall);
        continue;
      case StopKind::Signal:
        // Replay-time signals are not the recording's; drop them.
        t.task.resume(Task::Resume::Syscall);
        continue;
      default:
        diverge(t, "the syscall to return", describeStop(stop));
    }
  }
}

void ReplaySession::runForkLike(ReplayTask& t, int recordedChild) {
  t.task.resume(Task::Resume::Syscall);
  for (;;) {
    Stop stop = t.task.wait();
    if (stop.kind == StopKind::Fork) break;
    if (stop.kind == StopKind::SyscallStop)
      diverge(t, "to create a process", fmt::format("failed ({})", t.task.regs().result()));
    if (stop.kind == StopKind::Signal || stop.kind == StopKind::GroupStop) {
      t.task.resume(Task::Resume::Syscall);
      continue;
    }
    diverge(t, "to create a process", describeStop(stop));
  }
  pid_t child = static_cast<pid_t>(t.task.eventMessage());
  auto task = std::make_unique<ReplayTask>(recordedChild, child);
  task->park = ReplayTask::Park::Initial;
  // The kernel stores the new task's id where clone was asked to (glibc
  // keeps it in the thread descriptor and passes it to tgkill etc.): the
  // program must find the recorded id there, as it does from gettid().
  const Registers& regs = t.task.regs();
  uint64_t flags = regs.syscallNumber() == SYS_clone ? regs.syscallArgs()[0] : 0;
  if (flags & CLONE_THREAD) task->task.setTgid(t.task.tgid());
  if (flags & CLONE_CHILD_SETTID) task->childTidAddress = regs.syscallArgs()[3];
  if (flags & CLONE_PARENT_SETTID) t.parentTidAddress = regs.syscallArgs()[2];
  t.parentTidValue = recordedChild;
  tasks_[recordedChild] = std::move(task);
  t.task.resume(Task::Resume::Syscall);
  t.park = ReplayTask::Park::InKernel;
}

void ReplaySession::fixParentTid(ReplayTask& t) {
  if (!t.parentTidAddress) return;
  int32_t value = t.parentTidValue;
  t.task.write(std::exchange(t.parentTidAddress, 0), &value, sizeof value);
}

void ReplaySession::onSyscallEnter(ReplayTask& t, schema::SyscallEnterEvent::Reader e) {
  const sys::SyscallRow* row = sys::findSyscall(e.getNumber());
  std::string expected = row ? std::string(row->name) : fmt::format("syscall_{}", e.getNumber());
  reachSeccomp(t, expected);
  if (t.task.regs().syscallNumber() != e.getNumber())
    diverge(t, expected, fmt::format("made syscall {}", t.task.regs().syscallNumber()));
  if (e.getNewTask() != 0) runForkLike(t, e.getNewTask());
}

void ReplaySession::echoOutput(ReplayTask& t, schema::SyscallEvent::Reader e) {
  int fd = e.getOutputFd();
  if ((fd != 1 && fd != 2) || e.getResult() <= 0) return;
  auto args = e.getArgs();
  size_t total = static_cast<size_t>(e.getResult());
  std::vector<std::byte> data;
  int nr = e.getNumber();
  if (nr == SYS_writev || nr == SYS_pwritev || nr == SYS_pwritev2) {
    size_t count = std::min<uint64_t>(args[2], 1024);
    std::vector<iovec> iov(count);
    t.task.read(args[1], iov.data(), count * sizeof(iovec));
    for (const auto& v : iov) {
      if (data.size() >= total) break;
      size_t n = std::min(v.iov_len, total - data.size());
      auto part = t.task.readBytes(reinterpret_cast<uint64_t>(v.iov_base), n);
      data.insert(data.end(), part.begin(), part.end());
    }
  } else {
    data = t.task.readBytes(args[1], total);
  }
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      break;  // our own stdout went away; the replay goes on
    }
    done += static_cast<size_t>(n);
  }
}

// Opens `file` inside the task, mmaps it with `mmapArgs` (the fd slot is
// filled in) and closes it again; returns mmap's result.
int64_t ReplaySession::mapIntoTask(ReplayTask& t, const std::string& file, bool writable,
                                   std::array<uint64_t, 6> mmapArgs) {
  StraySignals strays;
  uint64_t pathAddr = putScratchString(t.task, file);
  uint64_t openFlags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC;
  int64_t fd = remoteSyscall(t.task, SYS_openat,
                             {static_cast<uint64_t>(AT_FDCWD), pathAddr, openFlags, 0, 0, 0}, strays);
  if (fd < 0) throw RecError(kExitInternal, fmt::format("rec: cannot open {} in the tracee", file));
  mmapArgs[4] = static_cast<uint64_t>(fd);
  int64_t got = remoteSyscall(t.task, SYS_mmap, mmapArgs, strays);
  remoteSyscall(t.task, SYS_close, {static_cast<uint64_t>(fd), 0, 0, 0, 0, 0}, strays);
  return got;
}

void ReplaySession::applyShmAt(ReplayTask& t, schema::SyscallEvent::Reader e) {
  // Every attach of a segment maps the same memfd, so replayed processes
  // share it as they shared the segment.
  StraySignals strays;
  skipToSyscallExit(t.task, e.getResult(), strays);
  auto m = e.getMapping();
  uint64_t size = m.getEnd() - m.getStart();
  const std::string& file = blobs_->sharedSegment(static_cast<long>(e.getArgs()[0]), size);
  int64_t got = mapIntoTask(t, file, true,
                            {m.getStart(), size, m.getProt(), MAP_SHARED | MAP_FIXED, 0, 0});
  if (got != static_cast<int64_t>(m.getStart()))
    diverge(t, fmt::format("shmat to map {:#x}", m.getStart()), fmt::format("got {}", got));
  t.task.mutableRegs().setResult(e.getResult());
}

void ReplaySession::applyShmDt(ReplayTask& t, schema::SyscallEvent::Reader e) {
  StraySignals strays;
  skipToSyscallExit(t.task, e.getResult(), strays);
  uint64_t address = e.getArgs()[0];
  for (const auto& m : readMaps(t.task.tid()))
    if (m.start == address)
      remoteSyscall(t.task, SYS_munmap, {m.start, m.end - m.start, 0, 0, 0, 0}, strays);
  t.task.mutableRegs().setResult(e.getResult());
}

void ReplaySession::applyMmap(ReplayTask& t, schema::SyscallEvent::Reader e) {
  uint64_t address = static_cast<uint64_t>(e.getResult());
  auto m = e.getMapping();
  bool fileBacked = e.hasMapping() && m.getBlobHash().size() == 16;
  Registers& r = t.task.mutableRegs();
  uint64_t flags = r.syscallArgs()[3];
  if (!fileBacked) {
    // Anonymous (or /dev/zero): the same mapping at the recorded address.
    r.setSyscallArg(0, address);
    r.setSyscallArg(3, (flags & ~uint64_t{MAP_FIXED_NOREPLACE}) | MAP_FIXED | MAP_ANONYMOUS);
    r.setSyscallArg(4, static_cast<uint64_t>(-1));
    t.task.resume(Task::Resume::Syscall);
    waitSyscallExit(t);
    if (t.task.regs().result() != e.getResult())
      diverge(t, fmt::format("mmap to return {:#x}", address),
              fmt::format("got {:#x}", t.task.regs().result()));
    return;
  }
  // A file mapping: map the stored contents where the recording had it.
  // Writable shared mappings map a private copy shared by the replayed
  // processes, so they still see each other's stores; everything else maps
  // the blob privately.
  StraySignals strays;
  skipToSyscallExit(t.task, e.getResult(), strays);
  bool sharedWritable = (m.getFlags() & MAP_TYPE) != MAP_PRIVATE && (m.getProt() & PROT_WRITE);
  const std::string& file = sharedWritable
                                ? blobs_->sharedCopy(hashOf(m.getBlobHash()), m.getPath())
                                : blobs_->path(hashOf(m.getBlobHash()), m.getPath());
  uint64_t mapFlags = (flags & ~uint64_t{MAP_TYPE} & ~uint64_t{MAP_FIXED_NOREPLACE}) |
                      (sharedWritable ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED;
  int64_t got = mapIntoTask(t, file, sharedWritable,
                            {address, m.getEnd() - m.getStart(), m.getProt(), mapFlags, 0,
                             m.getOffset()});
  if (got != static_cast<int64_t>(address))
    diverge(t, fmt::format("mmap of {} at {:#x}", m.getPath().cStr(), address),
            fmt::format("got {}", got));
  t.task.mutableRegs().setResult(e.getResult());
}

void ReplaySession::onSyscall(ReplayTask& t, schema::SyscallEvent::Reader e) {
  const sys::SyscallRow* row = sys::findSyscall(e.getNumber());
  bool failed = e.getResult() < 0 && e.getResult() > -4096;
  bool executed = row && row->support == sys::Support::Executed && !e.getRefused() && !failed;
  if (t.park == ReplayTask::Park::InKernel) {
    // An executed blocking syscall (vfork) started at its SyscallEnter event.
    waitSyscallExit(t);
    fixParentTid(t);
    t.task.mutableRegs().setResult(e.getResult());
    t.park = ReplayTask::Park::Resumable;
    t.lastExecutedNumber = e.getNumber();
    return;
  }
  reachSeccomp(t, describeRecordedSyscall(e));
  checkSyscallMatches(t, e.getNumber(), e.getArgs(), e.getStrings());
  if (row && row->hook == sys::Hook::SigSuspend && !e.getRefused()) {
    // Only a signal ends it, and it must then really wait with its
    // temporary mask: decided at the next event (INJECT_AT_SYSCALL_EXIT).
    t.skipArgs = t.task.regs().syscallArgs();
    t.skipNumber = e.getNumber();
    t.skipResult = e.getResult();
    t.skipIsSigsuspend = true;
    t.park = ReplayTask::Park::SkipPending;
    return;
  }

  if (!executed) {
    for (auto w : e.getWrites())
      t.task.write(w.getAddress(), w.getData().begin(), w.getData().size());
    echoOutput(t, e);
    t.skipArgs = t.task.regs().syscallArgs();
    t.skipNumber = e.getNumber();
    t.skipResult = e.getResult();
    t.skipIsSigsuspend = false;
    t.park = ReplayTask::Park::SkipPending;
    return;
  }

  switch (row->hook) {
    case sys::Hook::Mmap:
      applyMmap(t, e);
      break;
    case sys::Hook::ShmAt:
      applyShmAt(t, e);
      for (auto w : e.getWrites())
        t.task.write(w.getAddress(), w.getData().begin(), w.getData().size());
      break;
    case sys::Hook::ShmDt:
      applyShmDt(t, e);
      break;
    case sys::Hook::Clone:
      runForkLike(t, e.getNewTask());
      waitSyscallExit(t);
      fixParentTid(t);
      t.task.mutableRegs().setResult(e.getResult());
      break;
    default: {
      if (row->hook == sys::Hook::Mremap && static_cast<uint64_t>(e.getResult()) != e.getArgs()[0]) {
        Registers& r = t.task.mutableRegs();
        r.setSyscallArg(3, r.syscallArgs()[3] | MREMAP_MAYMOVE | MREMAP_FIXED);
        r.setSyscallArg(4, static_cast<uint64_t>(e.getResult()));
      }
      t.task.resume(Task::Resume::Syscall);
      waitSyscallExit(t);
      int64_t got = t.task.regs().result();
      if (row->flags & sys::kResultFromTrace) {
        t.task.mutableRegs().setResult(e.getResult());
      } else if (got != e.getResult()) {
        diverge(t, fmt::format("{} to return {:#x}", row->name, e.getResult()),
                fmt::format("got {:#x}", got));
      }
      for (auto w : e.getWrites())
        t.task.write(w.getAddress(), w.getData().begin(), w.getData().size());
    }
  }
  t.lastExecutedNumber = e.getNumber();
  t.park = ReplayTask::Park::Resumable;
}

user_regs_struct ReplaySession::rawRegisters(schema::Registers::Reader r) {
  user_regs_struct raw{};
  std::memcpy(&raw, r.getRaw().begin(), std::min(sizeof raw, r.getRaw().size()));
  return raw;
}

// A free page within reach of a rel32 jump from `ip`, or 0.
static uint64_t freePageNear(const std::vector<MapEntry>& maps, uint64_t ip) {
  constexpr uint64_t kReach = (1ull << 31) - (1ull << 20);
  constexpr uint64_t kLowest = 0x10000, kHighest = 0x7ffffffff000;
  uint64_t best = 0, bestDistance = ~0ull;
  uint64_t previousEnd = kLowest;
  auto consider = [&](uint64_t gapStart, uint64_t gapEnd) {
    if (gapEnd <= gapStart || gapEnd - gapStart < 2 * 4096) return;
    // Keep a page of distance from both neighbours.
    uint64_t lo = gapStart + 4096, hi = gapEnd - 2 * 4096;
    uint64_t candidate = std::clamp(ip & ~uint64_t{4095}, lo, hi);
    uint64_t distance = candidate > ip ? candidate - ip : ip - candidate;
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  };
  for (const auto& m : maps) {
    consider(previousEnd, std::min(m.start, kHighest));
    previousEnd = std::max(previousEnd, m.end);
  }
  consider(previousEnd, kHighest);
  return bestDistance < kReach ? best : 0;
}

// Stops the task at the first execution of expected.rip whose registers all
// equal `expected`: plants a conditional breakpoint there (tracee/code_patch.h)
// and runs the task into it.
std::vector<MemoryCheck> ReplaySession::memoryChecks(capnp::List<schema::MemWrite>::Reader list) {
  std::vector<MemoryCheck> out;
  for (auto w : list) {
    MemoryCheck c{w.getAddress(), 0};
    std::memcpy(&c.value, w.getData().begin(), std::min<size_t>(8, w.getData().size()));
    out.push_back(c);
  }
  return out;
}

void ReplaySession::reachPoint(ReplayTask& t, const user_regs_struct& expected,
                               const std::vector<MemoryCheck>& memory, const std::string& what) {
  using Park = ReplayTask::Park;
  StraySignals strays;
  // Bring the task to a stop from which rec can run syscalls in it.
  if (t.park == Park::Initial) {
    advanceInitial(t);
  } else if (t.park == Park::SkipPending) {
    skipToSyscallExit(t.task, t.skipResult, strays);
    if (t.skipResult >= -516 && t.skipResult <= -512) t.task.mutableRegs().setSyscallNumber(t.skipNumber);
    t.park = Park::Resumable;
  } else if (t.park != Park::Resumable) {
    throw RecError(kExitBadTrace, fmt::format("rec: event #{}: a point in user code for a task "
                                              "inside a syscall", eventIndex_));
  }
  bool hasPending = t.pendingSignal != 0;
  siginfo_t pendingInfo{};
  if (hasPending) pendingInfo = t.task.siginfo();

  uint64_t ip = expected.rip;
  uint8_t code[kCodeWindow] = {};
  size_t n = t.task.read(ip, code, sizeof code);
  auto length = patchableLength(std::span<const uint8_t>(code, n), ip);
  uint64_t page = freePageNear(readMaps(t.task.tid()), ip);
  if (!length || !page)
    diverge(t, fmt::format("to reach {} at {:#x}", what, ip), "has no patchable code there");
  auto trampoline = buildTrampoline(page, ip, std::span<const uint8_t>(code, n), *length, expected,
                                    memory);
  if (!trampoline)
    diverge(t, fmt::format("to reach {} at {:#x}", what, ip), "has no relocatable code there");
  int64_t mapped = remoteSyscall(t.task, SYS_mmap,
                                 {page, kTrampolineSize, PROT_READ | PROT_EXEC,
                                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                                  static_cast<uint64_t>(-1), 0},
                                 strays);
  if (mapped != static_cast<int64_t>(page))
    throw RecError(kExitInternal, fmt::format("rec: cannot map a trampoline at {:#x}", page));
  t.task.write(page, trampoline->page.data(), trampoline->page.size());
  t.task.write(ip, trampoline->jump.data(), trampoline->jump.size());

  if (hasPending) t.task.setSiginfo(pendingInfo);
  t.task.resume(Task::Resume::Cont, std::exchange(t.pendingSignal, 0));
  for (;;) {
    Stop stop = t.task.wait();
    if (stop.kind == StopKind::Signal) {
      siginfo_t info = t.task.siginfo();
      if (stop.signal == SIGTRAP && t.task.regs().ip() == trampoline->trapIp) break;
      if (!isSynchronousFault(stop.signal, info)) {
        t.task.resume(Task::Resume::Cont);  // a replay-time signal, not the recording's
        continue;
      }
    } else if (stop.kind == StopKind::GroupStop) {
      t.task.resume(Task::Resume::Cont);
      continue;
    }
    t.task.write(ip, code, *length);
    if (stop.kind == StopKind::Exited) {
      t.park = Park::Dead;
      throw RecError(kExitDivergence,
                     fmt::format("rec: replay diverged at event #{} (task {}): expected to reach "
                                 "{} at {:#x}, but the program {}",
                                 eventIndex_, t.recordedTid, what, ip, describeStop(stop)));
    }
    std::string actual = stop.kind == StopKind::Seccomp ? "made a syscall"
                         : stop.kind == StopKind::Signal
                             ? fmt::format("received {}", sys::signalName(stop.signal))
                             : describeStop(stop);
    diverge(t, fmt::format("to reach {} at {:#x}", what, ip), actual);
  }
  // There: take the breakpoint away again and stand exactly at the point.
  t.task.write(ip, code, *length);
  Registers regs(expected);
  regs.raw().eflags = t.task.regs().raw().eflags;
  t.task.setRegs(regs);
  remoteSyscall(t.task, SYS_munmap, {page, kTrampolineSize, 0, 0, 0, 0}, strays);
  t.pendingSignal = 0;
  t.park = Park::Resumable;
}

void ReplaySession::advanceInitial(ReplayTask& t) {
  for (;;) {
    Stop stop = t.task.wait();
    if (stop.kind == StopKind::GroupStop) break;
    if (stop.kind == StopKind::Exited) diverge(t, "a new task to start", describeStop(stop));
    t.task.resume(Task::Resume::Cont);
  }
  if (t.childTidAddress) {
    int32_t value = t.recordedTid;
    t.task.write(std::exchange(t.childTidAddress, 0), &value, sizeof value);
  }
  t.park = ReplayTask::Park::Resumable;
}

// The signal mask a syscall installs while it waits, when it has one.
std::optional<uint64_t> ReplaySession::temporarySignalMask(ReplayTask& t) {
  const auto& a = t.skipArgs;
  switch (t.skipNumber) {
    case SYS_rt_sigsuspend:
      return a[0];
    case SYS_ppoll:
      return a[3] ? std::optional<uint64_t>(a[3]) : std::nullopt;
    case SYS_epoll_pwait:
    case SYS_epoll_pwait2:
      return a[4] ? std::optional<uint64_t>(a[4]) : std::nullopt;
    case SYS_pselect6: {
      uint64_t pair[2] = {0, 0};  // {const sigset_t*, size}
      if (a[5] && t.task.read(a[5], pair, sizeof pair) == sizeof pair && pair[0]) return pair[0];
      return std::nullopt;
    }
    default:
      return std::nullopt;
  }
}

void ReplaySession::onSignal(ReplayTask& t, schema::SignalEvent::Reader e) {
  int signo = e.getSigno();
  siginfo_t info{};
  std::memcpy(&info, e.getSiginfo().begin(), std::min(sizeof info, e.getSiginfo().size()));
  std::string name(sys::signalName(signo));
  switch (e.getDisposition()) {
    case schema::SignalDisposition::INJECT_BEFORE_SYSCALL: {
      reachSeccomp(t, fmt::format("a syscall (to deliver {} there)", name));
      int nr = t.task.regs().syscallNumber();
      StraySignals strays;
      skipToSyscallExit(t.task, 0, strays);
      Registers& r = t.task.mutableRegs();
      r.setIp(r.ip() - 2);
      r.setResult(nr);
      r.setSyscallNumber(-1);
      t.pendingSignal = signo;
      t.awaitingSignal = signo;
      t.park = ReplayTask::Park::Resumable;
      return;
    }
    case schema::SignalDisposition::INJECT_AT_SYSCALL_EXIT: {
      // Complete the syscall the task sits in and deliver the signal as it
      // returns, so the kernel applies the same EINTR/SA_RESTART rules.
      std::optional<uint64_t> mask;
      if (t.park == ReplayTask::Park::SkipPending) mask = temporarySignalMask(t);
      if (mask || (t.park == ReplayTask::Park::SkipPending && t.skipIsSigsuspend)) {
        // The syscall ran with a temporary signal mask (sigsuspend, pselect6,
        // ppoll, epoll_pwait) that let this signal in: wait for real in
        // rt_sigsuspend with that mask, the signal queued first so it ends
        // the wait at once, and the kernel restores the mask as it did.
        ::syscall(SYS_tgkill, t.task.tgid(), t.task.tid(), signo);
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
        r.setSyscallNumber(t.skipNumber);
        t.pendingSignal = 0;
      } else if (t.park == ReplayTask::Park::SkipPending) {
        StraySignals strays;
        skipToSyscallExit(t.task, t.skipResult, strays);
        t.task.mutableRegs().setSyscallNumber(t.skipNumber);
        t.pendingSignal = signo;
      } else if (t.park == ReplayTask::Park::Resumable && t.lastExecutedNumber >= 0) {
        t.task.mutableRegs().setSyscallNumber(t.lastExecutedNumber);
        t.pendingSignal = signo;
      } else {
        throw RecError(kExitBadTrace, fmt::format("rec: event #{}: signal at a syscall exit "
                                                  "without that syscall", eventIndex_));
      }
      t.park = ReplayTask::Park::Resumable;
      t.awaitingSignal = signo;
      break;
    }
    case schema::SignalDisposition::DELIVERED:
      if (!e.getSynchronous()) t.awaitingSignal = signo;
      break;
    case schema::SignalDisposition::AT_POINT: {
      reachPoint(t, rawRegisters(e.getRegisters()), memoryChecks(e.getMemory()),
                 fmt::format("where {} arrived", name));
      t.task.setSiginfo(info);
      t.pendingSignal = signo;
      return;
    }
  }
  Stop stop = advance(t);
  if (stop.kind != StopKind::Signal || stop.signal != signo) {
    std::string actual = stop.kind == StopKind::Seccomp
                             ? "made a syscall"
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
  if (!e.getSynchronous()) t.task.setSiginfo(info);
  t.awaitingSignal = 0;
  t.pendingSignal = signo;
  t.park = ReplayTask::Park::Resumable;
}

void ReplaySession::onRdtsc(ReplayTask& t, schema::RdtscEvent::Reader e) {
  Stop stop = advance(t);
  if (stop.kind != StopKind::Signal || stop.signal != SIGSEGV || t.task.regs().ip() != e.getIp())
    diverge(t, fmt::format("rdtsc at {:#x}", e.getIp()), describeStop(stop));
  Registers& r = t.task.mutableRegs();
  r.raw().rax = e.getValue() & 0xffffffff;
  r.raw().rdx = e.getValue() >> 32;
  if (e.getIsRdtscp()) r.raw().rcx = e.getAux();
  r.setIp(r.ip() + (e.getIsRdtscp() ? 3 : 2));
  t.pendingSignal = 0;
  t.park = ReplayTask::Park::Resumable;
}

void ReplaySession::remapExecFiles(ReplayTask& t, schema::ExecEvent::Reader e) {
  // The kernel mapped the binary (from our blob file) and its interpreter
  // (from this machine). Where this machine's file differs from the
  // recording's, map the recorded one over it, with its initial data.
  std::vector<MapEntry> here = readMaps(t.task.tid());
  StraySignals strays;
  for (auto m : e.getMappings()) {
    format::BlobHash hash = hashOf(m.getBlobHash());
    bool same = false;
    for (const auto& h : here) {
      if (h.start != m.getStart() || h.end != m.getEnd() || h.offset != m.getOffset()) continue;
      if (blobs_->holds(h.inode, hash)) same = true;
      else if (h.path == m.getPath().cStr()) {
        // Same path: same contents unless the file changed since recording.
        try {
          std::vector<std::byte> content;
          std::string mapFile = h.path;
          int fd = ::open(mapFile.c_str(), O_RDONLY | O_CLOEXEC);
          if (fd >= 0) {
            struct stat st;
            if (::fstat(fd, &st) == 0) {
              content.resize(static_cast<size_t>(st.st_size));
              if (::pread(fd, content.data(), content.size(), 0) == st.st_size)
                same = format::BlobHash::of(content) == hash;
            }
            ::close(fd);
          }
        } catch (...) {
        }
      }
    }
    if (same) continue;
    const std::string& file = blobs_->path(hash, m.getPath());
    uint64_t pathAddr = putScratchString(t.task, file);
    int64_t fd = remoteSyscall(t.task, SYS_openat,
                               {static_cast<uint64_t>(AT_FDCWD), pathAddr, O_RDONLY | O_CLOEXEC, 0,
                                0, 0},
                               strays);
    if (fd < 0) throw RecError(kExitInternal, fmt::format("rec: cannot open {} in the tracee", file));
    int64_t got = remoteSyscall(t.task, SYS_mmap,
                                {m.getStart(), m.getEnd() - m.getStart(), m.getProt(),
                                 MAP_PRIVATE | MAP_FIXED, static_cast<uint64_t>(fd), m.getOffset()},
                                strays);
    remoteSyscall(t.task, SYS_close, {static_cast<uint64_t>(fd), 0, 0, 0, 0, 0}, strays);
    if (got != static_cast<int64_t>(m.getStart()))
      throw RecError(kExitUnsupported,
                     fmt::format("rec: cannot map {} at {:#x} as recorded", m.getPath().cStr(),
                                 m.getStart()));
    for (auto w : e.getWritableData())
      if (w.getAddress() == m.getStart())
        t.task.write(w.getAddress(), w.getData().begin(), w.getData().size());
  }
}

// execve in a thread other than the leader: the kernel ends the other
// threads (rec, their tracer, reaps them so the exec can go on) and gives the
// exec'ing thread the leader's id. Returns once the exec stop was seen.
void ReplaySession::execFromThread(ReplayTask& t, int recordedLeader) {
  pid_t leader = t.task.tgid();
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, __WALL);
    if (pid < 0) {
      if (errno == EINTR) continue;
      throwErrno(kExitInternal, "waitpid");
    }
    Stop stop = decodeStop(status);
    if (pid == leader && stop.kind == StopKind::Exec) break;
    ReplayTask* other = nullptr;
    for (auto& [id, o] : tasks_)
      if (o->task.tid() == pid && o.get() != &t) other = o.get();
    if (stop.kind == StopKind::Exited) {
      if (other) {
        other->park = ReplayTask::Park::Dead;
        other->deadStatus = status;
      }
      continue;
    }
    ::ptrace(PTRACE_CONT, pid, nullptr, nullptr);
  }
  // The exec'ing thread now is the leader, under both ids.
  auto self = std::move(tasks_[t.recordedTid]);
  tasks_.erase(t.recordedTid);
  if (auto old = tasks_.find(recordedLeader); old != tasks_.end()) old->second->park = ReplayTask::Park::Dead;
  tasks_[recordedLeader] = std::move(self);
  t.recordedTid = recordedLeader;
  t.task.setTid(leader);
  t.task.noteStopped();
  t.task.resetMemory();
  t.task.resume(Task::Resume::Syscall);
}

void ReplaySession::onExec(ReplayTask& t, schema::ExecEvent::Reader e) {
  bool initial = t.park == ReplayTask::Park::Seccomp && t.recordedTid == initialRecordedTid_ &&
                 eventIndex_ == 0;
  reachSeccomp(t, fmt::format("execve(\"{}\")", e.getFilename().cStr()));
  int nr = t.task.regs().syscallNumber();
  if (nr != SYS_execve && nr != SYS_execveat)
    diverge(t, fmt::format("execve(\"{}\")", e.getFilename().cStr()),
            fmt::format("made syscall {}", nr));
  if (!initial) {
    // Run the binary stored in the trace, whatever is on disk now.
    std::string exePath = e.getFilename();
    for (auto m : e.getMappings())
      if (m.getBlobHash() == e.getExeBlob()) exePath = m.getPath();
    uint64_t path = putScratchString(t.task, blobs_->path(hashOf(e.getExeBlob()), exePath));
    Registers& r = t.task.mutableRegs();
    if (nr == SYS_execve) {
      r.setSyscallArg(0, path);
    } else {
      r.setSyscallArg(0, static_cast<uint64_t>(AT_FDCWD));
      r.setSyscallArg(1, path);
      r.setSyscallArg(4, r.syscallArgs()[4] & ~uint64_t{AT_EMPTY_PATH});
    }
  }
  t.task.resume(Task::Resume::Syscall);
  if (e.getBecomesTid() != 0 && e.getBecomesTid() != t.recordedTid) execFromThread(t, e.getBecomesTid());
  for (;;) {
    Stop stop = t.task.wait();
    if (stop.kind == StopKind::Exec) {
      t.task.resetMemory();
      t.task.resume(Task::Resume::Syscall);
      continue;
    }
    if (stop.kind == StopKind::SyscallStop) break;
    if (stop.kind == StopKind::Signal || stop.kind == StopKind::GroupStop) {
      t.task.resume(Task::Resume::Syscall);
      continue;
    }
    diverge(t, "exec to succeed", describeStop(stop));
  }
  if (t.task.regs().result() != 0)
    throw RecError(kExitUnsupported,
                   fmt::format("rec: cannot execute the recorded {} (error {})",
                               e.getFilename().cStr(), t.task.regs().result()));
  StraySignals strays;
  installScratchPage(t.task, strays);
  remapExecFiles(t, e);
  // The recorded initial stack (argv, environment, auxv with AT_RANDOM and
  // the vDSO hidden) and registers, so the program starts from the very
  // state it started from when recorded.
  uint64_t stackStart = e.getStackStart();
  bool covered = false;
  for (const auto& m : readMaps(t.task.tid()))
    if (m.path == "[stack]" && stackStart >= m.start && stackStart + e.getStackImage().size() <= m.end)
      covered = true;
  if (!covered)
    throw RecError(kExitUnsupported, "rec: the initial stack cannot be laid out as recorded");
  t.task.write(stackStart, e.getStackImage().begin(), e.getStackImage().size());
  user_regs_struct raw{};
  std::memcpy(&raw, e.getRegisters().getRaw().begin(),
              std::min(sizeof raw, e.getRegisters().getRaw().size()));
  t.task.setRegs(Registers(raw));
  t.park = ReplayTask::Park::Resumable;
}

void ReplaySession::onExit(ReplayTask& t, schema::ExitEvent::Reader e) {
  int recorded = e.getWaitStatus();
  if (WIFSIGNALED(recorded) && WTERMSIG(recorded) == SIGKILL && !t.exiting) {
    // Killed from outside during recording (or by rec when it was
    // interrupted): nothing in the replayed program will do it.
    ::kill(t.task.tid(), SIGKILL);
  }
  // A thread-group leader whose threads live on stays a zombie until they
  // exit: reach its exit, but do not wait for its death.
  bool leaderWithThreads = false;
  for (auto& [id, other] : tasks_)
    if (other.get() != &t && other->park != ReplayTask::Park::Dead &&
        other->task.tgid() == t.task.tgid() && t.task.tid() == t.task.tgid())
      leaderWithThreads = true;
  for (;;) {
    Stop stop = t.exiting ? t.task.wait() : advance(t);
    if (stop.kind == StopKind::ExitEvent) {
      int status = static_cast<int>(t.task.eventMessage());
      if (!sameStatus(status, recorded))
        throw RecError(kExitDivergence,
                       fmt::format("rec: replay diverged at event #{} (task {}): expected {}, got {}",
                                   eventIndex_, t.recordedTid, statusText(recorded),
                                   statusText(status)));
      t.exiting = true;
      t.task.resume(Task::Resume::Cont);
      if (leaderWithThreads) {
        t.park = ReplayTask::Park::Dead;
        zombies_.push_back(t.task.tid());
        break;
      }
      continue;
    }
    if (stop.kind == StopKind::Exited) {
      t.park = ReplayTask::Park::Dead;
      if (!t.exiting && !sameStatus(stop.status, recorded))
        throw RecError(kExitDivergence,
                       fmt::format("rec: replay diverged at event #{} (task {}): expected {}, got {}",
                                   eventIndex_, t.recordedTid, statusText(recorded),
                                   statusText(stop.status)));
      break;
    }
    if (t.exiting) continue;  // nothing else can happen to a dying task
    diverge(t, statusText(recorded),
            stop.kind == StopKind::Seccomp ? "made a syscall" : describeStop(stop));
  }
  if (t.recordedTid == initialRecordedTid_) {
    initialStatus_ = recorded;
    initialExited_ = true;
  }
}

}  // namespace rec
