// Traced syscalls: what the recorder does at their entry and exit, and the
// irregular ones (mmap of files, output fds, refusals) by hook.

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
#include "syscall_table.h"

namespace rec {

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
  t.argsRewritten = false;

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
  if (answerAtEntry(t)) return;
  if (carryOutSeccompRequest(t)) return;
  for (int index : sys::stringArgs(*t.row)) t.strings.push_back(t.task.readCString(t.args[index]));
  if (t.row->hook == sys::Hook::Clone && t.nr == SYS_clone && (t.args[0] & CLONE_UNTRACED)) {
    // An untraced child would escape rec, and die of its inherited seccomp
    // filter's first trace request. The program's flags come back at the
    // syscall's exit (the kernel leaves argument registers as they were).
    t.task.mutableRegs().setSyscallArg(0, t.args[0] & ~uint64_t{CLONE_UNTRACED});
    t.argsRewritten = true;
  }
  scheduler_->run(t, Task::Resume::Syscall);
  // A blocking syscall lets other tasks run meanwhile, once it waits in the
  // kernel. fork-like calls stay current until their fork event, which
  // names the child first.
  if (t.row->mayBlock() && t.row->hook != sys::Hook::Clone) {
    if (auto stop = scheduler_->stopUnlessAsleep(t)) {
      handleStop(t, *stop);
      return;
    }
    t.enterAnnounced = false;
    unannounced_.push_back(&t);
    scheduler_->release(t);
  }
}

// The time syscalls that reach rec (a process's first, before its time shim
// has a log; those of multi-threaded processes; all of them with
// REC_TIME_SHIM=off) are answered by rec itself at the seccomp stop, saving
// the syscall-exit stop: the tracer reads the same system-wide clocks the
// kernel would. The event is the one the syscall would have produced, so
// replay does not know the difference. Anything unusual (a per-process
// clock, a timezone argument, memory the task cannot write) goes to the
// kernel as usual.
bool RecordSession::answerAtEntry(RecordTask& t) {
  if (t.row->hook != sys::Hook::TimeAtEntry) return false;
  timespec now;
  timeval tv;
  int64_t result = 0;
  std::span<const std::byte> written;
  auto answer = [&](uint64_t addr, const auto& value) {
    written = std::as_bytes(std::span(&value, 1));
    return t.task.writeAsTask(addr, &value, sizeof value);
  };
  switch (t.nr) {
    case SYS_clock_gettime:
      if (!rec_shim_system_wide_clock(static_cast<long>(t.args[0])) || t.args[1] == 0) return false;
      ::clock_gettime(static_cast<clockid_t>(t.args[0]), &now);
      if (!answer(t.args[1], now)) return false;
      break;
    case SYS_gettimeofday:
      if (t.args[1] != 0) return false;
      ::clock_gettime(CLOCK_REALTIME, &now);
      tv = timeval{now.tv_sec, now.tv_nsec / 1000};
      if (t.args[0] != 0 && !answer(t.args[0], tv)) return false;
      break;
    case SYS_time:
      ::clock_gettime(CLOCK_REALTIME, &now);
      result = now.tv_sec;
      if (t.args[0] != 0 && !answer(t.args[0], result)) return false;
      break;
    default:
      return false;
  }
  bool startsLog = false;
  if (timeShim_ && t.timeSpace && !t.timeSpace->log && !t.timeSpace->disabled) {
    // The process's first time syscall: from now on its shim answers
    // without a stop. Mapping the log takes syscalls of the task's own, made
    // from this syscall's exit.
    StraySignals strays;
    skipToSyscallExit(t.task, result, strays);
    startsLog = time_shim::startLog(t.task, *t.timeSpace, REC_SHIM_RECORD, strays);
    if (!startsLog) t.timeSpace->disabled = true;
    absorbStrays(t, strays);
  } else {
    Registers& r = t.task.mutableRegs();
    r.setSyscallNumber(-1);  // skipped: the kernel returns the result set here
    r.setResult(result);
  }
  capnp::MallocMessageBuilder msg;
  finishSyscallEvent(t, msg, written);
  if (startsLog) msg.getRoot<schema::Event>().getSyscall().setStartsTimeLog(true);
  emit(t, msg);
  t.returnedFromSyscall(t.task.regs());
  continueAfterSyscall(t);
  return true;
}

// A program's own seccomp request (seccomp_filter.h): rec installs the
// filter itself, behind an exemption for rec's syscalls, and replay
// installs it again at this event, so the filter's ERRNO, SIGSYS and kills
// come from the kernel both times.
bool RecordSession::carryOutSeccompRequest(RecordTask& t) {
  auto request = programSeccompRequest(t.nr, t.args);
  if (!request) return false;
  int64_t result = 0;
  if (request->kind == ProgramSeccompRequest::Kind::GetMode) {
    auto mode = programSeccompMode(t.task.tid());
    if (!mode) return false;
    result = *mode;
    Registers& r = t.task.mutableRegs();
    r.setSyscallNumber(-1);  // skipped: the kernel returns the result set here
    r.setResult(result);
  } else {
    StraySignals strays;
    skipToSyscallExit(t.task, 0, strays);
    result = installProgramFilter(t.task, *request, strays);
    t.task.mutableRegs().setResult(result);
    absorbStrays(t, strays);
  }
  capnp::MallocMessageBuilder msg;
  finishSyscallEvent(t, msg, {});
  emit(t, msg);
  t.returnedFromSyscall(t.task.regs());
  continueAfterSyscall(t);
  return true;
}

bool RecordSession::movesDataToOutput(RecordTask& t) {
  long outFd;
  switch (t.nr) {
    case SYS_sendfile:
      outFd = static_cast<long>(t.args[0]);
      break;
    case SYS_copy_file_range:
    case SYS_splice:
      outFd = static_cast<long>(t.args[2]);
      break;
    case SYS_tee:
      outFd = static_cast<long>(t.args[1]);
      break;
    default:
      return false;
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
  t.returnedFromSyscall(r);
  if (options_.verbose)
    fmt::print(stderr, "rec: refused {} with {}\n", t.row ? t.row->name : "an unknown syscall",
               sys::errnoName(error));
  t.nr = -1;
  scheduler_->run(t);
}

void RecordSession::finishSyscallEvent(RecordTask& t, capnp::MallocMessageBuilder& msg,
                                       std::span<const std::byte> written) {
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
    if (ranges.size() == 1 && written.size() == r.len)
      contents.emplace_back(written.begin(), written.end());
    else
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
      if (t.nr == SYS_dup)
        fds.duplicate(static_cast<long>(t.args[0]), result);
      else
        fds.duplicate(static_cast<long>(t.args[0]), static_cast<long>(t.args[1]));
      break;
    case sys::Hook::Fcntl:
      if (t.args[1] == F_DUPFD || t.args[1] == F_DUPFD_CLOEXEC)
        fds.duplicate(static_cast<long>(t.args[0]), result);
      break;
    case sys::Hook::Close:
      if (t.nr == SYS_close)
        fds.close(static_cast<long>(t.args[0]));
      else
        fds.closeRange(t.args[0], t.args[1]);
      break;
    case sys::Hook::Clone:
      s.setNewTask(t.newTask);
      break;
    case sys::Hook::Unshare:
      if (t.args[0] & CLONE_FILES) t.fds = fds.copy();
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
      if (result >= 0)
        patchRdtsc(t, hash, fdPath, m.getStart(), m.getEnd(), t.args[5],
                   static_cast<int>(t.args[2]));
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
  if (parent->state() == RecordTask::State::VforkHeld) onSyscallExit(*parent);
}

void RecordSession::onSyscallExit(RecordTask& t) {
  if (t.vforkChild) {
    // Its event follows the child's exec or exit (releaseVforkParent).
    t.setState(RecordTask::State::VforkHeld);
    return;
  }
  if (std::exchange(t.argsRewritten, false)) t.task.mutableRegs().setSyscallArgs(t.args);
  if (t.execSeen) {
    completeExec(t);
  } else if (t.nr >= 0 && t.row) {
    capnp::MallocMessageBuilder msg;
    finishSyscallEvent(t, msg);
    emit(t, msg);
    t.returnedFromSyscall(t.task.regs());
  }
  continueAfterSyscall(t);
}

void RecordSession::continueAfterSyscall(RecordTask& t) {
  bool yield = scheduler_->shouldSwitchAfterSyscall(t);
  t.nr = -1;
  if (scheduler_->isCurrent(t)) {
    if (yield && scheduler_->othersWaiting())
      scheduler_->makeReady(t);
    else
      scheduler_->run(t);
  } else if (!scheduler_->current()) {
    scheduler_->run(t);
  } else {
    scheduler_->makeReady(t);
  }
}

// Chaos: programs size thread pools and work splits by the CPUs they may
// use; pretending another count shakes out other schedules. The pretended
// mask is what gets recorded, so replay sees it too.
void RecordSession::pretendCpuCount(RecordTask& t, int64_t result) {
  int cpus = scheduler_->pretendedCpus();
  if (!cpus || t.nr != SYS_sched_getaffinity || result <= 0) return;
  std::vector<uint8_t> mask(static_cast<size_t>(result), 0);
  for (int cpu = 0; cpu < cpus && cpu / 8 < result; ++cpu)
    mask[cpu / 8] |= static_cast<uint8_t>(1u << (cpu % 8));
  t.task.write(t.args[2], mask.data(), mask.size());
}

}  // namespace rec
