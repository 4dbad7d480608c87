// Replaying exec (stored binaries, recorded stack and registers, exec from a
// thread other than the leader) and exits.

#include <elf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "code_patch.h"
#include "errors.h"
#include "exit_codes.h"
#include "process_maps.h"
#include "remote_syscall.h"
#include "replay_session.h"
#include "replay_task.h"
#include "scoped_fd.h"
#include "signals.h"
#include "syscall_table.h"

namespace rec {

// The hash of this machine's file at `path`, read once per replay for each
// version of the file (device, inode, size, mtime and ctime): ld.so's
// segments each asked for it again at every exec (100 x /bin/true read and
// hashed its 215 KB 400 times). nullopt when it cannot be read.
std::optional<format::BlobHash> ReplaySession::diskFileHash(const std::string& path) {
  auto keyOf = [](const struct stat& st) {
    return DiskFileKey{st.st_dev,          st.st_ino,          static_cast<uint64_t>(st.st_size),
                       st.st_mtim.tv_sec,  st.st_mtim.tv_nsec, st.st_ctim.tv_sec,
                       st.st_ctim.tv_nsec};
  };
  // A version read before is known by a stat alone (the file is opened
  // only to be read): ld.so's 4 segments at every exec cost 4 stats, not 4
  // opens, fstats and closes. A version that could not be opened then has
  // no entry; a chmod since changes ctime, so no entry hides a new refusal.
  struct stat st;
  if (::stat(path.c_str(), &st) == 0)
    if (auto it = diskHashes_.find(keyOf(st)); it != diskHashes_.end()) return it->second;
  ScopedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid() || ::fstat(fd.get(), &st) != 0) return std::nullopt;
  DiskFileKey key = keyOf(st);
  if (auto it = diskHashes_.find(key); it != diskHashes_.end()) return it->second;
  std::optional<format::BlobHash> hash;
  try {
    std::vector<std::byte> content(static_cast<size_t>(st.st_size));
    if (::pread(fd.get(), content.data(), content.size(), 0) == st.st_size)
      hash = format::BlobHash::of(content);
  } catch (const std::exception&) {  // too large to hold: mapped from the trace
  }
  if (hash) diskHashes_[key] = *hash;
  return hash;
}

void ReplaySession::remapExecFiles(ReplayTask& t, schema::ExecEvent::Reader e) {
  t.mappedFile.reset();  // O_CLOEXEC: gone with the old program
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
      if (blobs_->holds(h.inode, hash))
        same = true;
      else if (h.path == m.getPath().cStr())
        // Same path: same contents unless the file changed since recording.
        same = diskFileHash(h.path) == hash;
    }
    if (same) continue;
    const std::string& file = blobs_->path(hash, m.getPath());
    uint64_t pathAddr = putScratchString(t.task, file);
    int64_t fd = remoteSyscall(
        t.task, SYS_openat,
        {static_cast<uint64_t>(AT_FDCWD), pathAddr, O_RDONLY | O_CLOEXEC, 0, 0, 0}, strays);
    if (fd < 0)
      throw RecError(kExitInternal, fmt::format("rec: cannot open {} in the tracee", file));
    int64_t got = remoteSyscall(t.task, SYS_mmap,
                                {m.getStart(), m.getEnd() - m.getStart(), m.getProt(),
                                 MAP_PRIVATE | MAP_FIXED, static_cast<uint64_t>(fd), m.getOffset()},
                                strays);
    remoteSyscall(t.task, SYS_close, {static_cast<uint64_t>(fd), 0, 0, 0, 0, 0}, strays);
    if (got != static_cast<int64_t>(m.getStart()))
      throw RecError(kExitUnsupported, fmt::format("rec: cannot map {} at {:#x} as recorded",
                                                   m.getPath().cStr(), m.getStart()));
    // The pages that differed from the file when recorded (older traces:
    // the whole mapping).
    for (auto w : e.getWritableData())
      if (w.getAddress() >= m.getStart() && w.getAddress() < m.getEnd())
        t.task.write(w.getAddress(), w.getData().begin(), w.getData().size());
  }
}

void ReplaySession::patchRdtsc(ReplayTask& t, schema::Mapping::Reader m) {
  if (!rdtscPatcher_ || !(m.getProt() & PROT_EXEC) || m.getBlobHash().size() != 16) return;
  format::BlobHash hash = hashOf(m.getBlobHash());
  rdtscPatcher_->patchMapping(t.task, hash.hex(), blobs_->path(hash, m.getPath()), m.getStart(),
                              m.getEnd(), m.getOffset());
}

// execve in a process with other threads: the kernel kills them first.
// Each stops at PTRACE_EVENT_EXIT, which rec lets go, and is reaped here, its
// status kept for its Exit event (which follows the Exec event in the
// trace). A thread other than the leader that execs gets the leader's id,
// under which its exec stop comes; the old leader just vanishes. Returns
// once the exec stop was seen (the task then goes on to the exec's return)
// and every other thread is reaped. Only the group's own tasks are waited
// for: other processes' stops stay queued for their own events.
void ReplaySession::execInGroup(ReplayTask& t, int recordedLeader) {
  using Park = ReplayTask::Park;
  const pid_t leader = t.task.tgid();
  const pid_t execer = t.task.tid();
  const bool fromThread = execer != leader;
  std::vector<ReplayTask*> victims;  // to be reaped (not the vanishing old leader)
  for (auto& [id, o] : tasks_)
    if (o.get() != &t && o->park != Park::Dead && o->task.tgid() == leader &&
        o->task.tid() != leader)
      victims.push_back(o.get());
  auto poll = [](pid_t pid, int& status) {
    for (;;) {
      pid_t r = ::waitpid(pid, &status, __WALL | WNOHANG);
      if (r < 0 && errno == EINTR) continue;
      return r;
    }
  };
  bool execSeen = false;
  auto lastProgress = std::chrono::steady_clock::now();
  for (;;) {
    bool allReaped = std::all_of(victims.begin(), victims.end(),
                                 [](ReplayTask* v) { return v->park == Park::Dead; });
    if (execSeen && allReaped) break;
    bool progress = false;
    int status = 0;
    if (!execSeen && poll(leader, status) == leader) {
      progress = true;
      Stop stop = decodeStop(status);
      if (stop.kind == StopKind::Exec) {
        execSeen = true;
        t.task.setTid(leader);
        t.task.noteStopped();
        t.task.resetMemory();
        t.task.resume(Task::Resume::Syscall);
      } else if (stop.kind != StopKind::Exited) {
        // The exec'ing leader before its exec stop, or the old leader dying.
        ::ptrace(PTRACE_CONT, leader, nullptr, nullptr);
      }
    }
    if (!execSeen && fromThread && poll(execer, status) == execer) {
      progress = true;
      ::ptrace(PTRACE_CONT, execer, nullptr, nullptr);  // a stop before its exec stop
    }
    for (ReplayTask* v : victims) {
      if (v->park == Park::Dead) continue;
      pid_t r = poll(v->task.tid(), status);
      if (r == 0) continue;
      progress = true;
      if (r < 0) {  // reaped by the kernel itself: killed by the exec
        v->park = Park::Dead;
        v->deadStatus = SIGKILL;
        continue;
      }
      Stop stop = decodeStop(status);
      if (stop.kind == StopKind::Exited) {
        v->park = Park::Dead;
        v->deadStatus = status;
      } else {
        ::ptrace(PTRACE_CONT, v->task.tid(), nullptr, nullptr);
      }
    }
    if (progress) {
      lastProgress = std::chrono::steady_clock::now();
    } else if (std::chrono::steady_clock::now() - lastProgress > std::chrono::seconds(10)) {
      throw RecError(kExitInternal,
                     fmt::format("rec: replaying the exec of task {} at event #{}: the other "
                                 "threads did not end",
                                 t.recordedTid, eventIndex_));
    } else {
      ::sched_yield();  // they run on rec's CPU
    }
  }
  if (!fromThread) return;
  // The exec'ing thread now is the leader, under both ids.
  auto self = std::move(tasks_[t.recordedTid]);
  tasks_.erase(t.recordedTid);
  if (auto old = tasks_.find(recordedLeader); old != tasks_.end()) old->second->park = Park::Dead;
  tasks_[recordedLeader] = std::move(self);
  t.recordedTid = recordedLeader;
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
  bool otherThreads = std::any_of(tasks_.begin(), tasks_.end(), [&](const auto& kv) {
    const ReplayTask& o = *kv.second;
    return &o != &t && o.park != ReplayTask::Park::Dead && o.task.tgid() == t.task.tgid();
  });
  if (otherThreads) execInGroup(t, e.getBecomesTid());
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
    throw RecError(kExitUnsupported, fmt::format("rec: cannot execute the recorded {} (error {})",
                                                 e.getFilename().cStr(), t.task.regs().result()));
  // On the recorded CPU before the new image runs an instruction.
  pinRecorded(t, e.getCpu());
  StraySignals strays;
  auto traced = reader_->header().getTracedSyscalls();
  installScratchPage(t.task, strays, timeShim_ || syscallBuffer_,
                     SYS_mmap / 8 < traced.size() && ((traced[SYS_mmap / 8] >> (SYS_mmap % 8)) & 1));
  t.timeSpace = std::make_shared<TimeShimSpace>();
  t.sysbuf = syscallBuffer_ ? std::make_shared<SysbufSpace>() : nullptr;
  remapExecFiles(t, e);
  for (auto m : e.getMappings()) patchRdtsc(t, m);
  applyBufferPatches(t, e.getBufferPatches());
  // The recorded initial stack (argv, environment, auxv with AT_RANDOM and
  // the time shim or no vDSO) and registers, so the program starts from the very
  // state it started from when recorded.
  uint64_t stackStart = e.getStackStart();
  bool covered = false;
  for (const auto& m : readMaps(t.task.tid()))
    if (m.path == "[stack]" && stackStart >= m.start &&
        stackStart + e.getStackImage().size() <= m.end)
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

// What the kernel does with a dying task's robust futex list (mutexes it
// still holds, in memory other threads and processes share): each word
// owned by the task gets FUTEX_OWNER_DIED, which the next locker sees as
// EOWNERDEAD. The kernel compares the owner with the task's real id, which
// on replay is not the recorded one the program stored, so replay marks the
// words itself, at the task's exit stop; the kernel then finds them owned by
// nobody and leaves them alone. (Waking a waiter needs nothing: waits are
// replayed from the trace.)
void ReplaySession::releaseRobustFutexes(ReplayTask& t) {
  struct RobustListHead {
    uint64_t next;
    int64_t futexOffset;
    uint64_t pending;
  };
  uint64_t headAddress = 0;
  size_t length = 0;
  if (::syscall(SYS_get_robust_list, t.task.tid(), &headAddress, &length) != 0 || !headAddress ||
      length != sizeof(RobustListHead))
    return;
  RobustListHead head;
  if (t.task.read(headAddress, &head, sizeof head) != sizeof head) return;
  auto markDead = [&](uint64_t entry) {
    uint64_t word = (entry & ~uint64_t{1}) + static_cast<uint64_t>(head.futexOffset);
    uint32_t value = 0;
    if (t.task.read(word, &value, sizeof value) != sizeof value) return;
    if ((value & FUTEX_TID_MASK) != static_cast<uint32_t>(t.recordedTid)) return;
    value = (value & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
    t.task.write(word, &value, sizeof value);
  };
  constexpr int kLimit = 2048;  // the kernel's ROBUST_LIST_LIMIT
  uint64_t entry = head.next;
  for (int i = 0; i < kLimit && entry != headAddress && entry; ++i) {
    uint64_t next = 0;
    if (t.task.read(entry & ~uint64_t{1}, &next, sizeof next) != sizeof next) break;
    if (entry != head.pending) markDead(entry);
    entry = next;
  }
  if (head.pending) markDead(head.pending);
}

void ReplaySession::onExit(ReplayTask& t, schema::ExitEvent::Reader e) {
  int recorded = e.getWaitStatus();
  if (WIFSIGNALED(recorded) && WTERMSIG(recorded) == SIGKILL && !t.exiting) {
    // Killed from outside during recording (or by rec when it was
    // interrupted, or by itself): nothing in the replayed program will do
    // it. One that died in a syscall whose entry has no event (its own
    // kill(getpid(), SIGKILL)) first runs up to that entry, as it did when
    // recorded: the code on the way (a lazily bound PLT entry) changes
    // memory others see. Its robust futexes are released first, while its
    // memory is surely there: a SIGKILLed task may be gone before its exit
    // stop can be used.
    int nr = e.getSyscallAtDeath();
    const sys::SyscallRow* row = nr >= 0 ? sys::findSyscall(nr) : nullptr;
    bool traced = row && row->support != sys::Support::Passthrough;
    if (traced &&
        (t.park == ReplayTask::Park::Resumable || t.park == ReplayTask::Park::SkipPending)) {
      Stop stop = advance(t);
      if (stop.kind != StopKind::Seccomp || t.task.regs().syscallNumber() != nr)
        diverge(t, fmt::format("to enter syscall {} and die there", row->name), describeStop(stop));
      // Parked at that entry: skipped if it is ever resumed.
      t.skipNumber = nr;
      t.skipResult = 0;
      t.skipIsSigsuspend = false;
      t.park = ReplayTask::Park::SkipPending;
    }
    releaseRobustFutexes(t);
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
      releaseRobustFutexes(t);
      int status = static_cast<int>(t.task.eventMessage());
      if (!sameStatus(status, recorded))
        throw RecError(
            kExitDivergence,
            fmt::format("rec: replay diverged at event #{} (task {}): expected {}, got {}",
                        eventIndex_, t.recordedTid, statusText(recorded), statusText(status)));
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
        throw RecError(
            kExitDivergence,
            fmt::format("rec: replay diverged at event #{} (task {}): expected {}, got {}",
                        eventIndex_, t.recordedTid, statusText(recorded), statusText(stop.status)));
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
