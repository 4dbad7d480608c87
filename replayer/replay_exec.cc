// Replaying exec (stored binaries, recorded stack and registers, exec from a
// thread other than the leader) and exits.

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
#include "errors.h"
#include "exit_codes.h"
#include "process_maps.h"
#include "remote_syscall.h"
#include "replay_session.h"
#include "replay_task.h"
#include "signals.h"
#include "syscall_table.h"

namespace rec {

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
      if (blobs_->holds(h.inode, hash))
        same = true;
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
  if (auto old = tasks_.find(recordedLeader); old != tasks_.end())
    old->second->park = ReplayTask::Park::Dead;
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
  if (e.getBecomesTid() != 0 && e.getBecomesTid() != t.recordedTid)
    execFromThread(t, e.getBecomesTid());
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
  StraySignals strays;
  installScratchPage(t.task, strays, timeShim_);
  t.timeSpace = std::make_shared<TimeShimSpace>();
  remapExecFiles(t, e);
  for (auto m : e.getMappings()) patchRdtsc(t, m);
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
