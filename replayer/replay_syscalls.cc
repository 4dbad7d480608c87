// Replaying syscalls: reaching each one, checking it against the recording,
// emulating it, or executing it where it shapes the address space or the
// process tree (mmap of stored files, shared memory, fork-like calls).

#include <elf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "buffered_calls.h"
#include "code_patch.h"
#include "errors.h"
#include "exit_codes.h"
#include "process_maps.h"
#include "remote_syscall.h"
#include "replay_session.h"
#include "replay_task.h"
#include "seccomp_filter.h"
#include "signals.h"
#include "spawn.h"
#include "syscall_table.h"
#include "task_state.h"

namespace rec {

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

void ReplaySession::checkSyscallMatches(ReplayTask& t, schema::SyscallEvent::Reader e) {
  const Registers& regs = t.task.regs();
  bool compat = e.getCompat32();
  int nr = regs.syscallNumber();
  auto args = compat ? regs.compatSyscallArgs() : regs.syscallArgs();
  // A 32-bit syscall's event names its x86-64 twin (syscall_table.h).
  int number = compat && !e.getRefused() ? sys::compatNumber(e.getNumber()) : e.getNumber();
  auto recordedArgs = e.getArgs();
  auto strings = e.getStrings();
  const sys::SyscallRow* row = compat ? sys::findCompatSyscall(nr) : sys::findSyscall(nr);
  if (compat && t.task.eventMessage() != sys::kSeccompCompatData)
    diverge(t, describeRecordedSyscall(e) + " by int 0x80", "made a 64-bit syscall");
  auto actual = [&] {
    if (!row) return fmt::format("made syscall_{}", nr);
    std::vector<std::string> s;
    for (int index : sys::stringArgs(*row)) s.push_back(t.task.readCString(args[index]));
    return "made " + sys::formatCall(*row, args, s);
  };
  auto expected = [&] { return describeRecordedSyscall(e); };
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
  if (t.entryRegs) {
    if (auto d = registerDifference(*t.entryRegs, t.task.regs().raw()))
      diverge(t, expected() + " with every register as recorded", "arrived with " + *d);
  }
  checkMemory(t, expected());
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

// A CPU the recording used that this machine (or rec's affinity) lacks
// leaves the task where it is: a program that depends on its CPU's CPUID
// answers then diverges, as with the header's CPU (docs/parallel.md).
void ReplaySession::pinRecorded(ReplayTask& t, int cpu) {
  if (cpu < 0 || cpu == t.cpu) return;
  if (pinTask(t.task.tid(), cpu)) t.cpu = cpu;
}

void ReplaySession::runForkLike(ReplayTask& t, int recordedChild, int32_t idSeen, int cpu) {
  // CLONE_UNTRACED would keep the child from rec, as the recorder kept it
  // (completeForkLike puts the program's flags back).
  Registers& r = t.task.mutableRegs();
  if (r.syscallNumber() == SYS_clone)
    r.setSyscallArg(0, r.syscallArgs()[0] & ~uint64_t{CLONE_UNTRACED});
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
  task->cpu = t.cpu;  // the kernel copied the parent's affinity
  pinRecorded(*task, cpu);
  // The kernel stores the new task's id where clone was asked to (glibc
  // keeps it in the thread descriptor and passes it to tgkill etc.): the
  // program must find the recorded id there, as it does from gettid().
  const Registers& regs = t.task.regs();
  uint64_t flags = sys::cloneFlags(regs.syscallNumber(), regs.syscallArgs()[0]);
  // The time shim as the recorder left it.
  task->timeSpace = time_shim::forChild(t.timeSpace, t.task, task->task, flags);
  task->sysbuf = sysbuf::forChild(t.sysbuf, task->task, flags);
  if (flags & CLONE_THREAD) task->task.setTgid(t.task.tgid());
  if (flags & CLONE_CHILD_SETTID) task->childTidAddress = regs.syscallArgs()[3];
  if (flags & CLONE_PARENT_SETTID) t.parentTidAddress = regs.syscallArgs()[2];
  // The id as the program sees it (clone's result): inside a pid namespace
  // it is not the global one the trace names the task by.
  task->childTidValue = idSeen;
  t.parentTidValue = idSeen;
  tasks_[recordedChild] = std::move(task);
  reconsider_.push({0, recordedChild, 0});  // its first run may start ahead (replay_ahead.cc)
  t.task.resume(Task::Resume::Syscall);
  t.park = ReplayTask::Park::InKernel;
}

// At the fork-like syscall's exit: the program's argument registers (the
// kernel leaves them as they were), the recorded result, and what the
// kernel stored in the parent (its id for the child, a pidfd).
void ReplaySession::completeForkLike(ReplayTask& t, schema::SyscallEvent::Reader e) {
  std::array<uint64_t, 6> programArgs{};
  for (unsigned i = 0; i < 6 && i < e.getArgs().size(); ++i) programArgs[i] = e.getArgs()[i];
  Registers& r = t.task.mutableRegs();
  r.setSyscallArgs(programArgs);
  r.setResult(e.getResult());
  if (e.getResult() > 0) t.parentTidValue = static_cast<int32_t>(e.getResult());
  fixParentTid(t);
  for (auto w : e.getWrites())
    t.task.write(w.getAddress(), w.getData().begin(), w.getData().size());
}

// A clone asking for new namespaces (CLONE_NEWUSER, CLONE_NEWPID, ...) gets
// none on replay: everything the namespaces changed (ids, mounts, host
// names) comes from the trace, and a child in a new user namespace could not
// open the files rec hands it through /proc.
void ReplaySession::withoutNamespaces(ReplayTask& t) {
  constexpr uint64_t kNamespaces = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
                                   CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | 0x80 /* TIME */;
  Registers& r = t.task.mutableRegs();
  if (r.syscallNumber() == SYS_clone && (r.syscallArgs()[0] & kNamespaces))
    r.setSyscallArg(0, r.syscallArgs()[0] & ~kNamespaces);
}

// setrlimit/prlimit64 are emulated, but RLIMIT_STACK and RLIMIT_DATA decide
// where the program faults (a stack overflow's depth, a brk that fails), so
// a successful change of them for the program itself is made again. The
// kernel's answer is replaced by the recorded one. False: nothing to apply.
bool ReplaySession::applyRlimit(ReplayTask& t, schema::SyscallEvent::Reader e) {
  auto args = e.getArgs();
  bool prlimit = e.getNumber() == SYS_prlimit64;
  int resource = static_cast<int>(args[prlimit ? 1 : 0]);
  uint64_t newLimit = args[prlimit ? 2 : 1];
  if ((resource != RLIMIT_STACK && resource != RLIMIT_DATA) || newLimit == 0) return false;
  if (prlimit && args[0] != 0 && static_cast<int>(args[0]) != t.recordedTid) return false;
  StraySignals strays;
  skipToSyscallExit(t.task, e.getResult(), strays);
  remoteSyscall(t.task, SYS_prlimit64, {0, static_cast<uint64_t>(resource), newLimit, 0, 0, 0},
                strays);
  for (auto w : e.getWrites())
    t.task.write(w.getAddress(), w.getData().begin(), w.getData().size());
  t.task.mutableRegs().setResult(e.getResult());
  t.lastExecutedNumber = e.getNumber();
  t.park = ReplayTask::Park::Resumable;
  return true;
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
  checkMemory(t, expected);
  if (e.getNewTask() != 0) {
    withoutNamespaces(t);
    // vfork: clone's result is not known yet; the recorded id stands in.
    runForkLike(t, e.getNewTask(), e.getNewTask(), e.getNewTaskCpu());
  }
}

void ReplaySession::echoOutput(ReplayTask& t, schema::SyscallEvent::Reader e) {
  int fd = e.getOutputFd();
  const sys::SyscallRow* row = sys::findSyscall(e.getNumber());
  if ((fd != 1 && fd != 2) || e.getResult() <= 0 || !row || eventIndex_ < echoFrom_) return;
  const sys::FdWrite& w = row->fdWrite;
  auto args = e.getArgs();
  size_t total = static_cast<size_t>(e.getResult());
  std::vector<std::byte> data;
  if (w.data == sys::Data::Iovec) {
    size_t count = std::min<uint64_t>(args[w.countArg], 1024);
    std::vector<iovec> iov(count);
    t.task.read(args[w.dataArg], iov.data(), count * sizeof(iovec));
    for (const auto& v : iov) {
      if (data.size() >= total) break;
      size_t n = std::min(v.iov_len, total - data.size());
      auto part = t.task.readBytes(reinterpret_cast<uint64_t>(v.iov_base), n);
      data.insert(data.end(), part.begin(), part.end());
    }
  } else if (w.data == sys::Data::Buffer) {
    data = t.task.readBytes(args[w.dataArg], total);
  }
  showOutput(fd, data);
}

// The program's output, on rec's own stdout (fd 1) or stderr (2).
void ReplaySession::showOutput(int fd, std::span<const std::byte> data) {
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

// Maps `file` into the task with `mmapArgs` (the fd slot is filled in)
// through the open file the task keeps for it (ReplayTask::mappedFile),
// opening it there first if its last mapping was of another file; returns
// mmap's result.
int64_t ReplaySession::mapIntoTask(ReplayTask& t, const std::string& file, bool writable,
                                   std::array<uint64_t, 6> mmapArgs) {
  StraySignals strays;
  auto& kept = t.mappedFile;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!kept || kept->path != file || kept->writable != writable) {
      if (kept)
        remoteSyscall(t.task, SYS_close, {static_cast<uint64_t>(kept->fd), 0, 0, 0, 0, 0}, strays);
      kept.reset();
      uint64_t pathAddr = putScratchString(t.task, file);
      uint64_t openFlags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC;
      int64_t fd =
          remoteSyscall(t.task, SYS_openat,
                        {static_cast<uint64_t>(AT_FDCWD), pathAddr, openFlags, 0, 0, 0}, strays);
      if (fd < 0)
        throw RecError(kExitInternal, fmt::format("rec: cannot open {} in the tracee", file));
      kept = ReplayTask::MappedFile{file, writable, fd};
    }
    mmapArgs[4] = static_cast<uint64_t>(kept->fd);
    int64_t got = remoteSyscall(t.task, SYS_mmap, mmapArgs, strays);
    if (got != -EBADF) return got;
    kept.reset();  // closed behind rec's back (an exec): open it again
  }
  return -EBADF;
}

// At the seccomp stop of an mmap replay maps from `file`: the syscall is
// made an openat of that file, whose fd becomes the task's kept one
// (ReplayTask::mappedFile, the previous one closed); the task is left at its
// exit with the program's argument registers, as a skipped call leaves it.
// When the open fails, nothing is kept and mapIntoTask tries again.
void ReplaySession::openForMmap(ReplayTask& t, const std::string& file, bool writable) {
  Registers& r = t.task.mutableRegs();
  const auto programArgs = r.syscallArgs();
  uint64_t pathAddr = putScratchString(t.task, file);
  uint64_t openFlags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC;
  r.setSyscallNumber(SYS_openat);
  r.setSyscallArgs({static_cast<uint64_t>(AT_FDCWD), pathAddr, openFlags, 0, 0, 0});
  t.task.resume(Task::Resume::Syscall);
  waitSyscallExit(t);
  int64_t fd = t.task.regs().result();
  Registers& after = t.task.mutableRegs();
  after.setSyscallArgs(programArgs);
  after.setSyscallNumber(-1);  // as skipToSyscallExit leaves it: no restart
  if (fd < 0) return;
  StraySignals strays;
  if (t.mappedFile)
    remoteSyscall(t.task, SYS_close, {static_cast<uint64_t>(t.mappedFile->fd), 0, 0, 0, 0, 0},
                  strays);
  t.mappedFile = ReplayTask::MappedFile{file, writable, fd};
}

void ReplaySession::applyShmAt(ReplayTask& t, schema::SyscallEvent::Reader e) {
  // Every attach of a segment maps the same memfd, so replayed processes
  // share it as they shared the segment.
  StraySignals strays;
  skipToSyscallExit(t.task, e.getResult(), strays);
  auto m = e.getMapping();
  uint64_t size = m.getEnd() - m.getStart();
  const std::string& file = blobs_->sharedSegment(static_cast<long>(e.getArgs()[0]), size);
  int64_t got =
      mapIntoTask(t, file, true, {m.getStart(), size, m.getProt(), MAP_SHARED | MAP_FIXED, 0, 0});
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

namespace {

// A recorded mapping's file contents: one blob, or pieces of a sparse file.
BlobFiles::Contents contentsOf(schema::Mapping::Reader m) {
  if (!m.hasSparse()) return hashOf(m.getBlobHash());
  BlobFiles::Sparse sparse;
  sparse.size = m.getSparse().getSize();
  for (auto p : m.getSparse().getPieces())
    sparse.pieces.emplace_back(p.getOffset(), hashOf(p.getBlobHash()));
  return sparse;
}

}  // namespace

void ReplaySession::applyMmap(ReplayTask& t, schema::SyscallEvent::Reader e) {
  uint64_t address = static_cast<uint64_t>(e.getResult());
  auto m = e.getMapping();
  bool fileBacked = e.hasMapping() && (m.getBlobHash().size() == 16 || m.hasSparse());
  Registers& r = t.task.mutableRegs();
  uint64_t flags = r.syscallArgs()[3];
  if (!fileBacked) {
    // Anonymous (or /dev/zero): the same mapping at the recorded address.
    auto programArgs = r.syscallArgs();
    r.setSyscallArg(0, address);
    r.setSyscallArg(3, (flags & ~uint64_t{MAP_FIXED_NOREPLACE}) | MAP_FIXED | MAP_ANONYMOUS);
    r.setSyscallArg(4, static_cast<uint64_t>(-1));
    t.task.resume(Task::Resume::Syscall);
    waitSyscallExit(t);
    if (t.task.regs().result() != e.getResult())
      diverge(t, fmt::format("mmap to return {:#x}", address),
              fmt::format("got {:#x}", t.task.regs().result()));
    // The kernel leaves argument registers as they were: so must rec's rewrite.
    t.task.mutableRegs().setSyscallArgs(programArgs);
    return;
  }
  // A file mapping: map the stored contents where the recording had it.
  // Shared mappings map the one shared copy of their file (read-only ones
  // too: they show stores made through writable ones, the JIT pattern), and
  // so do private mappings of files the recording watched (open for
  // writing: their uncopied pages follow the file); other private ones map
  // the blob.
  bool shared = (m.getFlags() & MAP_TYPE) != MAP_PRIVATE;
  bool followsFile = shared || m.getDevice() != 0 || m.getInode() != 0;
  BlobFiles::Contents contents = contentsOf(m);
  const std::string& file =
      followsFile ? blobs_->sharedCopy(contents, m.getPath(), m.getDevice(), m.getInode())
                  : blobs_->path(contents, m.getPath());
  uint64_t mapFlags = (flags & ~uint64_t{MAP_TYPE} & ~uint64_t{MAP_FIXED_NOREPLACE}) |
                      (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED;
  std::array<uint64_t, 6> mmapArgs = {address, m.getEnd() - m.getStart(), m.getProt(), mapFlags,
                                      0, m.getOffset()};
  int64_t got = -EBADF;
  // A stored file the buffer's mappings of it keep open: the same open file
  // (mappings of one merge as in the recording).
  int slotFd = !shared && t.sysbuf ? sysbuf::replayFileFd(*t.sysbuf, t.task.tid(), file) : -1;
  if (slotFd >= 0) {
    auto programArgs = r.syscallArgs();
    mmapArgs[4] = static_cast<uint64_t>(slotFd);
    r.setSyscallArgs(mmapArgs);
    t.task.resume(Task::Resume::Syscall);
    waitSyscallExit(t);
    got = t.task.regs().result();
    t.task.mutableRegs().setSyscallArgs(programArgs);
    // (-EBADF: closed since; the remote mmap below opens the file again)
  } else if (t.mappedFile && t.mappedFile->path == file && t.mappedFile->writable == shared) {
    // The file is still open in the task (ld.so maps a library's segments
    // one after another): the program's own mmap maps it, rewritten, one
    // stop instead of skipping it and a remote mmap (3 stops).
    auto programArgs = r.syscallArgs();
    mmapArgs[4] = static_cast<uint64_t>(t.mappedFile->fd);
    r.setSyscallArgs(mmapArgs);
    t.task.resume(Task::Resume::Syscall);
    waitSyscallExit(t);
    got = t.task.regs().result();
    t.task.mutableRegs().setSyscallArgs(programArgs);
    if (got == -EBADF) t.mappedFile.reset();  // closed behind rec's back: opened again below
  } else {
    // Another file: the program's mmap opens it instead of being skipped
    // (one stop fewer than skipping it and opening it remotely); the
    // remote mmap below then finds it kept.
    openForMmap(t, file, shared);
  }
  if (got == -EBADF) got = mapIntoTask(t, file, shared, mmapArgs);
  if (got != static_cast<int64_t>(address))
    diverge(t, fmt::format("mmap of {} at {:#x}", m.getPath().cStr(), address),
            fmt::format("got {}", got));
  patchRdtsc(t, m);
  applyBufferPatches(t, e.getBufferPatches());
  t.task.mutableRegs().setResult(e.getResult());
}

// The recording's first time syscall of a process mapped the shim's log at
// its exit: so does replay, with the shim handing back recorded answers.
void ReplaySession::startTimeLog(ReplayTask& t, schema::SyscallEvent::Reader e) {
  if (!t.timeSpace || t.timeSpace->log)
    throw RecError(
        kExitBadTrace,
        fmt::format("rec: event #{} starts a time log where there cannot be one", eventIndex_));
  StraySignals strays;  // replay's own signals: the recording's come from the trace
  skipToSyscallExit(t.task, e.getResult(), strays);
  if (!time_shim::startLog(t.task, *t.timeSpace, REC_SHIM_REPLAY, strays))
    throw RecError(kExitUnsupported,
                   fmt::format("rec: cannot map the time shim's log in task {}", t.task.tid()));
  t.task.mutableRegs().setResult(e.getResult());
  t.lastExecutedNumber = e.getNumber();
  t.park = ReplayTask::Park::Resumable;
}

// An answer the shim gave without a stop: queued in the task's log, which
// the task reads as it runs to its next event. Whatever the previous batch
// left unread was not read during replay although it was when recorded.
void ReplaySession::onBufferedSyscall(ReplayTask& t, schema::SyscallEvent::Reader e) {
  if (!t.timeSpace || !t.timeSpace->log)
    throw RecError(kExitBadTrace,
                   fmt::format("rec: event #{} is a time shim answer for task {}, which has no "
                               "time log",
                               eventIndex_, t.recordedTid));
  queueTimeAnswer(t, time_shim::entryFromEvent(e));
}

// One of the shim's answers (a time call, or an rdtsc at a patched site) in
// the task's log; consecutive answers are one batch, read as the task runs
// to its next event.
void ReplaySession::queueTimeAnswer(ReplayTask& t, const rec_shim_entry& entry) {
  rec_shim_log& log = t.timeSpace->log->log();
  bool batchStarts = eventIndex_ != t.lastBufferedEvent + 1;
  t.lastBufferedEvent = eventIndex_;
  if (batchStarts) {
    if (log.next < log.count)
      diverge(t,
              fmt::format("the program to read {} more time value(s) from rec's vDSO",
                          log.count - log.next),
              "went on without them");
    log.next = log.count = 0;
  }
  if (log.count >= log.capacity)
    throw RecError(kExitBadTrace,
                   fmt::format("rec: event #{}: more time shim answers in a row than its log holds",
                               eventIndex_));
  log.entries[log.count] = entry;
  log.count = log.count + 1;
}

// ---- The syscall buffer (docs/syscall-buffer.md) ----------------------------

// The syscalls the buffer made without a stop since the task's last event:
// queued in the buffer (one copy of the recorded entries), whose code hands
// them back as the task runs to its next event. Whatever the previous batch
// left unread, the program did not ask for again.
void ReplaySession::onBufferedSyscalls(ReplayTask& t, schema::BufferedSyscalls::Reader b) {
  enqueueBuffered(t, b);
  showBuffered(b);
}

// Writes to the program's output among a batch: shown at the batch's turn,
// in trace order (the recording made them while the task executed alone,
// and the batch precedes the task's next event), also when the batch was
// queued earlier for a task that ran ahead.
void ReplaySession::showBuffered(schema::BufferedSyscalls::Reader b) {
  if (eventIndex_ < echoFrom_) return;
  auto entries = b.getEntries();
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(entries.begin()),
                                         entries.size());
  format::forEachBufferedCall(bytes,
                              [&](const format::BufferedCallHeader& h, const std::byte* entry) {
                                if (int fd = format::bufferedEchoFd(h))
                                  showOutput(fd, format::bufferedEcho(h, entry));
                              });
}

void ReplaySession::enqueueBuffered(ReplayTask& t, schema::BufferedSyscalls::Reader b) {
  if (!t.sysbuf || !t.sysbuf->buffer)
    throw RecError(kExitBadTrace,
                   fmt::format("rec: event #{} holds buffered syscalls of task {}, which has no "
                               "syscall buffer",
                               eventIndex_, t.recordedTid));
  // One batch from the task's last event to its next, though other tasks'
  // events may come between its parts (rec writes a part holding the
  // program's output as soon as it drains it, so that output stays in order).
  bool batchStarts = t.lastSysbufEvent == UINT64_MAX - 1 || t.lastStopEvent > t.lastSysbufEvent;
  t.lastSysbufEvent = eventIndex_;
  if (batchStarts) {
    checkBufferConsumed(t);
    sysbuf::clearQueue(*t.sysbuf);
  }
  auto entries = b.getEntries();
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(entries.begin()),
                                         entries.size());
  switch (sysbuf::enqueue(*t.sysbuf, bytes)) {
    case sysbuf::Enqueued::Ok:
      // Stored files the batch maps: the buffer code maps replay's copy.
      for (const sysbuf::MappedFileRef& ref : sysbuf::mappedFiles(bytes)) {
        const std::string& file = blobs_->path(format::BlobHash::fromBytes(ref.hash));
        // The open file the traced mappings of it used: the slot's from now
        // on (mappings of one open file merge, as in the recording).
        int kept = -1;
        if (t.mappedFile && t.mappedFile->path == file && !t.mappedFile->writable) {
          kept = t.mappedFile->fd;
          t.mappedFile.reset();
        }
        if (!sysbuf::setReplayFile(*t.sysbuf, ref, file, kept))
          throw RecError(kExitBadTrace,
                         fmt::format("rec: event #{}: a buffered mmap of a file replay cannot "
                                     "name (slot {})",
                                     eventIndex_, ref.slot));
      }
      return;
    case sysbuf::Enqueued::Malformed:
      throw RecError(kExitBadTrace,
                     fmt::format("rec: event #{}: buffered syscalls the syscall buffer cannot "
                                 "hand back",
                                 eventIndex_));
    case sysbuf::Enqueued::Full:
      throw RecError(kExitBadTrace, fmt::format("rec: event #{}: more buffered syscalls in a row "
                                                "than the syscall buffer holds",
                                                eventIndex_));
  }
}

// The task reached an event: every buffered syscall queued before it must
// have been made on the way.
void ReplaySession::checkBufferConsumed(ReplayTask& t) {
  if (!t.sysbuf || !t.sysbuf->buffer) return;
  if (uint32_t left = sysbuf::unread(*t.sysbuf)) {
    const auto& next = *reinterpret_cast<const rec_sysbuf_entry*>(
        t.sysbuf->buffer->entries() + t.sysbuf->buffer->header().next);
    const sys::SyscallRow* row = sys::findSyscall(next.nr);
    diverge(t,
            fmt::format("the program to make {} through the syscall buffer ({} bytes of "
                        "buffered calls left)",
                        row ? std::string(row->name) : fmt::format("syscall {}", next.nr), left),
            "it went on without");
  }
}

// The recording patched the site of this syscall at its exit (and mapped
// the process's buffer first, or a trampoline page): so does replay.
void ReplaySession::applyBufferPatch(ReplayTask& t, schema::SyscallEvent::Reader e,
                                     bool executed) {
  StraySignals strays;  // replay's own signals: the recording's come from the trace
  // (an executed call, mmap, has been made: the task is at its exit)
  if (!executed) skipToSyscallExit(t.task, e.getResult(), strays);
  const SysbufPatch patch = replayPatch(t, e.getBufferPatch(), strays);
  // A task replay left parked right after this site's `syscall` (its last
  // event) ran on past it in the recording before the patch (the recorder
  // patches only then), so it goes on through the slot's copy of the
  // displaced compare, as it would have.
  for (auto& [id, u] : tasks_)
    if (u.get() != &t && u->sysbuf == t.sysbuf && u->park != ReplayTask::Park::Dead &&
        u->park != ReplayTask::Park::Initial && u->park != ReplayTask::Park::InKernel)
      sysbuf::moveOutOfSite(u->task, patch);
  t.task.mutableRegs().setResult(e.getResult());
  t.lastExecutedNumber = e.getNumber();
  t.park = ReplayTask::Park::Resumable;
}

// The recording mapped the process its buffer at this call's exit (a call
// from the buffer's traced fallback in a process that had none: a fork's
// child whose calls come from sites its parent patched): so does replay.
void ReplaySession::startBufferAtExit(ReplayTask& t, schema::SyscallEvent::Reader e,
                                      bool executed) {
  if (!t.sysbuf || t.sysbuf->buffer)
    throw RecError(kExitBadTrace,
                   fmt::format("rec: event #{} maps a syscall buffer where there cannot be one",
                               eventIndex_));
  StraySignals strays;  // replay's own signals: the recording's come from the trace
  if (!executed) skipToSyscallExit(t.task, e.getResult(), strays);
  if (!sysbuf::start(t.task, *t.sysbuf, REC_SHIM_REPLAY, strays))
    throw RecError(kExitUnsupported,
                   fmt::format("rec: cannot map the syscall buffer in task {}", t.task.tid()));
  t.task.mutableRegs().setResult(e.getResult());
  t.lastExecutedNumber = e.getNumber();
  t.park = ReplayTask::Park::Resumable;
}

// The sites the recorder patched as soon as an executable file was mapped
// (at exec, or this mmap's exit), in its order; the task stands where it
// did then.
void ReplaySession::applyBufferPatches(ReplayTask& t,
                                       capnp::List<schema::BufferPatch>::Reader patches) {
  StraySignals strays;
  for (auto p : patches) replayPatch(t, p, strays);
}

// One site the recording patched, in the state it patched it in (the
// process's buffer mapped first when the patch started it).
SysbufPatch ReplaySession::replayPatch(ReplayTask& t, schema::BufferPatch::Reader p,
                                       StraySignals& strays) {
  if (p.getRdtsc()) return replayRdtscPatch(t, p, strays);
  if (!t.sysbuf || p.getStartsBuffer() == (t.sysbuf->buffer != nullptr))
    throw RecError(kExitBadTrace,
                   fmt::format("rec: event #{} patches a syscall site where the syscall buffer "
                               "cannot be in that state",
                               eventIndex_));
  if (p.getStartsBuffer() && !sysbuf::start(t.task, *t.sysbuf, REC_SHIM_REPLAY, strays))
    throw RecError(kExitUnsupported,
                   fmt::format("rec: cannot map the syscall buffer in task {}", t.task.tid()));
  const SysbufPatch patch{.site = p.getSite(),
                          .slot = p.getSlot(),
                          .newPage = p.getNewPage(),
                          .code = std::nullopt};
  sysbuf::applyPatch(t.task, *t.sysbuf, patch, strays, true);
  return patch;
}

// An rdtsc site the recording patched to ask the time shim (mapping the
// process's time log first when it did).
SysbufPatch ReplaySession::replayRdtscPatch(ReplayTask& t, schema::BufferPatch::Reader p,
                                            StraySignals& strays) {
  // (startsBuffer: the recording mapped the buffer with the log, in one stop)
  if (!t.sysbuf || !t.timeSpace || p.getRdtsc() > 2 ||
      p.getStartsTimeLog() == (t.timeSpace->log != nullptr) ||
      (p.getStartsBuffer() && (!p.getStartsTimeLog() || t.sysbuf->buffer)))
    throw RecError(kExitBadTrace,
                   fmt::format("rec: event #{} patches an rdtsc site where the time shim cannot "
                               "be in that state",
                               eventIndex_));
  if (p.getStartsBuffer()) {
    if (!sysbuf::startWithTimeLog(t.task, *t.sysbuf, *t.timeSpace, REC_SHIM_REPLAY, strays))
      throw RecError(kExitUnsupported, fmt::format("rec: cannot map the time shim's log and the "
                                                   "syscall buffer in task {}",
                                                   t.task.tid()));
  } else if (p.getStartsTimeLog() &&
             !time_shim::startLog(t.task, *t.timeSpace, REC_SHIM_REPLAY, strays)) {
    throw RecError(kExitUnsupported,
                   fmt::format("rec: cannot map the time shim's log in task {}", t.task.tid()));
  }
  const SysbufPatch patch{.site = p.getSite(),
                          .slot = p.getSlot(),
                          .newPage = p.getNewPage(),
                          .rdtsc = static_cast<uint8_t>(p.getRdtsc()),
                          .length = p.getLength(),
                          .code = std::nullopt};
  sysbuf::applyPatch(t.task, *t.sysbuf, patch, strays, true, rdtscPatcher_.has_value());
  if (rdtscPatcher_)
    rdtscPatcher_->noteSite(sysbuf::rdtscFallback(patch),
                            patch.rdtsc == 2 ? TscInstruction::Rdtscp : TscInstruction::Rdtsc);
  return patch;
}

// Leaves the task at the seccomp stop of an emulated syscall; its next event
// decides how the recorded result is applied (see skipSyscall, INJECT_AT_SYSCALL_EXIT).
void ReplaySession::parkSkipPending(ReplayTask& t, schema::SyscallEvent::Reader e,
                                    bool sigsuspend) {
  t.skipArgs = t.task.regs().syscallArgs();
  t.skipNumber = e.getNumber();
  t.skipResult = e.getResult();
  t.skipIsSigsuspend = sigsuspend;
  t.park = ReplayTask::Park::SkipPending;
}

// The registers recorded at the syscall's entry, decoded against the task's
// previous syscall (task_state.h: predictSyscallEntry).
void ReplaySession::decodeEntryRegisters(ReplayTask& t, schema::SyscallEvent::Reader e) {
  t.entryRegs.reset();
  if (!e.hasRegisters()) return;
  auto r = e.getRegisters();
  if (r.getRaw().size() != 0) {
    t.entryRegs = rawRegisters(r);
  } else {
    std::array<uint64_t, 6> args{};
    for (unsigned i = 0; i < 6 && i < e.getArgs().size(); ++i) args[i] = e.getArgs()[i];
    RegisterDelta delta{r.getChangedMask(), {}};
    for (uint64_t v : r.getChanged()) delta.values.push_back(v);
    t.entryRegs = applyRegisterDelta(
        predictSyscallEntry(t.lastSyscallRegs, e.getNumber(), args, e.getIp()), delta);
  }
  t.lastSyscallRegs = *t.entryRegs;
}

// An emulated ptrace call that changed its tracee's registers (SETREGS,
// POKEUSER): the tracee, parked at the ptrace stop it was in, gets the same
// ones (its memory, POKEDATA: taskWrites).
void ReplaySession::applyToPtraceTracee(schema::SyscallEvent::Reader e) {
  if (e.getPtraceTracee() == 0) return;
  auto it = tasks_.find(e.getPtraceTracee());
  if (it == tasks_.end() || it->second->park == ReplayTask::Park::Dead)
    throw RecError(kExitBadTrace, fmt::format("rec: event #{}: ptrace of task {}, which is not "
                                              "alive",
                                              eventIndex_, e.getPtraceTracee()));
  Task& tracee = it->second->task;
  auto regs = e.getTraceeRegisters();
  if (regs.size() == sizeof(user_regs_struct))
    std::memcpy(&tracee.mutableRegs().raw(), regs.begin(), sizeof(user_regs_struct));
  if (auto xstate = e.getTraceeXstate(); xstate.size() > 0) {
    std::vector<uint8_t> copy(xstate.begin(), xstate.end());
    iovec iov{copy.data(), copy.size()};
    if (::ptrace(PTRACE_SETREGSET, tracee.tid(), NT_X86_XSTATE, &iov) != 0)
      throwErrno(kExitBadTrace, fmt::format("event #{}: setting the FP state of task {}",
                                            eventIndex_, e.getPtraceTracee()));
  }
  for (auto w : e.getTraceeUserWrites()) {
    uint64_t word = 0;
    std::memcpy(&word, w.getData().begin(), std::min<size_t>(w.getData().size(), sizeof word));
    if (::ptrace(PTRACE_POKEUSER, tracee.tid(), w.getAddress(), word) != 0)
      throwErrno(kExitBadTrace, fmt::format("event #{}: writing struct user at {} of task {}",
                                            eventIndex_, w.getAddress(), e.getPtraceTracee()));
  }
}

void ReplaySession::onSyscall(ReplayTask& t, schema::SyscallEvent::Reader e) {
  decodeEntryRegisters(t, e);
  const sys::SyscallRow* row = sys::findSyscall(e.getNumber());
  bool failed = e.getResult() < 0 && e.getResult() > -4096;
  bool executed = row && row->support == sys::Support::Executed && !e.getRefused() && !failed;
  if (t.park == ReplayTask::Park::InKernel) {
    // An executed blocking syscall (vfork) started at its SyscallEnter event.
    pinRecorded(t, e.getProcessCpu());
    waitSyscallExit(t);
    completeForkLike(t, e);
    t.park = ReplayTask::Park::Resumable;
    t.lastExecutedNumber = e.getNumber();
    return;
  }
  reachSeccomp(t, describeRecordedSyscall(e));
  // Its user code from this syscall's return on ran on the CPU rec moved it to.
  pinRecorded(t, e.getProcessCpu());
  checkBufferConsumed(t);
  checkSyscallMatches(t, e);
  if (row && row->hook == sys::Hook::SigSuspend && !e.getRefused()) {
    // Only a signal ends it, and it must then really wait with its
    // temporary mask: decided at the next event (INJECT_AT_SYSCALL_EXIT).
    parkSkipPending(t, e, true);
    return;
  }

  auto seccompRequest = programSeccompRequest(e.getNumber(), t.task.regs().syscallArgs());
  if (seccompRequest && !e.getRefused()) {
    // The program's filter acts again on replay (seccomp_filter.h).
    StraySignals strays;
    skipToSyscallExit(t.task, e.getResult(), strays);
    int64_t got = installProgramFilter(t.task, *seccompRequest, strays);
    if (got != e.getResult())
      diverge(t, fmt::format("its seccomp filter to install with {:#x}", e.getResult()),
              fmt::format("got {:#x}", got));
    t.task.mutableRegs().setResult(e.getResult());
    t.lastExecutedNumber = e.getNumber();
    t.park = ReplayTask::Park::Resumable;
    return;
  }
  if (row && row->hook == sys::Hook::Rlimit && !failed && !e.getRefused() && applyRlimit(t, e))
    return;
  if (!executed) {
    for (auto w : e.getWrites())
      t.task.write(w.getAddress(), w.getData().begin(), w.getData().size());
    for (auto w : e.getTaskWrites()) {
      // A process that was recorded: its memory, whichever task of it is asked.
      auto target = tasks_.find(w.getTask());
      if (target != tasks_.end() && target->second->park != ReplayTask::Park::Dead)
        target->second->task.write(w.getAddress(), w.getData().begin(), w.getData().size());
    }
    for (auto u : e.getFileUpdates()) {
      auto data = u.getData();
      blobs_->updateSharedCopy(u.getDevice(), u.getInode(), u.getSize(), u.getOffset(),
                               u.getZeroed(),
                               {reinterpret_cast<const std::byte*>(data.begin()), data.size()});
    }
    echoOutput(t, e);
    applyToPtraceTracee(e);
    if (e.getStartsTimeLog()) {
      startTimeLog(t, e);
      return;
    }
    if (e.hasBufferPatch()) {
      applyBufferPatch(t, e, false);
      return;
    }
    if (e.getStartsBuffer()) {
      startBufferAtExit(t, e, false);
      return;
    }
    parkSkipPending(t, e, false);
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
    case sys::Hook::Clone: {
      withoutNamespaces(t);
      runForkLike(t, e.getNewTask(), static_cast<int32_t>(e.getResult()), e.getNewTaskCpu());
      waitSyscallExit(t);
      completeForkLike(t, e);
      break;
    }
    default: {
      auto programArgs = t.task.regs().syscallArgs();
      if (row->hook == sys::Hook::Mremap &&
          static_cast<uint64_t>(e.getResult()) != e.getArgs()[0]) {
        Registers& r = t.task.mutableRegs();
        r.setSyscallArg(3, r.syscallArgs()[3] | MREMAP_MAYMOVE | MREMAP_FIXED);
        r.setSyscallArg(4, static_cast<uint64_t>(e.getResult()));
      }
      t.task.resume(Task::Resume::Syscall);
      waitSyscallExit(t);
      if (t.task.regs().syscallArgs() != programArgs)
        t.task.mutableRegs().setSyscallArgs(programArgs);
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
  // A buffered executed row (mmap) patched its site at this exit.
  if (e.hasBufferPatch()) applyBufferPatch(t, e, true);
  else if (e.getStartsBuffer()) startBufferAtExit(t, e, true);
}

}  // namespace rec
