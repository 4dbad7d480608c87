// exec (stored binaries, initial stack, the hidden vDSO), fork-like task
// creation and exits, including execve from a thread other than the leader.

#include <elf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <x86intrin.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "code_patch.h"
#include "errors.h"
#include "exit_codes.h"
#include "process_maps.h"
#include "record_session.h"
#include "record_task.h"
#include "remote_syscall.h"
#include "scheduler.h"
#include "seccomp_filter.h"
#include "signals.h"
#include "spawn.h"
#include "syscall_table.h"

namespace rec {

// A sibling of `t` is in execve: the kernel is ending the other threads.
bool RecordSession::siblingExecing(const RecordTask& t) const {
  return std::any_of(tasks_.begin(), tasks_.end(), [&](const auto& kv) {
    const RecordTask& o = *kv.second;
    const sys::SyscallRow* row = sys::findSyscall(static_cast<int>(o.nr));
    return &o != &t && o.task.tgid() == t.task.tgid() &&
           o.state() == RecordTask::State::InSyscall && row && row->hook == sys::Hook::Execve;
  });
}

void RecordSession::forget(RecordTask& t) {
  scheduler_->forget(t);
  std::erase(unannounced_, &t);
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
    execer->setState(RecordTask::State::InSyscall);
    scheduler_->adopt(*execer);
  }
  execer->task.resetMemory();
  execer->execSeen = true;
  execer->task.resume(Task::Resume::Syscall);
}

// The pages of a writable file mapping whose contents differ from the file
// (zeros past its end), as (address, bytes) runs. Right after exec that is
// the page where the data segment ends and the kernel zeroed the start of
// .bss, not the megabytes a data segment can span (python3: 1.3 MB).
void RecordSession::pagesUnlikeFile(RecordTask& t, const MapEntry& m, const std::string& readPath,
                                    std::vector<std::pair<uint64_t, std::vector<std::byte>>>& out) {
  if (writtenPages(t, m, out)) return;
  comparePagesWithFile(t, m, readPath, out);
}

// A private file page the kernel or the task wrote to became an anonymous
// copy: /proc/PID/pagemap tells which, without reading the mapping (python3:
// 330 pages, whose first touch from rec cost ~3 ms) or the file. False when
// pagemap cannot be read.
bool RecordSession::writtenPages(RecordTask& t, const MapEntry& m,
                                 std::vector<std::pair<uint64_t, std::vector<std::byte>>>& out) {
  constexpr uint64_t kPresent = 1ull << 63, kSwapped = 1ull << 62, kFileOrShared = 1ull << 61;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (!t.pagemap.valid()) {
    t.pagemap.reset(
        ::open(fmt::format("/proc/{}/pagemap", t.task.tid()).c_str(), O_RDONLY | O_CLOEXEC));
    if (!t.pagemap.valid()) return false;
  }
  size_t pages = static_cast<size_t>((m.end - m.start) / page);
  std::vector<uint64_t> entries(pages);
  size_t bytes = pages * sizeof(uint64_t);
  if (::pread(t.pagemap.get(), entries.data(), bytes, static_cast<off_t>(m.start / page * 8)) !=
      static_cast<ssize_t>(bytes))
    return false;
  size_t first = out.size();
  bool inRun = false;
  for (size_t i = 0; i < pages; ++i) {
    uint64_t e = entries[i];
    bool written = (e & kSwapped) || ((e & kPresent) && !(e & kFileOrShared));
    if (written && !inRun) out.emplace_back(m.start + i * page, std::vector<std::byte>());
    if (written) out.back().second.resize(out.back().second.size() + page);
    inRun = written;
  }
  for (size_t i = first; i < out.size(); ++i) {
    auto& [address, data] = out[i];
    if (t.task.read(address, data.data(), data.size()) != data.size())
      throw RecError(kExitInternal, fmt::format("rec: cannot read {} at {:#x}", m.path, address));
  }
  return true;
}

void RecordSession::comparePagesWithFile(
    RecordTask& t, const MapEntry& m, const std::string& readPath,
    std::vector<std::pair<uint64_t, std::vector<std::byte>>>& out) {
  // Compared a window at a time through two small buffers: no megabyte-sized
  // buffers to fault in.
  constexpr size_t kWindow = 64 << 10;
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  static std::byte memory[kWindow], file[kWindow];
  ScopedFd fd(::open(readPath.c_str(), O_RDONLY | O_CLOEXEC));
  bool inRun = false;
  for (uint64_t window = m.start; window < m.end; window += kWindow) {
    size_t length = std::min<uint64_t>(kWindow, m.end - window);
    if (t.task.read(window, memory, length) != length)
      throw RecError(kExitInternal, fmt::format("rec: cannot read {} at {:#x}", m.path, window));
    // What cannot be read compares as zeros.
    ssize_t got = fd.valid() ? ::pread(fd.get(), file, length,
                                       static_cast<off_t>(m.offset + (window - m.start)))
                             : 0;
    std::memset(file + std::max<ssize_t>(got, 0), 0,
                length - static_cast<size_t>(std::max<ssize_t>(got, 0)));
    for (size_t at = 0; at < length; at += page) {
      size_t n = std::min(page, length - at);
      bool differs = std::memcmp(memory + at, file + at, n) != 0;
      if (differs && !inRun) out.emplace_back(window + at, std::vector<std::byte>());
      if (differs) out.back().second.insert(out.back().second.end(), memory + at, memory + at + n);
      inRun = differs;
    }
  }
}

// The CPU of rec's tracer (cpus_[0]) counts one executing task fewer when
// rec places a process: a stop there costs no cross-CPU wake-ups (~45 us
// each on this VM). make -j2, idle, 15-25 rounds: a bias of one 141-145 ms
// against 150-155 ms with none and 190 ms counting the tracer as a task.
constexpr int kTracerCpuBias = 1;

// The CPU for a process that execs: the one with the fewest tasks of other
// processes executing or about to (blocked ones, a make or a shell waiting
// for its children, do not count; nor does the process that forked it,
// which usually waits for it next: a shell loop's /bin/true stays with the
// shell), its own CPU unless another has fewer (docs/parallel.md "CPU
// placement"). A fork's child stays with its parent.
int RecordSession::cpuAtExec(const RecordTask& t) const {
  if (cpus_.size() < 2 || t.cpu < 0) return t.cpu;
  pid_t parent = 0;
  if (auto it = tasks_.find(t.forkedBy); t.forkedBy && it != tasks_.end())
    parent = it->second->task.tgid();
  std::vector<int> busy(cpus_.size(), 0);
  for (const auto& [otherTid, o] : tasks_) {
    if (o->task.tgid() == t.task.tgid() || o->task.tgid() == parent || o->cpu < 0) continue;
    auto state = o->state();
    bool active = state == RecordTask::State::Running || state == RecordTask::State::Ready ||
                  state == RecordTask::State::Newborn ||
                  (state == RecordTask::State::InSyscall && scheduler_->isCurrent(*o));
    auto at = std::find(cpus_.begin(), cpus_.end(), o->cpu);
    if (active && at != cpus_.end()) ++busy[static_cast<size_t>(at - cpus_.begin())];
  }
  busy[0] -= kTracerCpuBias;
  auto own = std::find(cpus_.begin(), cpus_.end(), t.cpu);
  size_t best = own != cpus_.end() ? static_cast<size_t>(own - cpus_.begin()) : 0;
  for (size_t i = 0; i < cpus_.size(); ++i)
    if (busy[i] < busy[best]) best = i;
  return cpus_[best];
}

// At the exec stop, before the new image runs an instruction: every CPUID
// it executes runs on the CPU the Exec event names.
void RecordSession::pinAtExec(RecordTask& t) {
  t.moveWanted = false;
  int cpu = cpuAtExec(t);
  if (cpu != t.cpu && pinTask(t.task.tid(), cpu)) t.cpu = cpu;
}

// How long a task computes in user code on a shared CPU before rec moves
// its process to a free one: longer than ld.so's gaps between start-up
// syscalls, short against a compiler's run.
constexpr auto kComputeBeforeMove = std::chrono::milliseconds(2);

// A CPU the process of `t` may move to while it runs: `t` shares its CPU
// with another process's task that executes or waits to, and some other CPU
// has no task executing. Only single-threaded processes move (one thread
// to pin, as at exec). -1: none.
int RecordSession::freeCpuFor(const RecordTask& t) const {
  if (cpus_.size() < 2 || t.cpu < 0) return -1;
  std::vector<int> executing(cpus_.size(), 0);
  bool shared = false;
  for (const auto& [tid, o] : tasks_) {
    if (o.get() == &t || !o->alive()) continue;
    if (o->task.tgid() == t.task.tgid()) return -1;  // a thread of its own
    auto at = std::find(cpus_.begin(), cpus_.end(), o->cpu);
    if (at == cpus_.end()) continue;
    // One asleep in a buffered call (a pipe read) holds its lane but not
    // its CPU: a ping-pong's two processes stay together, as they must
    // (across CPUs each round costs two wake-ups: 10x the time natively).
    const bool runs = scheduler_->isCurrent(*o) && !sysbuf::blockArmed(o->sysbuf.get());
    if (runs) ++executing[static_cast<size_t>(at - cpus_.begin())];
    if (o->cpu == t.cpu && (runs || o->state() == RecordTask::State::Ready)) shared = true;
  }
  executing[0] -= kTracerCpuBias;
  if (!shared) return -1;
  for (size_t i = 0; i < cpus_.size(); ++i)
    if (cpus_[i] != t.cpu && executing[i] <= 0) return cpus_[i];
  return -1;
}

// Asks each task that has run user code a while on a CPU it shares, while
// another CPU idles, to stop at its next syscall (a buffered one becomes
// traced), where moveAtSyscallExit moves it. Moving at a syscall keeps
// replay exact: replay moves the process at the same event, so every
// instruction runs on the same CPU in both. A process moves only after it
// computed for a while: its start-up stops (exec, ld.so's mmaps) are made
// on the CPU it was born on, rec's own, where a stop costs no cross-CPU
// wake-ups (~45 us each on this VM). Whether a task is still worth a
// tick: one that runs shares a CPU while another idles.
bool RecordSession::askMoves() {
  const std::vector<RecordTask*>& executing = scheduler_->executing();
  // Sharing a CPU takes a second task executing or waiting to: a lone
  // program is not ticked for this.
  if (!cpuMoves_ || cpus_.size() < 2 || (executing.size() < 2 && !scheduler_->othersWaiting()))
    return false;
  bool pending = false;
  const auto now = Clock::now();
  for (RecordTask* t : executing) {
    if (t->state() != RecordTask::State::Running || !t->sysbuf || freeCpuFor(*t) < 0) continue;
    pending = true;
    if (t->moveWanted || now - t->runningSince < kComputeBeforeMove) continue;
    if (sysbuf::stopAtNextCall(*t->sysbuf)) t->moveWanted = true;
  }
  return pending;
}

void RecordSession::moveAtSyscallExit(RecordTask& t, schema::SyscallEvent::Builder event) {
  t.moveWanted = false;
  int cpu = freeCpuFor(t);
  if (cpu < 0 || !pinTask(t.task.tid(), cpu)) return;
  t.cpu = cpu;
  event.setProcessCpu(cpu);
  ++processMoves_;
}

void RecordSession::completeExec(RecordTask& t) {
  pid_t tid = t.task.tid();
  pinAtExec(t);
  t.pagemap.reset();  // an open pagemap still shows the address space before exec
  StraySignals strays;
  installScratchPage(t.task, strays, timeShim_ || syscallBuffer_,
                     bitmapHas(tracedBitmap_, SYS_mmap));
  absorbStrays(t, strays);
  auto space = std::make_shared<TimeShimSpace>();
  // The new image's buffer space (t.sysbuf still holds the old one's calls,
  // written before the Exec event).
  auto sysbufSpace = syscallBuffer_ ? std::make_shared<SysbufSpace>() : nullptr;
  // A filter the program installed survives exec; the buffer's calls would pass it.
  if (sysbufSpace && t.seccompMode != 0) sysbufSpace->disabled = true;
  std::vector<std::pair<SysbufPatch, bool>> prepatched;

  capnp::MallocMessageBuilder msg;
  auto e = msg.initRoot<schema::Event>().initExec();
  e.setFilename(t.strings.empty() ? "" : t.strings[0]);
  std::string exePath = readLink(fmt::format("/proc/{}/exe", tid));
  const format::BlobHash exeBlob = blobs_->storePath(fmt::format("/proc/{}/exe", tid), exePath);
  auto exeHash = exeBlob.bytes();
  if (sysbufSpace) sysbufSpace->program = exeBlob.hex();
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
    std::string readPath = byRange;
    try {
      hash = blobs_->storePath(byRange, m.path);
    } catch (const RecError&) {
      readPath = m.path;  // map_files needs CAP_SYS_ADMIN
      hash = blobs_->storePath(m.path, m.path);
    }
    patchRdtsc(t, hash, readPath, m.start, m.end, m.offset, m.prot);
    if (sysbufSpace && !m.shared)
      prepatchMapping(t, *sysbufSpace, space.get(), hash.hex(), readPath, m.start, m.end, m.offset, m.prot,
                      prepatched);
    auto bytes = hash.bytes();
    out.setBlobHash(asData(bytes.data(), bytes.size()));
    if (m.prot & PROT_WRITE) pagesUnlikeFile(t, m, readPath, writable);
  }
  auto data = e.initWritableData(static_cast<unsigned>(writable.size()));
  for (unsigned i = 0; i < writable.size(); ++i) {
    data[i].setAddress(writable[i].first);
    data[i].setData(asData(writable[i].second.data(), writable[i].second.size()));
  }

  // The initial stack, with the time shim in the vDSO's place (or, without
  // it, the vDSO hidden: libc then makes real syscalls for the time, which
  // rec records).
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
        if (timeShim_) {
          *word(index + 1) = kTimeShimImage;
          t.task.write(sp + (index + 1) * 8, word(index + 1), 8);
        } else {
          *word(index) = AT_IGNORE;
          t.task.write(sp + index * 8, word(index), 8);
        }
      }
    }
  }
  e.setStackStart(sp);
  e.setStackImage(asData(image.data(), image.size()));
  e.initRegisters().setRaw(asData(regs.raw()));
  auto argv = e.initArgv(static_cast<unsigned>(argvStrings.size()));
  for (unsigned i = 0; i < argvStrings.size(); ++i) argv.set(i, argvStrings[i]);
  e.setCpu(t.cpu);
  if (!prepatched.empty())
    writePatches(e.initBufferPatches(static_cast<unsigned>(prepatched.size())), prepatched);
  if (t.formerTid) {
    e.setBecomesTid(tid);
    emit(t, msg, std::exchange(t.formerTid, 0));
  } else {
    emit(t, msg);
  }
  // The threads the exec ended, in tid order: replay sees them die as it
  // replays the exec.
  for (auto& [otherTid, other] : tasks_) {
    if (other->task.tgid() != t.task.tgid()) continue;
    if (auto status = other->takeDeferredExit(RecordTask::ExitRecord::AfterExec)) {
      writeExit(*other, *status);
      other->setState(RecordTask::State::Dead);
    }
  }
  // After the Exec event, which carries the old image's last time answers.
  t.timeSpace = std::move(space);
  t.sysbuf = std::move(sysbufSpace);
  t.desched.reset();  // (its fd in the old image was close-on-exec)
  t.deschedTried = false;
  t.execSeen = false;
  // The mask survives exec; handlers become SIG_DFL (SIG_IGN stays).
  t.signalMask.reset();
  t.blockedTrapAction.clear();
  noteSignalMask(t);
  t.leftSyscallReturn();
  releaseVforkParent(t);
}

void RecordSession::onFork(RecordTask& t, const Stop& stop) {
  pid_t childTid = static_cast<pid_t>(t.task.eventMessage());
  uint64_t flags = sys::cloneFlags(t.nr, t.args[0]);
  RecordTask& child = taskFor(childTid);
  bool born = child.noteAnnouncedByParent();
  child.task.setTgid((flags & CLONE_THREAD) ? t.task.tgid() : childTid);
  child.fds = (flags & CLONE_FILES) ? t.fds : t.fds->copy();
  child.timeSpace = time_shim::forChild(t.timeSpace, t.task, child.task, flags);
  child.sysbuf = sysbuf::forChild(t.sysbuf, child.task, flags);
  if (child.sysbuf && child.sysbuf == t.sysbuf) updateBufferFdTables(*child.sysbuf);
  child.cpu = t.cpu;  // the kernel copies the affinity: a CPU for the process's life
  child.tscMode = t.tscMode;
  child.seccompMode = t.seccompMode;
  child.signalMask = t.signalMask;
  // Parallel recording: what shares memory stays shared in the child (a
  // MAP_SHARED mapping survives fork); the child waits for its fork event.
  child.sharesMemory = t.sharesMemory;
  child.forkHeld = parallel_;
  child.blockedTrapAction = t.blockedTrapAction;
  t.newTask = childTid;
  child.forkedBy = t.task.tid();
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
    e.setNewTaskCpu(child.cpu);
    attachMemoryDigest(t, msg, t.entryDigest, t.entryMasked);
    emit(t, msg);
    t.enterAnnounced = true;
    child.forkHeld = false;
  }
  if (born) scheduler_->makeReady(child);
  if (stopAtForkForPtracer(t, child, stop.event)) return;
  t.task.resume(Task::Resume::Syscall);
  if (vfork) scheduler_->release(t);
}

namespace {
// The syscall a task is in at its exit stop when that syscall sent SIGKILL
// to its own process (kill(getpid(), SIGKILL) and the like: a row whose
// Signal argument is SIGKILL and whose Pid argument before it names this
// task or its process), else -1. Only then does replay run the task up to
// that entry before killing it: a task SIGKILLed by another inside a
// syscall died where the other's events say.
int selfKillSyscall(Task& task) {
  int nr = static_cast<int>(task.regs().syscallNumber());
  const sys::SyscallRow* row = nr >= 0 ? sys::findSyscall(nr) : nullptr;
  if (!row) return -1;
  auto args = task.regs().syscallArgs();
  std::optional<uint64_t> target;
  for (size_t i = 0; i < row->args.size(); ++i) {
    if (row->args[i] == sys::Arg::Pid) target = args[i];
    if (row->args[i] != sys::Arg::Signal || args[i] != SIGKILL || !target) continue;
    auto pid = static_cast<pid_t>(*target);
    if (pid == task.tid() || pid == task.tgid()) return nr;
  }
  return -1;
}
}  // namespace

// The task is about to exit; its status is known now. The event is written
// here, before the kernel clears CLONE_CHILD_CLEARTID and wakes joiners, so
// that replay lets the task die before those joiners run on.
void RecordSession::onExitEvent(RecordTask& t) {
  int status = static_cast<int>(t.task.eventMessage());
  t.syscallAtDeath = selfKillSyscall(t.task);
  if (t.ptrace.tracer && (t.ptrace.options & PTRACE_O_TRACEEXIT)) {
    // PTRACE_O_TRACEEXIT: its emulated ptracer sees the exit stop first; the
    // exit goes on once it resumes the task (resumeFromPtraceStop).
    t.ptrace.options &= ~uint64_t{PTRACE_O_TRACEEXIT};
    t.ptrace.eventMessage = static_cast<uint64_t>(status);
    enterPtraceStop(t, EmulatedPtrace::Held::ExitStop,
                    ptraceStopStatus(SIGTRAP, PTRACE_EVENT_EXIT));
    return;
  }
  if (siblingExecing(t)) {
    // Ended by a sibling's execve: its exit is written after the Exec event,
    // because replay sees it die only when it replays that exec.
    t.deferExit(RecordTask::ExitRecord::AfterExec, status);
    t.task.resume(Task::Resume::Cont);
    t.setState(RecordTask::State::Exiting);
    scheduler_->release(t);
    return;
  }
  noteExit(t, status, true);
  t.task.resume(Task::Resume::Cont);
  bool leaderWithThreads = t.task.tid() == t.task.tgid() &&
                           std::any_of(tasks_.begin(), tasks_.end(), [&](const auto& kv) {
                             const RecordTask& o = *kv.second;
                             return &o != &t && o.task.tgid() == t.task.tgid() && o.alive();
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
  t.setState(RecordTask::State::Exiting);
  scheduler_->release(t);
}

void RecordSession::writeExit(RecordTask& t, int status) {
  if (!t.markExitWritten()) return;
  capnp::MallocMessageBuilder msg;
  auto e = msg.initRoot<schema::Event>().initExit();
  e.setWaitStatus(status);
  e.setThreadOnly(t.task.tid() != t.task.tgid());
  if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) e.setSyscallAtDeath(t.syscallAtDeath);
  emit(t, msg);
  if (t.task.tid() == initialTid_) initialStatus_ = status;
}

// Whether `t` ended its own life: in exit or exit_group, or by a fatal
// signal rec delivered to it. Otherwise a sibling's exit_group or fatal
// signal, or a SIGKILL from outside, is ending its whole thread group.
bool RecordSession::diesByItself(RecordTask& t, int status, bool atExitStop) const {
  // exit and exit_group run without a stop: the exit stop shows them.
  const sys::SyscallRow* row =
      atExitStop ? sys::findSyscall(static_cast<int>(t.task.regs().syscallNumber())) : nullptr;
  if (row && row->hook == sys::Hook::Exit) return true;
  return WIFSIGNALED(status) && t.lastResumeSignal() != 0 &&
         WTERMSIG(status) == t.lastResumeSignal();
}

// A task of `t`'s thread group whose exit is still to come and which is not
// itself waiting for another's: the one whose exit_group or fatal signal may
// be ending the group.
bool RecordSession::groupExitStillToCome(const RecordTask& t) const {
  return std::any_of(tasks_.begin(), tasks_.end(), [&](const auto& kv) {
    const RecordTask& o = *kv.second;
    return &o != &t && o.task.tgid() == t.task.tgid() && o.alive() &&
           o.exitRecord() == RecordTask::ExitRecord::NotWritten;
  });
}

// The exit of `t` is known. Replay runs each task to its exit in trace
// order, so the exits of a thread group ended by one of its threads
// (exit_group, a fatal signal) are written in an order replay can follow:
// first the thread that ended the group, then the others (which the kernel
// kills wherever they are: blocked in a futex, stopped in rec's queue),
// and a leader that did not end the group last, since its death is
// reported only once its threads are gone.
void RecordSession::noteExit(RecordTask& t, int status, bool atExitStop) {
  if (t.exitRecord() != RecordTask::ExitRecord::NotWritten) return;
  if (diesByItself(t, status, atExitStop)) {
    writeExit(t, status);
  } else {
    t.deferExit(RecordTask::ExitRecord::AfterGroupExit, status);
    if (groupExitStillToCome(t)) return;
  }
  writeGroupExits(t);
}

// The exits held back for the group `t` belongs to: threads in tid order,
// then the leader once no thread's exit is still to come.
void RecordSession::writeGroupExits(const RecordTask& t) {
  pid_t tgid = t.task.tgid();
  auto writeDeferred = [&](RecordTask& o) {
    if (auto status = o.takeDeferredExit(RecordTask::ExitRecord::AfterGroupExit))
      writeExit(o, *status);
  };
  bool threadsToCome = false;
  for (auto& [tid, other] : tasks_) {
    if (other->task.tgid() != tgid || tid == tgid) continue;
    writeDeferred(*other);
    if (other->alive() && other->exitRecord() == RecordTask::ExitRecord::NotWritten)
      threadsToCome = true;
  }
  auto leader = tasks_.find(tgid);
  if (leader != tasks_.end() && !threadsToCome) writeDeferred(*leader->second);
}

void RecordSession::onExited(RecordTask& t, int status) {
  reaped_.push_back(t.task.tid());
  sysbuf::dropDesched(t.sysbuf.get(), std::move(t.desched));
  endPtraceOf(t, status);
  if (t.exitRecord() == RecordTask::ExitRecord::AfterExec || siblingExecing(t)) {
    t.deferExit(RecordTask::ExitRecord::AfterExec, status);
    t.setState(RecordTask::State::Dead);
    scheduler_->forget(t);
    return;
  }
  noteExit(t, status, false);  // when no PTRACE_EVENT_EXIT stop came (SIGKILL)
  if (t.task.tid() == initialTid_) initialStatus_ = status;
  t.setState(RecordTask::State::Dead);
  scheduler_->forget(t);
  // The last of the group to go: nobody is left whose exit could come first.
  if (!groupExitStillToCome(t)) writeGroupExits(t);
  releaseVforkParent(t);
}

}  // namespace rec
