// Copies of a replay at an event boundary, for the debugger's checkpoints
// (debugger/checkpoint.h): every replayed process is forked by a fork
// injected into one of its threads, its other threads are re-created in the
// copy with clone and given their registers, extended state, signal mask,
// alternate signal stack, robust futex list and clear-child-tid address;
// memory the process shares (MAP_SHARED: the time shim's log, shared
// memory) gets copies of its own in the copy, or the copy and the original
// would write into each other. Each thread of the copy is left in the same
// kind of ptrace stop as its original (at the seccomp stop of the same
// syscall, or in user code), so the replay goes on from the copy exactly as
// from the original.

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/elf.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <sstream>
#include <map>

#include "errors.h"
#include "exit_codes.h"
#include "process_maps.h"
#include "remote_syscall.h"
#include "replay_session.h"
#include "replay_task.h"
#include "scoped_fd.h"

namespace rec {

namespace {

uint64_t blockedSignals(pid_t tid) {
  std::istringstream status(readProcFile(fmt::format("/proc/{}/status", tid)));
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("SigBlk:", 0) == 0) return std::stoull(line.substr(7), nullptr, 16);
  return 0;
}

void setExtendedState(pid_t tid, std::vector<uint8_t> xsave) {
  if (xsave.empty()) return;
  iovec iov{xsave.data(), xsave.size()};
  if (::ptrace(PTRACE_SETREGSET, tid, reinterpret_cast<void*>(NT_X86_XSTATE), &iov) != 0)
    throwErrno(kExitInternal, fmt::format("rec: restoring the FPU state of task {}", tid));
}

// What a thread's kernel-side state holds that fork/clone do not carry over
// for every thread.
struct ThreadExtras {
  Registers regs;
  std::vector<uint8_t> xstate;
  uint64_t mask = 0;
  uint64_t clearTid = 0;
  stack_t altStack{};
  uint64_t robustHead = 0;
  size_t robustLen = 0;
  bool hasSiginfo = false;
  siginfo_t siginfo{};
};

}  // namespace

struct ReplaySession::ForkState {
  // One copy per shared memory object (by device and inode), whichever
  // process maps it.
  std::map<std::pair<std::string, uint64_t>, ScopedFd> sharedCopies;
};

namespace {

// Runs remote syscalls in a parked task and puts it back exactly as it was:
// at the seccomp stop of the same syscall (by making it again), or in user
// code with the same registers and pending signal.
class ParkedThread {
 public:
  ParkedThread(Task& task, bool atEntry, bool hasSignal) : task_(task), atEntry_(atEntry) {
    saved_ = task.regs();
    if (hasSignal) {
      siginfo_ = task.siginfo();
      hasSiginfo_ = true;
    }
  }
  int64_t call(int nr, std::array<uint64_t, 6> args) {
    StraySignals strays;  // replay-time signals: the recording's come from the trace
    used_ = true;
    return remoteSyscall(task_, nr, args, strays);
  }
  // Back to the stop it was parked in.
  void restore() {
    if (!used_) return;
    if (atEntry_) {
      // Make the syscall again: the same seccomp stop.
      Registers again = saved_;
      again.setIp(saved_.ip() - 2);
      again.setResult(saved_.syscallNumber());
      again.setSyscallNumber(-1);
      task_.setRegs(again);
      task_.resume(Task::Resume::Cont);
      for (;;) {
        Stop stop = task_.wait();
        if (stop.kind == StopKind::Seccomp) break;
        if (stop.kind == StopKind::Exited)
          throw RecError(kExitInternal,
                         fmt::format("rec: task {} died while being copied", task_.tid()));
        task_.resume(Task::Resume::Cont);  // a replay-time signal: dropped
      }
      if (task_.regs().syscallNumber() != saved_.syscallNumber())
        throw RecError(kExitInternal,
                       fmt::format("rec: task {} did not return to its syscall", task_.tid()));
      // Every register as it was, rcx and r11 too: replay compares them all
      // at the entry, and what the syscall instruction leaves there depends on
      // the CPU (FRED does not write them).
      task_.setRegs(saved_);
    } else {
      task_.setRegs(saved_);
    }
    if (hasSiginfo_) task_.setSiginfo(siginfo_);
  }
  const Registers& saved() const { return saved_; }

 private:
  Task& task_;
  bool atEntry_;
  Registers saved_;
  bool hasSiginfo_ = false;
  siginfo_t siginfo_{};
  bool used_ = false;
};

}  // namespace

std::unique_ptr<ReplaySession> ReplaySession::fork() {
  using Park = ReplayTask::Park;
  if (!started_ || activePatch_) return nullptr;
  // (a debugger's replay, which forks, never runs tasks ahead)
  for (auto& [id, t] : tasks_)
    if (t->runningAhead || t->aheadStop) return nullptr;
  for (auto& [id, t] : tasks_) {
    if (t->park == Park::Dead) continue;
    // Inside a real blocking syscall (a vfork parent), or dying: no state to copy.
    if (t->park == Park::InKernel || t->exiting) return nullptr;
  }
  for (auto& [id, t] : tasks_)
    if (t->park == Park::Initial) advanceInitial(*t);

  auto copy = std::make_unique<ReplaySession>(options_);
  copy->reader_ = reader_;
  copy->blobs_ = std::make_unique<BlobFiles>(*reader_, *copy->blobCache_);
  copy->initialRecordedTid_ = initialRecordedTid_;
  copy->initialStatus_ = initialStatus_;
  copy->initialExited_ = initialExited_;
  copy->eventIndex_ = eventIndex_;
  copy->nextIndex_ = nextIndex_;
  copy->started_ = true;
  copy->peeked_ = false;
  copy->seekFirst_ = true;
  copy->echoFrom_ = echoFrom_;
  copy->rdtscPatcher_ = rdtscPatcher_;
  copy->timeShim_ = timeShim_;
  copy->syscallBuffer_ = syscallBuffer_;
  copy->lastMatched_ = lastMatched_;

  std::map<pid_t, std::vector<ReplayTask*>> processes;  // by real thread group
  for (auto& [id, t] : tasks_) {
    if (t->park == Park::Dead) {
      auto dead = std::make_unique<ReplayTask>(t->recordedTid, 0);
      dead->park = Park::Dead;
      dead->deadStatus = t->deadStatus;
      copy->tasks_[id] = std::move(dead);
      continue;
    }
    processes[t->task.tgid()].push_back(t.get());
  }
  ForkState state;
  for (auto& [tgid, threads] : processes)
    if (!copyProcess(*copy, threads, state)) return nullptr;
  return copy;
}

bool ReplaySession::copyProcess(ReplaySession& copy, std::vector<ReplayTask*>& threads,
                                ForkState& state) {
  using Park = ReplayTask::Park;
  auto isAtSyscallEntry = [](Park park) {
    return park == Park::Seccomp || park == Park::SkipPending;
  };
  // The thread that forks: the leader, so that the copy's leader is the
  // recorded one (exits of thread groups depend on it).
  ReplayTask* forker = threads.front();
  for (ReplayTask* t : threads)
    if (t->task.tid() == t->task.tgid()) forker = t;

  // What each thread has that the copy must get. Querying a thread runs
  // syscalls in it (at rec's scratch page) and puts it back.
  std::map<ReplayTask*, ThreadExtras> extras;
  for (ReplayTask* t : threads) {
    ThreadExtras& x = extras[t];
    bool atEntry = isAtSyscallEntry(t->park);
    ParkedThread parked(t->task, atEntry, t->park == Park::Resumable && t->pendingSignal);
    x.regs = parked.saved();
    x.xstate = readExtendedRegisters(t->task.tid());
    x.mask = blockedSignals(t->task.tid());
    {
      // The kernel writes the answers into the thread's memory: below its
      // stack's red zone (rec's scratch page is not writable by syscalls),
      // where the bytes are put back after.
      uint64_t out = (x.regs.sp() - 1024) & ~uint64_t{15};
      uint8_t savedBytes[64];
      size_t saved = t->task.read(out, savedBytes, sizeof savedBytes);
      if (saved == sizeof savedBytes) {
        if (parked.call(SYS_prctl, {PR_GET_TID_ADDRESS, out, 0, 0, 0, 0}) == 0)
          t->task.read(out, &x.clearTid, sizeof x.clearTid);
        if (parked.call(SYS_sigaltstack, {0, out + 16, 0, 0, 0, 0}) == 0)
          t->task.read(out + 16, &x.altStack, sizeof x.altStack);
        t->task.write(out, savedBytes, sizeof savedBytes);
      }
    }
    long head = 0;
    size_t len = 0;
    if (::syscall(SYS_get_robust_list, t->task.tid(), &head, &len) == 0) {
      x.robustHead = static_cast<uint64_t>(head);
      x.robustLen = len;
    }
    if (t->park == Park::Resumable && t->pendingSignal) {
      x.hasSiginfo = true;
      x.siginfo = t->task.siginfo();
    }
    if (t != forker) parked.restore();
    if (t == forker) {
      // Fork now, while it is out of its stop anyway.
      pid_t child = static_cast<pid_t>(parked.call(SYS_fork, {0, 0, 0, 0, 0, 0}));
      parked.restore();
      if (child <= 0) return false;
      auto task = std::make_unique<ReplayTask>(t->recordedTid, child);
      task->cpu = t->cpu;              // (the fork copied its affinity)
      Stop first = task->task.wait();  // its first stop, PTRACE_EVENT_STOP
      if (first.kind == StopKind::Exited) return false;
      copy.tasks_[t->recordedTid] = std::move(task);
    }
  }

  ReplayTask& leader = *copy.tasks_.at(forker->recordedTid);
  Task& main = leader.task;
  pid_t pid = main.tid();
  main.setTgid(pid);
  StraySignals strays;

  // Shared memory: the time shim's log, then every other writable shared
  // mapping, copied so that the copy writes only into its own.
  std::shared_ptr<TimeShimSpace> space = forker->timeSpace;
  std::shared_ptr<TimeShimSpace> newSpace;
  if (space) {
    newSpace = std::make_shared<TimeShimSpace>();
    newSpace->disabled = space->disabled;
    if (space->log) {
      newSpace->log = std::make_unique<TimeLog>();
      std::memcpy(&newSpace->log->log(), &space->log->log(), REC_SHIM_LOG_SIZE);
      uint64_t path =
          putScratchString(main, fmt::format("/proc/{}/fd/{}", ::getpid(), newSpace->log->fd()));
      int64_t fd = remoteSyscall(
          main, SYS_openat, {static_cast<uint64_t>(AT_FDCWD), path, O_RDWR | O_CLOEXEC, 0, 0, 0},
          strays);
      if (fd < 0) return false;
      int64_t got = remoteSyscall(main, SYS_mmap,
                                  {REC_SHIM_LOG, REC_SHIM_LOG_SIZE, PROT_READ | PROT_WRITE,
                                   MAP_SHARED | MAP_FIXED, static_cast<uint64_t>(fd), 0},
                                  strays);
      remoteSyscall(main, SYS_close, {static_cast<uint64_t>(fd), 0, 0, 0, 0, 0}, strays);
      if (got != static_cast<int64_t>(REC_SHIM_LOG)) return false;
    }
  }
  // The syscall buffer likewise.
  std::shared_ptr<SysbufSpace> newSysbuf;
  if (forker->sysbuf) {
    newSysbuf = sysbuf::forChild(forker->sysbuf, main, 0);
    if (forker->sysbuf->buffer && !sysbuf::startCopy(main, *newSysbuf, *forker->sysbuf, strays))
      return false;
    // The stored files queued mmaps map: this session's copies of them
    // (the paths name another session's fds).
    if (newSysbuf->buffer)
      for (const sysbuf::MappedFileRef& ref : sysbuf::replayFiles(*newSysbuf))
        if (!sysbuf::setReplayFile(*newSysbuf, ref,
                                   copy.blobs_->path(format::BlobHash::fromBytes(ref.hash))))
          return false;
  }
  for (const auto& m : readMaps(pid)) {
    if (!m.shared || !(m.prot & PROT_WRITE)) continue;
    if (m.start >= REC_SHIM_LOG && m.start < REC_SHIM_LOG + REC_SHIM_LOG_SIZE) continue;
    if (sysbuf::inBufferData(m.start)) continue;
    auto key = std::make_pair(m.path, m.inode);
    auto it = state.sharedCopies.find(key);
    if (it == state.sharedCopies.end()) {
      ScopedFd fd(
          static_cast<int>(::syscall(SYS_memfd_create, "rec-checkpoint-shared", MFD_CLOEXEC)));
      if (!fd.valid()) return false;
      it = state.sharedCopies.emplace(key, std::move(fd)).first;
    }
    // The contents as the original process sees them now, at its offset.
    uint64_t size = m.end - m.start;
    std::vector<uint8_t> bytes(size);
    bytes.resize(forker->task.read(m.start, bytes.data(), size));
    if (::pwrite(it->second.get(), bytes.data(), bytes.size(), static_cast<off_t>(m.offset)) !=
        static_cast<ssize_t>(bytes.size()))
      return false;
    uint64_t path =
        putScratchString(main, fmt::format("/proc/{}/fd/{}", ::getpid(), it->second.get()));
    int64_t fd =
        remoteSyscall(main, SYS_openat,
                      {static_cast<uint64_t>(AT_FDCWD), path, O_RDWR | O_CLOEXEC, 0, 0, 0}, strays);
    if (fd < 0) return false;
    int64_t got = remoteSyscall(main, SYS_mmap,
                                {m.start, size, static_cast<uint64_t>(m.prot),
                                 MAP_SHARED | MAP_FIXED, static_cast<uint64_t>(fd), m.offset},
                                strays);
    remoteSyscall(main, SYS_close, {static_cast<uint64_t>(fd), 0, 0, 0, 0, 0}, strays);
    if (got != static_cast<int64_t>(m.start)) return false;
  }

  // The other threads, made by clone in the copy.
  for (ReplayTask* t : threads) {
    if (t == forker) continue;
    constexpr uint64_t kThreadFlags =
        CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
    // It starts on the int3 after the scratch page's syscall, never run:
    // its first stop (PTRACE_EVENT_STOP) comes before.
    int64_t tid = remoteSyscall(main, SYS_clone, {kThreadFlags, 0, 0, 0, 0, 0}, strays);
    if (tid <= 0) return false;
    auto task = std::make_unique<ReplayTask>(t->recordedTid, static_cast<pid_t>(tid));
    task->task.setTgid(pid);
    task->cpu = t->cpu;
    Stop first = task->task.wait();
    if (first.kind == StopKind::Exited) return false;
    copy.tasks_[t->recordedTid] = std::move(task);
  }

  // Every thread of the copy: its state, then its stop.
  for (ReplayTask* t : threads) {
    ReplayTask& c = *copy.tasks_.at(t->recordedTid);
    const ThreadExtras& x = extras.at(t);
    Task& task = c.task;
    if (c.task.tgid() != pid) task.setTgid(pid);
    // Signal mask, alternate stack, robust list, clear-child-tid: the
    // kernel's per-thread state, set by the thread itself.
    task.write(kScratchData, &x.mask, sizeof x.mask);
    remoteSyscall(task, SYS_rt_sigprocmask, {SIG_SETMASK, kScratchData, 0, 8, 0, 0}, strays);
    if (x.altStack.ss_sp || x.altStack.ss_flags) {
      stack_t s = x.altStack;
      s.ss_flags &= ~SS_ONSTACK;
      task.write(kScratchData, &s, sizeof s);
      remoteSyscall(task, SYS_sigaltstack, {kScratchData, 0, 0, 0, 0, 0}, strays);
    }
    remoteSyscall(task, SYS_set_robust_list, {x.robustHead, x.robustLen, 0, 0, 0, 0}, strays);
    remoteSyscall(task, SYS_set_tid_address, {x.clearTid, 0, 0, 0, 0, 0}, strays);
    setExtendedState(task.tid(), x.xstate);
    // The replay's view of it.
    c.park = t->park;
    c.pendingSignal = t->pendingSignal;
    c.pendingFrame = t->pendingFrame;
    c.entryRegs = t->entryRegs;
    c.lastSyscallRegs = t->lastSyscallRegs;
    c.awaitingSignal = t->awaitingSignal;
    c.skipNumber = t->skipNumber;
    c.skipArgs = t->skipArgs;
    c.skipResult = t->skipResult;
    c.skipIsSigsuspend = t->skipIsSigsuspend;
    c.lastExecutedNumber = t->lastExecutedNumber;
    c.childTidAddress = t->childTidAddress;
    c.parentTidAddress = t->parentTidAddress;
    c.parentTidValue = t->parentTidValue;
    c.exiting = false;
    c.timeSpace = newSpace;
    c.lastBufferedEvent = t->lastBufferedEvent;
    c.sysbuf = newSysbuf;
    c.lastSysbufEvent = t->lastSysbufEvent;
    c.lastStopEvent = t->lastStopEvent;
    // Its registers, in the same kind of stop.
    if (isAtSyscallEntry(t->park)) {
      Registers again = x.regs;
      again.setIp(x.regs.ip() - 2);
      again.setResult(x.regs.syscallNumber());
      again.setSyscallNumber(-1);
      task.setRegs(again);
      task.resume(Task::Resume::Cont);
      for (;;) {
        Stop stop = task.wait();
        if (stop.kind == StopKind::Seccomp) break;
        if (stop.kind == StopKind::Exited) return false;
        task.resume(Task::Resume::Cont);
      }
      if (task.regs().syscallNumber() != x.regs.syscallNumber()) return false;
      task.setRegs(x.regs);  // rcx and r11 as well (see ParkedThread::restore)
    } else {
      task.setRegs(x.regs);
      if (x.hasSiginfo) task.setSiginfo(x.siginfo);
    }
  }
  return true;
}

}  // namespace rec
