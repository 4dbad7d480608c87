// Traced syscalls: what the recorder does at their entry and exit, and the
// irregular ones (mmap of files, output fds, refusals) by hook.

#include <elf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <x86intrin.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <sstream>

#include "buffered_calls.h"
#include "code_patch.h"
#include "errors.h"
#include "exit_codes.h"
#include "process_maps.h"
#include "record_session.h"
#include "record_task.h"
#include "remote_syscall.h"
#include "scheduler.h"
#include "scoped_fd.h"
#include "seccomp_filter.h"
#include "signals.h"
#include "syscall_table.h"
#include "task_state.h"

namespace rec {

namespace {
// Files mapped larger than this are stored as their data extents
// (BlobStore::storeSparse), whether or not they have holes: a shared
// mapping's file is read afresh at every mmap, any other file once (and
// only past the trace format's blob limit do its contents need pieces).
constexpr uint64_t kWholeSharedFileLimit = 64ull << 20;
constexpr uint64_t kWholeFileLimit = 512ull << 20;
}  // namespace

void RecordSession::onSeccomp(RecordTask& t) {
  if (t.interruptNext) raiseInterruptingSignal(t);
  if (!t.heldSignals.empty()) {
    injectHeldSignal(t);
    return;
  }
  const Registers& regs = t.task.regs();
  t.compat = t.task.eventMessage() == sys::kSeccompCompatData;
  t.entryRegs = regs.raw();
  if (options_.checkMemory) {
    t.entryMasked = pendingOutputsBeside(t);
    t.entryDigest = digestMemory(t.task.tid(), kRecPages, nullptr, t.entryMasked);
  }
  t.nr = regs.syscallNumber();
  t.args = t.compat ? regs.compatSyscallArgs() : regs.syscallArgs();
  t.row = t.compat ? sys::findCompatSyscall(t.nr) : sys::findSyscall(t.nr);
  if (t.row && t.compat) t.nr = t.row->number;
  t.strings.clear();
  t.newTask = 0;
  t.execSeen = false;
  t.argsRewritten = false;
  t.numberRewritten = false;
  if (t.compat && t.row && t.row->support == sys::Support::Passthrough) {
    // exit/exit_group by int 0x80: as a native one, it runs without an event
    // (replay lets it through the same way).
    t.nr = -1;
    scheduler_->run(t);
    return;
  }

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
  if (parallel_ && t.row->hook == sys::Hook::Ptrace && !scheduler_->alone(t)) {
    // rec answers a ptrace request itself, from its tracee's state: that
    // tracee must not be executing meanwhile (a PTRACE_INTERRUPT of a
    // running tracee would find nothing to stop). startAlone answers it.
    scheduler_->parkExclusive(t);
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
  if (parallel_ && needsExclusive(t)) {
    if (t.sharesMemory && t.sysbuf) sysbuf::setBlockStreams(*t.sysbuf, false);
    if (!scheduler_->alone(t)) {
      scheduler_->parkExclusive(t);
      return;
    }
    scheduler_->beginExclusive(t);
  }
  enterTracedSyscall(t);
}

// A task parked at a syscall entry until alone (Scheduler::parkExclusive)
// is alone now.
void RecordSession::startAlone(RecordTask& t) {
  scheduler_->beginExclusive(t);
  if (t.row->hook == sys::Hook::Ptrace && answerAtEntry(t)) return;
  enterTracedSyscall(t);
}

void RecordSession::enterTracedSyscall(RecordTask& t) {
  scheduler_->run(t, Task::Resume::Syscall);
  // A blocking syscall lets other tasks run meanwhile, once it waits in the
  // kernel. fork-like calls stay current until their fork event, which
  // names the child first.
  if (t.row->mayBlock() && t.row->hook != sys::Hook::Clone) {
    // On another CPU than rec's, beside others (all independent of it:
    // parallel.md), rec does not spin until it sleeps: whether it does
    // orders nothing there, and the spin would keep rec from the others'
    // stops for a cross-CPU wake-up or two. Its exit comes as after a block.
    const bool farBeside = !scheduler_->alone(t) && !cpus_.empty() && t.cpu != cpus_.front();
    if (auto stop = farBeside ? std::nullopt : scheduler_->stopUnlessAsleep(t)) {
      handleStop(t, *stop);
      return;
    }
    t.enterAnnounced = false;
    unannounced_.push_back(&t);
    scheduler_->release(t);
  }
}

// Syscalls rec answers itself at the seccomp stop, without the kernel: the
// event is the one the syscall would have produced, so replay does not know
// the difference.
bool RecordSession::answerAtEntry(RecordTask& t) {
  if (inVsyscallPage(t.task.regs().ip())) return answerVsyscall(t);
  switch (t.row->hook) {
    case sys::Hook::TimeAtEntry:
      return answerTime(t);
    case sys::Hook::Prctl:
      return answerPrctl(t);
    case sys::Hook::Affinity:
      return answerSetAffinity(t);
    case sys::Hook::Mmap:
      return refuseUnmappable(t);
    case sys::Hook::OwnMemory:
      return refuseForeignMemory(t);
    case sys::Hook::Ptrace:
      return answerPtrace(t);
    case sys::Hook::Wait:
      return answerWait(t);
    default:
      return false;
  }
}

// Completes a syscall rec answered at its seccomp stop: the kernel skips it
// and returns `result`. `written` is what rec wrote to the call's one output
// range, if any.
void RecordSession::completeAtEntry(
    RecordTask& t, int64_t result, std::span<const std::byte> written,
    const std::function<void(schema::SyscallEvent::Builder)>& more) {
  Registers& r = t.task.mutableRegs();
  r.setSyscallNumber(-1);  // skipped: the kernel returns the result set here
  r.setResult(result);
  capnp::MallocMessageBuilder msg;
  finishSyscallEvent(t, msg, written);
  if (more) more(msg.getRoot<schema::Event>().getSyscall());
  emit(t, msg);
  t.returnedFromSyscall(t.task.regs());
  continueAfterSyscall(t);
}

// The time syscalls that reach rec (a process's first, before its time shim
// has a log; those of multi-threaded processes; all of them with
// REC_TIME_SHIM=off) are answered by rec itself, saving the syscall-exit
// stop: the tracer reads the same system-wide clocks the kernel would.
// Anything unusual (a per-process clock, a timezone argument, memory the
// task cannot write) goes to the kernel as usual.
bool RecordSession::answerTime(RecordTask& t) {
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
  if (!timeShim_ || !t.timeSpace || t.timeSpace->log || t.timeSpace->disabled) {
    completeAtEntry(t, result, written);
    return true;
  }
  // The process's first time syscall: from now on its shim answers without
  // a stop. Mapping the log takes syscalls of the task's own, made from this
  // syscall's exit.
  StraySignals strays;
  skipToSyscallExit(t.task, result, strays);
  bool startsLog = startTimeLog(t, *t.timeSpace, strays);
  absorbStrays(t, strays);
  capnp::MallocMessageBuilder msg;
  finishSyscallEvent(t, msg, written);
  if (startsLog) msg.getRoot<schema::Event>().getSyscall().setStartsTimeLog(true);
  emit(t, msg);
  t.returnedFromSyscall(t.task.regs());
  continueAfterSyscall(t);
  return true;
}

// A program's own seccomp filter or strict mode (seccomp_filter.h): rec
// installs it itself, behind an exemption for rec's syscalls, and replay
// installs it again at this event, so the filter's ERRNO, SIGSYS and kills
// come from the kernel both times.
bool RecordSession::carryOutSeccompRequest(RecordTask& t) {
  auto request = programSeccompRequest(t.nr, t.args);
  if (!request) return false;
  StraySignals strays;
  skipToSyscallExit(t.task, 0, strays);
  int64_t result = installProgramFilter(t.task, *request, strays);
  t.task.mutableRegs().setResult(result);
  absorbStrays(t, strays);
  capnp::MallocMessageBuilder msg;
  finishSyscallEvent(t, msg);
  emit(t, msg);
  t.returnedFromSyscall(t.task.regs());
  continueAfterSyscall(t);
  return true;
}

// The legacy vsyscall page (0xffffffffff600000): a call there traps into the
// kernel, which emulates gettimeofday, time or getcpu after running the
// seccomp filter with that syscall's number. No syscall-exit stop follows,
// and the kernel kills a task whose tracer changes its ip or number, so rec
// answers at the seccomp stop (skipping, which the kernel allows) and the
// replay skips the same way.
bool RecordSession::answerVsyscall(RecordTask& t) {
  int64_t result = 0;
  auto put = [&](uint64_t addr, const auto& value) {
    if (addr != 0 && !t.task.writeAsTask(addr, &value, sizeof value)) result = -EFAULT;
  };
  timespec now;
  ::clock_gettime(CLOCK_REALTIME, &now);
  switch (t.nr) {
    case SYS_gettimeofday: {
      struct timezone tz {};
      timeval ignored;
      ::gettimeofday(&ignored, &tz);
      put(t.args[0], timeval{now.tv_sec, now.tv_nsec / 1000});
      put(t.args[1], tz);
      break;
    }
    case SYS_time:
      put(t.args[0], int64_t{now.tv_sec});
      if (result == 0) result = now.tv_sec;
      break;
    case SYS_getcpu: {
      unsigned cpu = 0, node = 0;
      ::getcpu(&cpu, &node);                               // (the node of rec's CPU)
      if (t.cpu >= 0) cpu = static_cast<unsigned>(t.cpu);  // the task's own CPU
      put(t.args[0], cpu);
      put(t.args[1], node);
      break;
    }
    default:
      result = -ENOSYS;  // the kernel emulates no other call there
  }
  completeAtEntry(t, result);
  return true;
}

// prctl options about state rec itself sets in every tracee.
// - rec makes RDTSC trap; the program's own PR_SET_TSC must not undo that.
//   rec keeps the mode the program asked for and answers PR_GET_TSC with it;
//   under PR_TSC_SIGSEGV the program's RDTSC then faults into its own
//   handler (record_signals.cc).
// - rec's seccomp filter puts every tracee in SECCOMP_MODE_FILTER:
//   PR_GET_SECCOMP reports the mode the program put itself in.
bool RecordSession::answerPrctl(RecordTask& t) {
  switch (t.args[0]) {
    case PR_GET_SECCOMP:
      completeAtEntry(t, t.seccompMode);
      return true;
    case PR_GET_TSC: {
      int mode = t.tscMode;
      bool ok = t.task.writeAsTask(t.args[1], &mode, sizeof mode);
      completeAtEntry(t, ok ? 0 : -EFAULT,
                      ok ? std::as_bytes(std::span(&mode, 1)) : std::span<const std::byte>{});
      return true;
    }
    case PR_SET_TSC:
      if (t.args[1] != PR_TSC_ENABLE && t.args[1] != PR_TSC_SIGSEGV) {
        completeAtEntry(t, -EINVAL);
        return true;
      }
      t.tscMode = static_cast<int>(t.args[1]);
      if (t.timeSpace && t.timeSpace->log) writeTscControl(t);
      completeAtEntry(t, 0);
      return true;
    default:
      return false;
  }
}

// sched_setaffinity for the program's own tasks would undo rec's pinning of
// each process to its recorded CPU (docs/parallel.md "CPU placement"). rec
// checks the mask as the kernel would and reports success without applying it.
bool RecordSession::answerSetAffinity(RecordTask& t) {
  if (t.nr != SYS_sched_setaffinity) return false;
  pid_t pid = static_cast<pid_t>(t.args[0]);
  if (pid != 0 && !tasks_.count(pid)) return false;  // not a tracee: the kernel's business
  uint8_t mask[128] = {};
  size_t len = std::min<uint64_t>(t.args[1], sizeof mask);
  if (t.task.read(t.args[2], mask, len) != len) {
    completeAtEntry(t, -EFAULT);
    return true;
  }
  long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  bool any = false;
  for (long cpu = 0; cpu < online && static_cast<size_t>(cpu / 8) < len; ++cpu)
    any = any || (mask[cpu / 8] & (1u << (cpu % 8)));
  completeAtEntry(t, any ? 0 : -EINVAL);
  return true;
}

// A file mapping replays from the file's contents in the trace. Devices
// (other than /dev/zero) and anonymous-inode files (perf ring buffers,
// io_uring, DMA buffers) have no contents to store: the kernel fills them
// behind the program's back. Mapping them fails with ENODEV, as mapping a
// device without an mmap method does.
bool RecordSession::refuseUnmappable(RecordTask& t) {
  if (t.nr != SYS_mmap || (t.args[3] & MAP_ANONYMOUS)) return false;
  std::string fdPath = fmt::format("/proc/{}/fd/{}", t.task.tid(), static_cast<int>(t.args[4]));
  struct stat st;
  if (::stat(fdPath.c_str(), &st) != 0 || S_ISREG(st.st_mode)) return false;
  if (S_ISCHR(st.st_mode) && readLink(fdPath) == "/dev/zero") return false;
  if (options_.verbose)
    fmt::print(stderr, "rec: refused mmap of {} with ENODEV\n", readLink(fdPath));
  completeAtEntry(t, -ENODEV);
  return true;
}

// process_vm_writev into the caller's own process is an ordinary output (the
// row's iovec out param, restored on replay); into another recorded process
// it is a write into that process's memory (taskWrites, as through
// /proc/PID/mem: finishSyscallEvent); into a process rec does not record it
// would change memory neither the trace nor replay knows about.
bool RecordSession::refuseForeignMemory(RecordTask& t) {
  pid_t target = static_cast<pid_t>(t.args[0]);
  struct stat st;
  if (target > 0 &&
      ::stat(fmt::format("/proc/{}/task/{}", t.task.tgid(), target).c_str(), &st) == 0)
    return false;
  if (target > 0 && tasks_.count(target) && tasks_[target]->alive()) return false;
  refuse(t, ENOSYS);
  return true;
}

// The recorded process whose memory process_vm_writev wrote, when that is
// not the caller's own (0 otherwise).
pid_t RecordSession::foreignMemoryTarget(const RecordTask& t, int64_t result) const {
  if (t.row->hook != sys::Hook::OwnMemory || result <= 0) return 0;
  pid_t target = static_cast<pid_t>(t.args[0]);
  auto it = tasks_.find(target);
  if (it == tasks_.end() || it->second->task.tgid() == t.task.tgid()) return 0;
  return target;
}

bool RecordSession::movesDataToOutput(RecordTask& t) {
  const sys::FdWrite& w = t.row->fdWrite;
  return w.data == sys::Data::Kernel && t.fds &&
         t.fds->originOf(static_cast<long>(t.args[w.fdArg])) != 0;
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
  s.setCompat32(t.compat);
  s.setIp(r.ip());
  setEntryRegisters(t, s);
  attachMemoryDigest(t, msg, t.entryDigest, t.entryMasked);
  emit(t, msg);
  t.returnedFromSyscall(r);
  if (options_.verbose)
    fmt::print(stderr, "rec: refused {} with {}\n", t.row ? t.row->name : "an unknown syscall",
               sys::errnoName(error));
  t.nr = -1;
  scheduler_->run(t);
}

// Stored as what differs from their prediction (task_state.h); the event's
// number, arguments and ip must be set first.
void RecordSession::setEntryRegisters(RecordTask& t, schema::SyscallEvent::Builder s) {
  std::array<uint64_t, 6> args;
  for (unsigned i = 0; i < 6; ++i) args[i] = s.getArgs()[i];
  user_regs_struct predicted =
      predictSyscallEntry(t.lastSyscallRegs, s.getNumber(), args, s.getIp());
  RegisterDelta delta = registerDelta(predicted, t.entryRegs);
  auto r = s.initRegisters();
  r.setChangedMask(delta.mask);
  auto values = r.initChanged(static_cast<unsigned>(delta.values.size()));
  for (unsigned i = 0; i < delta.values.size(); ++i) values.set(i, delta.values[i]);
  t.lastSyscallRegs = t.entryRegs;
}

void RecordSession::attachMemoryDigest(RecordTask& t, capnp::MallocMessageBuilder& msg,
                                       const std::optional<MemoryDigest>& taken,
                                       std::span<const AddressRange> takenMasked) {
  if (!options_.checkMemory) return;
  std::vector<AddressRange> masked;
  if (taken)
    masked.assign(takenMasked.begin(), takenMasked.end());
  else
    masked = pendingOutputsBeside(t);
  MemoryDigest digest = taken ? *taken : digestMemory(t.task.tid(), kRecPages, nullptr, masked);
  setAddressRanges(
      msg.getRoot<schema::Event>().initPendingOutputs(static_cast<unsigned>(masked.size())),
      masked);
  auto blocks =
      msg.getRoot<schema::Event>().initMemory(static_cast<unsigned>(digest.blocks.size()));
  for (unsigned i = 0; i < digest.blocks.size(); ++i) {
    blocks[i].setStart(digest.blocks[i].start);
    blocks[i].setHash(digest.blocks[i].hash);
    blocks[i].setPages(digest.blocks[i].pages);
  }
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
  s.setCompat32(t.compat);
  setEntryRegisters(t, s);
  // A syscall whose entry was announced carries its digest there: replay
  // checks memory when the task reaches its entry, and by this event other
  // tasks have written to memory since.
  if (!t.enterAnnounced) attachMemoryDigest(t, msg, t.entryDigest, t.entryMasked);
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
  if (pid_t target = foreignMemoryTarget(t, result)) {
    // The iovecs name the target's memory: what it holds now goes to it.
    Task& other = tasks_.at(target)->task;
    auto out = s.initTaskWrites(static_cast<unsigned>(ranges.size()));
    for (unsigned i = 0; i < ranges.size(); ++i) {
      std::vector<std::byte> data = other.readBytes(ranges[i].addr, ranges[i].len);
      out[i].setTask(target);
      out[i].setAddress(ranges[i].addr);
      out[i].setData(asData(data.data(), data.size()));
    }
    ranges.clear();
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

  bool installsFilter =
      (t.row->hook == sys::Hook::Seccomp && t.args[0] == SECCOMP_SET_MODE_FILTER) ||
      (t.row->hook == sys::Hook::Prctl && t.args[0] == PR_SET_SECCOMP &&
       t.args[1] == SECCOMP_MODE_FILTER);
  if (installsFilter && result == 0) {
    t.seccompMode = SECCOMP_MODE_FILTER;
    // TSYNC put the filter on every thread of the process.
    if (t.row->hook == sys::Hook::Seccomp && (t.args[1] & SECCOMP_FILTER_FLAG_TSYNC))
      for (auto& [tid, other] : tasks_)
        if (other->task.tgid() == t.task.tgid()) other->seccompMode = SECCOMP_MODE_FILTER;
  }
  // The buffer's syscalls, made from rec's page, would not pass the
  // program's filter (or strict mode).
  if (result == 0 && t.sysbuf && programSeccompRequest(t.nr, t.args))
    sysbuf::disable(t.task, *t.sysbuf);

  OutputFds& fds = *t.fds;
  noteFdTable(fds, *t.row, t.args, result);
  const sys::FdWrite& fdWrite = t.row->fdWrite;
  if (result > 0 && (fdWrite.data == sys::Data::Buffer || fdWrite.data == sys::Data::Iovec))
    s.setOutputFd(fds.originOf(static_cast<long>(t.args[fdWrite.fdArg])));
  switch (t.row->hook) {
    case sys::Hook::PidfdGetfd:
      if (result >= 0) fds.assign(result, originInProcessOf(t, t.args[0], t.args[1]));
      break;
    case sys::Hook::Clone:
      s.setNewTask(t.newTask);
      if (t.newTask) s.setNewTaskCpu(t.cpu);  // the kernel copied the parent's affinity
      break;
    case sys::Hook::Unshare:
      if (t.args[0] & CLONE_FILES) t.fds = fds.copy();
      break;
    case sys::Hook::SigMask:
      noteSignalMask(t);
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
      // A shared mapping shows the file as it is now, stores through other
      // mappings included: read it afresh (caches go by size and mtime,
      // which such stores need not change), and watch its later changes. So
      // does a private mapping of a file open for writing: the pages it has
      // not copied yet show the file's later changes (growth included).
      bool followsFile =
          (flags & MAP_TYPE) != MAP_PRIVATE || SharedFiles::openForWriting(t.task.tid(), fd);
      std::optional<SharedFiles::Id> file =
          followsFile ? SharedFiles::identify(fdPath) : std::nullopt;
      if (file) {
        m.setDevice(file->device);
        m.setInode(file->inode);
        sharedFiles_.watch(*file);
        updateBufferDenials();
      }
      // A private mapping of a file an mmap stored whole before, unchanged
      // since: its hash, as storeFd would find it. (ctime too: a chmod that
      // would now make rec's open fail is not hidden by the shortcut.)
      std::optional<format::BlobHash> known;
      struct stat st;
      if (!file && ::stat(fdPath.c_str(), &st) == 0 &&
          mappedWhole_.contains(sysbuf::StoredFile::of(st).identity()))
        known = blobs_->known(st);
      ScopedFd contents;
      if (!known) {
        contents.reset(::open(fdPath.c_str(), O_RDONLY | O_CLOEXEC));
        if (!contents.valid() || ::fstat(contents.get(), &st) != 0)
          throwErrno(kExitIoError, fmt::format("cannot open {}", path));
      }
      // A huge or sparse file (a 1 TiB memfd, a file with a 100 GiB hole)
      // is stored as its data extents: never read whole into rec's memory.
      if (!known && BlobStore::wantsSparse(contents.get(), st,
                                           file ? kWholeSharedFileLimit : kWholeFileLimit)) {
        BlobStore::Sparse sparse = blobs_->storeSparse(contents.get(), path);
        auto out = m.initSparse();
        out.setSize(sparse.size);
        auto pieces = out.initPieces(static_cast<unsigned>(sparse.pieces.size()));
        for (unsigned i = 0; i < pieces.size(); ++i) {
          pieces[i].setOffset(sparse.pieces[i].first);
          auto bytes = sparse.pieces[i].second.bytes();
          pieces[i].setBlobHash(asData(bytes.data(), bytes.size()));
        }
        break;  // no rdtsc patching: finding the sites would read the whole file
      }
      format::BlobHash hash =
          known ? *known : blobs_->storeFd(contents.get(), path, file.has_value());
      if (!known && !file && S_ISREG(st.st_mode)) {
        sysbuf::StoredFile stored = sysbuf::StoredFile::of(st);
        stored.hash = hash.bytes();
        mappedWhole_.insert(stored.identity());
        noteStoredFile(stored);
      }
      auto bytes = hash.bytes();
      m.setBlobHash(asData(bytes.data(), bytes.size()));
      if (result >= 0)
        patchRdtsc(t, hash, fdPath, m.getStart(), m.getEnd(), t.args[5],
                   static_cast<int>(t.args[2]));
      if (result >= 0 && t.sysbuf && !file) {
        std::vector<std::pair<SysbufPatch, bool>> done;
        prepatchMapping(t, *t.sysbuf, t.timeSpace.get(), hash.hex(), fdPath, m.getStart(),
                        m.getEnd(), t.args[5], static_cast<int>(t.args[2]), done);
        if (!done.empty())
          writePatches(s.initBufferPatches(static_cast<unsigned>(done.size())), done);
      }
      break;
    }
    default:
      break;
  }
  if (auto update = sharedFiles_.updateAfter(*t.row, t.args, result, t.task, t.strings);
      update && update->memoryOf) {
    auto w = s.initTaskWrites(1)[0];
    w.setTask(update->memoryOf);
    w.setAddress(update->offset);
    w.setData(asData(update->data.data(), update->data.size()));
  } else if (update) {
    auto u = s.initFileUpdates(1)[0];
    u.setDevice(update->file.device);
    u.setInode(update->file.inode);
    u.setSize(update->size);
    u.setOffset(update->offset);
    u.setZeroed(update->zeroed);
    u.setData(asData(update->data.data(), update->data.size()));
  }
  if (t.row->flags & sys::kReturnsFdPair) {
    int pair[2];
    uint64_t where = t.args[t.row->outs[0].arg];
    if (t.task.read(where, pair, sizeof pair) == sizeof pair) {
      fds.close(pair[0]);
      fds.close(pair[1]);
    }
  }
  const sys::Hook hook = t.row->hook;
  if ((t.row->flags & (sys::kReturnsFd | sys::kReturnsFdPair)) || hook == sys::Hook::Dup ||
      hook == sys::Hook::Fcntl || hook == sys::Hook::Close || hook == sys::Hook::Unshare)
    updateBufferOutputFds(t);
}

// What a successful call changed in rec's view of the fd table (which fds
// are the program's stdout/stderr): from its traced event, and from a
// buffered one when the buffer is drained, in order.
bool RecordSession::noteFdTable(OutputFds& fds, const sys::SyscallRow& row,
                                const std::array<uint64_t, 6>& args, int64_t result) {
  if (result < 0 && result > -4096) return false;
  bool changed = false;
  if (row.flags & sys::kReturnsFd) {
    fds.close(result);
    changed = true;
  }
  switch (row.hook) {
    case sys::Hook::Dup:
      if (row.number == SYS_dup)
        fds.duplicate(static_cast<long>(args[0]), result);
      else
        fds.duplicate(static_cast<long>(args[0]), static_cast<long>(args[1]));
      return true;
    case sys::Hook::Fcntl:
      if (args[1] == F_DUPFD || args[1] == F_DUPFD_CLOEXEC) {
        fds.duplicate(static_cast<long>(args[0]), result);
        return true;
      }
      return changed;
    case sys::Hook::Close:
      if (row.number == SYS_close)
        fds.close(static_cast<long>(args[0]));
      else
        fds.closeRange(args[0], args[1]);
      return true;
    default:
      return changed;
  }
}

int RecordSession::originInProcessOf(RecordTask& t, uint64_t pidfd, uint64_t fd) {
  std::istringstream info(readProcFile(fmt::format("/proc/{}/fdinfo/{}", t.task.tid(), pidfd)));
  std::string line;
  pid_t pid = 0;
  while (std::getline(info, line))
    if (line.rfind("Pid:", 0) == 0) pid = static_cast<pid_t>(std::atol(line.c_str() + 4));
  RecordTask* owner = pid > 0 ? findTask(pid) : nullptr;
  return owner && owner->fds ? owner->fds->originOf(static_cast<long>(fd)) : 0;
}

void RecordSession::releaseVforkParent(RecordTask& child) {
  RecordTask* parent = child.vforkParent;
  if (!parent) return;
  child.vforkParent = nullptr;
  parent->vforkChild = nullptr;
  if (parent->sysbuf) updateBufferFdTables(*parent->sysbuf);  // one table again
  if (parent->state() == RecordTask::State::VforkHeld) onSyscallExit(*parent);
}

void RecordSession::onSyscallExit(RecordTask& t) {
  if (t.vforkChild) {
    // Its event follows the child's exec or exit (releaseVforkParent).
    t.setState(RecordTask::State::VforkHeld);
    return;
  }
  if (stopAtVforkDoneForPtracer(t)) return;
  if (std::exchange(t.argsRewritten, false)) t.task.mutableRegs().setSyscallArgs(t.args);
  if (std::exchange(t.numberRewritten, false)) t.task.mutableRegs().setSyscallNumber(t.nr);
  if (t.execSeen) {
    completeExec(t);
  } else if (t.nr >= 0 && t.row) {
    capnp::MallocMessageBuilder msg;
    finishSyscallEvent(t, msg);
    patchSyscallSite(t, msg.getRoot<schema::Event>().getSyscall());
    if (t.moveWanted) moveAtSyscallExit(t, msg.getRoot<schema::Event>().getSyscall());
    ensureDesched(t);
    emit(t, msg);
    t.returnedFromSyscall(t.task.regs());
  }
  // Its fork event is written: the child may run beside others now.
  if (t.newTask)
    if (RecordTask* child = findTask(t.newTask)) child->forkHeld = false;
  continueAfterSyscall(t);
}

void RecordSession::continueAfterSyscall(RecordTask& t) {
  if (interruptForPtracer(t)) return;
  bool yield = scheduler_->shouldSwitchAfterSyscall(t);
  scheduler_->endExclusive(t);
  t.nr = -1;
  if (scheduler_->isCurrent(t)) {
    // A lane gives way at once to a task waiting to be alone (parkExclusive).
    if ((yield && scheduler_->othersWaiting()) ||
        (scheduler_->exclusiveWaiting() && !scheduler_->alone(t)))
      scheduler_->makeReady(t);
    else
      scheduler_->run(t);
  } else if (scheduler_->mayStart(t)) {
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
  if (!cpus || t.row->hook != sys::Hook::Affinity || t.row->outs[0].kind == sys::Out::None ||
      result <= 0)
    return;
  std::vector<uint8_t> mask(static_cast<size_t>(result), 0);
  for (int cpu = 0; cpu < cpus && cpu / 8 < result; ++cpu)
    mask[cpu / 8] |= static_cast<uint8_t>(1u << (cpu % 8));
  t.task.write(t.args[2], mask.data(), mask.size());
}

// ---- The syscall buffer (docs/syscall-buffer.md) ----------------------------

// Moves what the buffer holds into the task's pending entries: the task
// stopped, and it is the one that ran user code (the only writer). A large
// batch stays where it lies, held for the task, and is lent to the trace
// writer from there at its next event (no copy: read4k moves 100 MB through
// here); other batches are copied out.
void RecordSession::drainSyscallBuffer(RecordTask& t) {
  if (!t.sysbuf || !t.sysbuf->buffer) return;
  // Smaller batches are copied: a chunk of their own each would cost more.
  constexpr uint32_t kHeldBatch = 64 << 10;
  const std::shared_ptr<SysbufMemory>& memory = t.sysbuf->buffer;
  std::vector<std::byte>& pending = t.pendingBuffered;
  const auto [from, at] = sysbuf::take(*t.sysbuf);
  if (at > from && !t.pendingHeld.extend(*memory, from, at) &&
      !(pending.empty() && at - from >= kHeldBatch &&
        t.pendingHeld.hold(memory, t.task.tid(), from, at))) {
    t.pendingHeld.copyTo(pending);  // (in order: what it held came first)
    pending.insert(pending.end(), memory->entries() + from, memory->entries() + at);
  }
  // What a traced openat/close/fcntl teaches rec, a buffered one does too
  // (the buffer only takes those that leave stdout/stderr and their
  // aliases alone, so the buffer's view stayed right meanwhile).
  bool fdTableChanged = false, output = false;
  const std::byte* entries = memory->entries();
  for (uint32_t i = from; i + sizeof(rec_sysbuf_entry) <= at;) {
    rec_sysbuf_entry e;
    std::memcpy(&e, entries + i, sizeof e);
    i += e.size;  // (whole entries, checked by sysbuf::take)
    output |= (e.flags & (REC_SYSBUF_ENTRY_ECHO_STDOUT | REC_SYSBUF_ENTRY_ECHO_STDERR)) != 0;
    const sys::SyscallRow* row = sys::findSyscall(e.nr);
    if (!row || !t.fds) continue;
    std::array<uint64_t, 6> args;
    std::copy(std::begin(e.args), std::end(e.args), args.begin());
    fdTableChanged |= noteFdTable(*t.fds, *row, args, e.result);
  }
  if (fdTableChanged) updateBufferOutputFds(t);
  sysbuf::rearm(*t.sysbuf, pending.size() + (t.pendingHeld ? t.pendingHeld.bytes().size() : 0));
  // A buffered rt_sigprocmask: its mask, as a traced one's exit teaches it.
  if (auto note = sysbuf::takeSignalMask(*t.sysbuf)) {
    if (RecordTask* owner = note->tid == t.task.tid() ? &t : findTask(note->tid)) {
      owner->signalMask = note->mask;
      owner->blockedTrapAction = std::move(note->trapAction);
    }
  }
  // The program's output goes into the trace now, not at the task's next
  // event: others' output may come first (a ptraced child's stop brings no
  // event of its own until its tracer resumes it), and replay shows output
  // in trace order. Not where threads share the buffer: replay hands their
  // batches back through one queue, each thread's right before its event.
  if (output && t.sysbuf.use_count() == 1)
    writeBuffered(t, t.formerTid ? t.formerTid : t.task.tid());
}

// The task's buffered syscalls, as one BufferedSyscalls event holding the
// buffer's entries as the buffer wrote them (format/buffered_calls.h
// describes that layout to the trace's readers), written before its next
// event: replay queues them in the buffer before running the task to that
// event. The bytes are referenced, not copied, by the message, and lent to
// the writer, which writes them from where they lie (the pending vector
// comes back empty, with a written one's pages).
void RecordSession::writeBuffered(RecordTask& t, pid_t tid) {
  static_assert(sizeof(format::BufferedMappedFile) == sizeof(rec_sysbuf_mapped_file) &&
                offsetof(format::BufferedMappedFile, slot) ==
                    offsetof(rec_sysbuf_mapped_file, slot));
  static_assert(
      sizeof(format::BufferedCallHeader) == sizeof(rec_sysbuf_entry) &&
      offsetof(format::BufferedCallHeader, number) == offsetof(rec_sysbuf_entry, nr) &&
      offsetof(format::BufferedCallHeader, result) == offsetof(rec_sysbuf_entry, result) &&
      offsetof(format::BufferedCallHeader, args) == offsetof(rec_sysbuf_entry, args) &&
      offsetof(format::BufferedCallHeader, outAddress) == offsetof(rec_sysbuf_entry, out_addr) &&
      offsetof(format::BufferedCallHeader, outLength) == offsetof(rec_sysbuf_entry, out_len) &&
      offsetof(format::BufferedCallHeader, ranges) == offsetof(rec_sysbuf_entry, ranges) &&
      offsetof(format::BufferedCallHeader, flags) == offsetof(rec_sysbuf_entry, flags) &&
      format::kBufferedZero == REC_SYSBUF_ENTRY_ZERO &&
      format::kBufferedEchoStdout == REC_SYSBUF_ENTRY_ECHO_STDOUT &&
      format::kBufferedEchoStderr == REC_SYSBUF_ENTRY_ECHO_STDERR &&
      sizeof(format::BufferedRange) == sizeof(rec_sysbuf_range));
  const bool held = static_cast<bool>(t.pendingHeld);
  const std::span<const std::byte> pending =
      held ? t.pendingHeld.bytes() : std::span<const std::byte>(t.pendingBuffered);
  if (pending.empty()) return;
  uint32_t count = 0;
  for (size_t at = 0; at + sizeof(rec_sysbuf_entry) <= pending.size(); ++count) {
    rec_sysbuf_entry entry;
    std::memcpy(&entry, pending.data() + at, sizeof entry);
    at += entry.size;  // (whole entries, checked by sysbuf::take)
  }
  capnp::word first[64] = {};  // (a first segment lent to capnp must be zeroed)
  capnp::MallocMessageBuilder msg(kj::arrayPtr(first, std::size(first)));
  auto e = msg.initRoot<schema::Event>();
  e.setTid(tid);
  auto batch = e.initBufferedSyscalls();
  batch.setCount(count);
  batch.adoptEntries(
      msg.getOrphanage().referenceExternalData(asData(pending.data(), pending.size())));
  if (held)
    writer_->writeEvent(msg, pending, t.pendingHeld.lend());  // written from the buffer
  else
    writer_->writeEvent(msg, t.pendingBuffered);  // moved, not copied
  if (t.sysbuf && t.sysbuf->buffer && scheduler_->isCurrent(t))
    sysbuf::rearm(*t.sysbuf, 0);  // nothing pending now
}

namespace {
// A signal is delivered at the exit of a call with this result: -ERESTART*
// (one interrupted it), EPIPE (the kernel raised SIGPIPE), EFBIG (SIGXFSZ).
// Remote syscalls made there (a patch, opening the desched event) would
// take it in first, and it would come later, elsewhere.
bool signalDueAtExit(int64_t result) {
  return (result <= -512 && result >= -516) || result == -EPIPE || result == -EFBIG;
}
}  // namespace

// At the exit of a buffered syscall: patches the site it was made from, so
// that its next calls go through the buffer (noted in the event: replay
// patches at the same point).
void RecordSession::patchSyscallSite(RecordTask& t, schema::SyscallEvent::Builder s) {
  if (!t.sysbuf || t.sysbuf->disabled || t.compat || t.seccompMode != 0 ||
      !(t.row->flags & sys::kBuffered))
    return;
  const Registers& regs = t.task.regs();
  if (signalDueAtExit(regs.result())) return;
  // A call the row's rule turns down (prlimit64 setting a limit) would stay
  // traced through the patch: its site is left alone (and replay's special
  // paths for such calls, applyRlimit, need no patch).
  if (!sys::bufferRuleAllows(*t.row, t.args)) return;
  const uint64_t site = regs.ip() - 2;
  // The traced fallback in rec's own image (a call the buffer turned down)
  // is never a site to patch: known without reading its code.
  if (time_shim::inShimCode(site)) {
    startBufferAtFallback(t, s);
    return;
  }
  // Only a site that makes this one syscall (`mov $nr,%eax` or `xor
  // %eax,%eax` just before it): a task in another syscall there, which rec
  // would not know of (an untraced one), could return into the patch. The
  // code before the site and at it is read at once.
  const sysbuf::SiteCode code = sysbuf::readSite(t.task, site);
  if (!code.beforeRead || !sysbuf::setsNumberBefore(code.before, t.nr)) return;
  std::vector<uint64_t> busy;
  try {
    for (auto& [tid, u] : tasks_) {
      if (u.get() == &t || u->sysbuf != t.sysbuf || !u->alive()) continue;
      switch (u->state()) {
        case RecordTask::State::Running:
          return;  // its ip is unknown
        case RecordTask::State::InSyscall:
          busy.push_back(u->entryRegs.rip);
          break;
        case RecordTask::State::Newborn:
          if (!u->initialStopSeen()) return;
          busy.push_back(u->task.regs().ip());
          break;
        case RecordTask::State::Exiting:
        case RecordTask::State::Dead:
          break;
        default:
          busy.push_back(u->task.regs().ip());
      }
    }
  } catch (const RecError&) {
    return;  // one was killed meanwhile (a group exit): its ip is unknown
  }
  auto patch = sysbuf::planPatch(t.task, *t.sysbuf, site, code, busy);
  if (!patch) return;
  std::optional<bool> starts = applySitePatch(t, *t.sysbuf, *patch);
  if (!starts) return;
  writePatch(s.initBufferPatch(), *patch, *starts);
  uint64_t start = 0;
  if (const SysbufSpace::Code* code = t.sysbuf->codeAt(patch->site, &start)) {
    hotSites_[code->file][patch->site - start + code->offset] = static_cast<int>(t.nr);
    siteCache_.note(t.sysbuf->program, code->file, patch->site - start + code->offset,
                    static_cast<int>(t.nr));
  }
}

// A call the buffer turned down because its process has no buffer yet: a
// fork's child, whose calls all come from sites its parent patched (and,
// with the site cache, every process of a program recorded before), reaches
// rec only through the traced fallback, so no first patch at a site would
// ever map it one. It gets one at this exit; replay maps it at the same
// event (SyscallEvent.startsBuffer).
// (patchSyscallSite checked the rest: not after EPIPE/EFBIG, whose signal
// the remote syscalls would take in first.)
void RecordSession::startBufferAtFallback(RecordTask& t, schema::SyscallEvent::Builder s) {
  if (t.sysbuf->buffer || s.getStartsTimeLog()) return;
  StraySignals strays;
  const bool started = startBuffer(t, *t.sysbuf, strays);
  absorbStrays(t, strays);
  if (!started) {
    t.sysbuf->disabled = true;
    return;
  }
  s.setStartsBuffer(true);
}

// Maps the buffer into the task and tells it what rec knows (watched
// files, output fds, whether the fd table is shared).
bool RecordSession::startBuffer(RecordTask& t, SysbufSpace& space, StraySignals& strays) {
  if (!sysbuf::start(t.task, space, REC_SHIM_RECORD, strays)) return false;
  configureBuffer(t, space);
  return true;
}

// What the in-process buffer is told right after it is mapped.
void RecordSession::configureBuffer(RecordTask& t, SysbufSpace& space) {
  sysbuf::setWatchedFiles(space, bufferWatchedFiles());
  sysbuf::setStoredFiles(space, storedFiles_);
  sysbuf::setBlockStreams(space, blockStreams_ && !t.sharesMemory);
  sysbuf::setTrapSignal(space, trapSignal());
  if (t.sysbuf.get() == &space) {
    sysbuf::setOutputFds(space, bufferOutputFds(space));
    updateBufferFdTables(space);
  } else {
    // The new image's space, right after exec: `t` is its only task.
    std::vector<sysbuf::OutputFd> fds;
    if (t.fds)
      for (long fd : t.fds->fds()) fds.push_back({fd, t.fds->originOf(fd)});
    sysbuf::setOutputFds(space, fds);
    sysbuf::setFdTables(space, false);
  }
}

// Each process reaches ld.so's and libc's syscall sites anew, and the first
// call at each stopped twice before patchSyscallSite patched it there (make
// -j2: 528 such first calls, a sixth of its stops). A site some process of
// this recording patched is patched in the next process as soon as its file
// is mapped, checked as at its first patch (the `mov` of that number before
// it, the pattern planPatch checks). Only while `t` is the only task of the
// address space: no other one can be running in or returning into the new
// mapping.
void RecordSession::prepatchMapping(RecordTask& t, SysbufSpace& space, TimeShimSpace* timeSpace,
                                    const std::string& file, const std::string& readPath,
                                    uint64_t start, uint64_t end, uint64_t offset, int prot,
                                    std::vector<std::pair<SysbufPatch, bool>>& done) {
  if (!(prot & PROT_EXEC) || end <= start) return;
  space.noteCode(start, end, offset, file);
  if (space.disabled || t.compat || t.seccompMode != 0) return;
  for (auto& [tid, u] : tasks_)
    if (u.get() != &t && u->sysbuf.get() == &space && u->alive()) return;
  if (timeSpace) prepatchRdtsc(t, space, *timeSpace, file, readPath, start, end, offset, done);
  // This recording's sites in the file, and those earlier recordings of
  // the same program noted.
  std::map<uint64_t, int> hot = siteCache_.sitesOf(space.program, file);
  if (auto here = hotSites_.find(file); here != hotSites_.end())
    hot.insert(here->second.begin(), here->second.end());
  for (auto [at, nr] : hot) {
    if (at < offset || at - offset >= end - start) continue;
    const uint64_t site = start + (at - offset);
    const sys::SyscallRow* row = sys::findSyscall(nr);
    if (!row || !(row->flags & sys::kBuffered)) continue;
    const sysbuf::SiteCode code = sysbuf::readSite(t.task, site);
    if (!code.beforeRead || !sysbuf::setsNumberBefore(code.before, nr)) continue;
    auto patch = sysbuf::planPatch(t.task, space, site, code, {});
    if (!patch) continue;
    std::optional<bool> starts = applySitePatch(t, space, *patch);
    if (!starts) return;
    done.emplace_back(*patch, *starts);
  }
}

// Every process runs ld.so's HP_TIMING rdtscs (8 in /bin/true), each a
// trap and a stop. The sites of a new executable mapping that can take a
// 5-byte jump (the instruction and whole movable instructions after it, no
// branch of the function landing inside: tracee/rdtsc_sites.h) jump to a
// slot that asks the time shim, which logs a value without a stop; the
// others, and every rdtsc while the shim is off (a second thread, a fork's
// child before its log, the program's own PR_TSC_SIGSEGV), trap as before.
// Patched as the mapping appears, while `t` is the space's one task: no
// task stands inside the new code.
void RecordSession::prepatchRdtsc(RecordTask& t, SysbufSpace& space, TimeShimSpace& timeSpace,
                                  const std::string& file, const std::string& readPath,
                                  uint64_t start, uint64_t end, uint64_t offset,
                                  std::vector<std::pair<SysbufPatch, bool>>& done) {
  if (!timeShim_ || !rdtscShim_ || timeSpace.disabled) return;
  std::vector<const RdtscSite*> inside;
  const bool firstTime = rdtscFilesSeen_.insert(file).second;
  const std::set<uint64_t>& hot = hotRdtsc_[file];
  for (const RdtscSite& s : rdtscSitesOf(file, readPath)) {
    const uint64_t length = (s.kind == TscInstruction::Rdtscp ? 3 : 2) + uint64_t{s.moveLength};
    if (s.moveLength && s.fileOffset >= offset && s.fileOffset + length <= offset + (end - start) &&
        (firstTime || hot.count(s.fileOffset)))
      inside.push_back(&s);
  }
  if (inside.empty()) return;
  // The code of all of them in one read (ld.so's 8 lie within 15 KiB).
  auto [first, last] = std::minmax_element(
      inside.begin(), inside.end(), [](auto* a, auto* b) { return a->fileOffset < b->fileOffset; });
  const uint64_t from = start + ((*first)->fileOffset - offset);
  const uint64_t to = std::min(end, start + ((*last)->fileOffset - offset) + 64);
  std::vector<uint8_t> code(to - from);
  code.resize(t.task.read(from, code.data(), code.size()));
  const std::vector<uint8_t> original = code;
  sysbuf::CodeWrites writes;
  for (const RdtscSite* s : inside) {
    const uint64_t site = start + (s->fileOffset - offset);
    if (site - from >= code.size()) continue;
    const std::span<const uint8_t> at = std::span<const uint8_t>(original).subspan(site - from);
    auto patch = sysbuf::planRdtscPatch(
        t.task, space, site, s->kind == TscInstruction::Rdtscp ? 2 : 1, s->moveLength, at);
    if (!patch) continue;
    StraySignals strays;
    bool startsBuffer = false;
    if (!timeSpace.log) {
      // The buffer too, when the process has none yet: its first syscall
      // patch (the sites patched ahead next) would map it in another stop.
      startsBuffer = !space.buffer;
      if (!(startsBuffer ? startTimeLogAndBuffer(t, timeSpace, space, strays)
                         : startTimeLog(t, timeSpace, strays))) {
        absorbStrays(t, strays);
        return;
      }
      patch->startsTimeLog = true;
    }
    sysbuf::applyPatch(t.task, space, *patch, strays, false, rdtscPatcher_.has_value(), at,
                       &writes);
    absorbStrays(t, strays);
    if (rdtscPatcher_) rdtscPatcher_->noteSite(sysbuf::rdtscFallback(*patch), s->kind);
    done.emplace_back(*patch, startsBuffer);
  }
  // The jumps go into the code read above, written back as one range; the
  // slots, consecutive in their pages, one run each.
  uint64_t lo = ~uint64_t{0}, hi = 0;
  std::vector<std::pair<uint64_t, std::vector<uint8_t>>> slotRuns;
  for (auto& [address, bytes] : writes) {
    if (address >= from && address + bytes.size() <= from + code.size()) {
      std::memcpy(code.data() + (address - from), bytes.data(), bytes.size());
      lo = std::min(lo, address);
      hi = std::max<uint64_t>(hi, address + bytes.size());
    } else if (!slotRuns.empty() &&
               slotRuns.back().first + slotRuns.back().second.size() == address) {
      slotRuns.back().second.insert(slotRuns.back().second.end(), bytes.begin(), bytes.end());
    } else {
      slotRuns.emplace_back(address, std::move(bytes));
    }
  }
  for (const auto& [address, bytes] : slotRuns)
    t.task.writeForced(address, bytes.data(), bytes.size());
  if (lo < hi) t.task.writeForced(lo, code.data() + (lo - from), hi - lo);
}

// An rdtsc ran at `site` (answered by the shim, or trapped): later
// processes mapping its file get it patched ahead.
void RecordSession::noteRdtscRan(RecordTask& t, uint64_t site) {
  if (!t.sysbuf) return;
  uint64_t start = 0;
  if (const SysbufSpace::Code* code = t.sysbuf->codeAt(site, &start))
    hotRdtsc_[code->file].insert(site - start + code->offset);
}

// Maps the task's time log (its process's first time syscall, or rdtsc
// patch) and gives the shim what its rdtsc entry needs.
bool RecordSession::startTimeLog(RecordTask& t, TimeShimSpace& space, StraySignals& strays) {
  if (!time_shim::startLog(t.task, space, REC_SHIM_RECORD, strays)) {
    space.disabled = true;
    return false;
  }
  writeTscControl(t);
  return true;
}

// Both, in one stop (a process's first rdtsc patch, at exec); neither is on
// after a failure.
bool RecordSession::startTimeLogAndBuffer(RecordTask& t, TimeShimSpace& timeSpace,
                                          SysbufSpace& space, StraySignals& strays) {
  if (!sysbuf::startWithTimeLog(t.task, space, timeSpace, REC_SHIM_RECORD, strays)) {
    timeSpace.disabled = true;
    space.disabled = true;
    return false;
  }
  writeTscControl(t);
  configureBuffer(t, space);
  return true;
}

void RecordSession::writeTscControl(RecordTask& t) {
  rec_shim_control c{};
  tscNow();  // (calibrated)
  c.rdtsc_trap = t.tscMode == PR_TSC_SIGSEGV ? 1 : 0;
  c.tsc_base = tscBase_;
  c.tsc_ns_base = tscNsBase_;
  c.tsc_mult = tscMult_;
  constexpr size_t from = offsetof(rec_shim_control, rdtsc_trap);
  t.task.writeForced(REC_SHIM_CONTROL + from, reinterpret_cast<const std::byte*>(&c) + from,
                     sizeof c - from);
}

// Patches a planned site, mapping the buffer first when it is the space's
// first patch; whether it started the buffer, or nothing when the buffer
// could not be mapped (the space is then disabled).
std::optional<bool> RecordSession::applySitePatch(RecordTask& t, SysbufSpace& space,
                                                  const SysbufPatch& patch) {
  StraySignals strays;
  const bool starts = !space.buffer;
  if (starts && !startBuffer(t, space, strays)) {
    space.disabled = true;
    absorbStrays(t, strays);
    return std::nullopt;
  }
  sysbuf::applyPatch(t.task, space, patch, strays, false);
  absorbStrays(t, strays);
  return starts;
}

void RecordSession::writePatch(schema::BufferPatch::Builder out, const SysbufPatch& patch,
                               bool startsBuffer) {
  out.setSite(patch.site);
  out.setSlot(patch.slot);
  out.setNewPage(patch.newPage);
  out.setStartsBuffer(startsBuffer);
  if (patch.rdtsc) {
    out.setRdtsc(patch.rdtsc);
    out.setLength(patch.length);
    out.setStartsTimeLog(patch.startsTimeLog);
  }
}

void RecordSession::writePatches(capnp::List<schema::BufferPatch>::Builder out,
                                 const std::vector<std::pair<SysbufPatch, bool>>& done) {
  for (unsigned i = 0; i < done.size(); ++i) writePatch(out[i], done[i].first, done[i].second);
}

// At the exit of a traced call the buffer would take under a desched event
// (a futex wait): the task gets its event, once (docs/syscall-buffer.md
// "Blocking"). Without one (no permission: perf_event_paranoid above 1 for
// an unprivileged user) such calls stay traced.
void RecordSession::ensureDesched(RecordTask& t) {
  if (blocking_ == sysbuf::Blocking::NoWait || t.deschedTried || !t.sysbuf || !t.sysbuf->buffer ||
      t.sysbuf->disabled || t.compat || !t.row)
    return;
  if (signalDueAtExit(t.task.regs().result())) return;  // the next such call opens it
  if (!sysbuf::mayBlockInBuffer(*t.row, t.args, blocking_ == sysbuf::Blocking::Desched)) return;
  t.deschedTried = true;
  sysbuf::setDeschedStreams(*t.sysbuf, blocking_ == sysbuf::Blocking::Desched);
  StraySignals strays;
  t.desched = sysbuf::openDesched(t.task, *t.sysbuf, strays);
  absorbStrays(t, strays);
  if (options_.verbose)
    fmt::print(stderr, "rec: task {}: {} desched event\n", t.task.tid(), t.desched ? "a" : "no");
}

// A file mapped MAP_SHARED is watched: from now on writes to it stay
// traced, so that its changes reach replay's shared copies.
void RecordSession::updateBufferDenials() {
  std::vector<sysbuf::FileId> files = bufferWatchedFiles();
  for (auto& [tid, u] : tasks_)
    if (u->sysbuf) sysbuf::setWatchedFiles(*u->sysbuf, files);
}

// A file stored whole from a private mmap: the buffers take its later
// private, non-executable mmaps while it stays unchanged.
void RecordSession::noteStoredFile(const sysbuf::StoredFile& file) {
  if (!fileMmapsBuffered_ || !syscallBuffer_ || storedFiles_.size() >= REC_SYSBUF_FILES_MAX) return;
  storedFiles_.push_back(file);
  for (auto& [tid, u] : tasks_)
    if (u->sysbuf) sysbuf::setStoredFiles(*u->sysbuf, storedFiles_);
}

std::vector<sysbuf::FileId> RecordSession::bufferWatchedFiles() const {
  std::vector<sysbuf::FileId> files;
  for (const SharedFiles::Id& id : sharedFiles_.watchedInOrder())
    files.push_back({id.device, id.inode});
  return files;
}

// The fds that are stdout/stderr in any file table of the tasks one buffer
// serves: threads that unshared their table (unshare(CLONE_FILES)) share the
// address space, and so the buffer, but not the fds.
std::vector<sysbuf::OutputFd> RecordSession::bufferOutputFds(const SysbufSpace& space) {
  std::vector<sysbuf::OutputFd> fds;
  for (auto& [tid, u] : tasks_)
    if (u->sysbuf.get() == &space && u->fds)
      for (long fd : u->fds->fds()) fds.push_back({fd, u->fds->originOf(fd)});
  return fds;
}

// The fds of t's file table that are stdout/stderr changed: so did the
// buffers of every process with that table.
void RecordSession::updateBufferOutputFds(RecordTask& t) {
  // Threads share one buffer: recompute each affected buffer once, not once
  // per task (this runs at every open, close and dup).
  std::vector<SysbufSpace*> spaces;
  for (auto& [tid, u] : tasks_)
    if (u->sysbuf && u->fds == t.fds &&
        std::find(spaces.begin(), spaces.end(), u->sysbuf.get()) == spaces.end())
      spaces.push_back(u->sysbuf.get());
  for (SysbufSpace* space : spaces) {
    sysbuf::setOutputFds(*space, bufferOutputFds(*space));
    updateBufferFdTables(*space);
  }
}

void RecordSession::openEchoWindow(RecordTask& t, bool alone) {
  if (!t.sysbuf || !t.sysbuf->buffer) return;
  // Threads with file tables of their own (the buffer's fd cache is off
  // then: updateBufferFdTables) share the buffer, which knows an fd's
  // origin, stdout or stderr, for one table only.
  const bool oneTable = !t.sysbuf->buffer->header().fd_cache_off;
  sysbuf::setEchoWindow(*t.sysbuf, alone && oneTable && echoOutput_);
}

// The buffer remembers what it found per fd only while every live task of
// its address space has the same fd table.
void RecordSession::updateBufferFdTables(SysbufSpace& space) {
  const OutputFds* table = nullptr;
  bool several = false;
  for (auto& [tid, u] : tasks_) {
    if (u->sysbuf.get() != &space || u->state() == RecordTask::State::Dead) continue;
    if (table && u->fds.get() != table) several = true;
    table = u->fds.get();
  }
  sysbuf::setFdTables(space, several);
}

// Parallel recording (docs/parallel.md): two tasks may execute at once when
// nothing one does in user code can be seen by the other: different
// processes, neither sharing memory with anything, no emulated ptrace.
bool RecordSession::independent(const RecordTask& a, const RecordTask& b) const {
  if (!parallel_ || parallelOff_ || ptraceTracees_ > 0) return false;
  // A vfork child uses its parent's memory, but the parent waits in the
  // kernel until the child execs or exits: the child has it to itself.
  auto alone = [](const RecordTask& x) {
    return !x.sharesMemory && !x.forkHeld && !x.vforkChild && !x.ptrace.tracer;
  };
  return a.task.tgid() != b.task.tgid() && alone(a) && alone(b);
}

// Whether the traced syscall `t` stands at must not overlap other tasks'
// execution: its effect reaches them or the replayed output, where the
// trace's order must be the kernel's. Notes what it makes shared.
bool RecordSession::needsExclusive(RecordTask& t) {
  const sys::SyscallRow& row = *t.row;
  switch (row.hook) {
    case sys::Hook::OwnMemory:  // process_vm_writev into another: its memory changes under it
    case sys::Hook::Ptrace:
      return true;
    case sys::Hook::ShmAt:
      markSharesMemory(t);
      return true;
    case sys::Hook::Mmap: {
      // A mapping that shows a file's later changes (shared, or private of
      // a file open for writing) is made alone: the file becomes watched at
      // its exit, and a write to it from a task running meanwhile would
      // land before or after that unordered. Memory another process can
      // write (anonymous shared, or a file this one may write through it)
      // keeps the process off the parallel schedule for good.
      const auto flags = static_cast<int>(t.args[3]);
      const auto fd = static_cast<long>(t.args[4]);
      const bool file = !(flags & MAP_ANONYMOUS) && fd >= 0;
      const bool writableFile = file && SharedFiles::openForWriting(t.task.tid(), fd);
      const bool shared = (flags & MAP_TYPE) != MAP_PRIVATE;
      if (!shared && !writableFile) return false;
      if (shared && (!file || writableFile)) {
        markSharesMemory(t);
        return true;
      }
      // A file watched already (by an earlier mapping: rec never stops
      // watching) has had its writes traced and made alone since, so this
      // mapping needs no quiet moment of its own. Every process that uses
      // iconv maps glibc's gconv cache so: 31 times in make -j2, each of
      // which waited for the other compiler to stop.
      std::optional<SharedFiles::Id> id =
          SharedFiles::identify(fmt::format("/proc/{}/fd/{}", t.task.tid(), fd));
      const auto& watched = sharedFiles_.watchedInOrder();
      return !id || std::find(watched.begin(), watched.end(), *id) == watched.end();
    }
    case sys::Hook::Clone: {
      uint64_t flags = sys::cloneFlags(t.nr, t.args[0]);
      // Threads take turns: one blocking in the buffer would keep the
      // others waiting until rec interrupts it (its calls stay traced).
      if ((flags & CLONE_THREAD) && t.sysbuf) sysbuf::setBlockStreams(*t.sysbuf, false);
      if ((flags & CLONE_VM) && !(flags & (CLONE_THREAD | CLONE_VFORK))) {
        markSharesMemory(t);
        return true;
      }
      break;
    }
    default:
      break;
  }
  for (size_t i = 0; i < row.args.size() && i < t.args.size(); ++i)
    // A signal to another task reaches it where it runs: kept in order.
    if (row.args[i] == sys::Arg::Signal) return true;
  // The program's output, which replay shows in trace order. Only a call
  // that writes through the fd: one that asks about it (a TCGETS on stderr,
  // which each of make -j2's compilers makes three times) shows nothing,
  // and waiting to be alone for it held a compiler for up to 20 ms.
  if (row.fdWrite.data != sys::Data::None && row.fdWrite.fdArg < t.args.size() && t.fds &&
      t.fds->originOf(static_cast<long>(t.args[row.fdWrite.fdArg])))
    return true;
  if (sharedFiles_.watching() && changesWatchedFile(t)) return true;
  for (const std::string& s : t.strings) {
    // Another process's memory as a file: serial from here on.
    if (s.starts_with("/proc/") && s.find("/mem") != std::string::npos) {
      parallelOff_ = true;
      return true;
    }
  }
  return false;
}

// Whether `t`'s syscall would write or resize a watched file (one mapped so
// that it shows the file's changes): replay applies such a write to the
// mapping at its event, so no mapper may run while it happens. The file as
// SharedFiles::updateAfter finds it at the exit.
bool RecordSession::changesWatchedFile(RecordTask& t) const {
  const sys::SyscallRow& row = *t.row;
  const bool writes = row.fdWrite.data != sys::Data::None;
  if (!writes && !(row.flags & sys::kResizesFile)) return false;
  std::string path;
  if (writes || row.args[0] == sys::Arg::Fd) {
    path = fmt::format("/proc/{}/fd/{}", t.task.tid(), t.args[writes ? row.fdWrite.fdArg : 0]);
  } else if (!t.strings.empty() && !t.strings[0].empty()) {
    path = t.strings[0][0] == '/' ? t.strings[0]
                                  : fmt::format("/proc/{}/cwd/{}", t.task.tid(), t.strings[0]);
  } else {
    return true;  // cannot tell: as if it did
  }
  std::optional<SharedFiles::Id> id = SharedFiles::identify(path);
  if (!id) return false;
  const auto& watched = sharedFiles_.watchedInOrder();
  return std::find(watched.begin(), watched.end(), *id) != watched.end();
}

}  // namespace rec
