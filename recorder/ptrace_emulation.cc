// Emulated ptrace between tracees: the tracer's ptrace and wait calls, the
// tracee's ptrace stops, and the SIGCHLD between them
// (ptrace_emulation.h, docs/ptrace-emulation.md).

#include "ptrace_emulation.h"

#include <asm/prctl.h>
#include <elf.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <sstream>

#include "errors.h"
#include "exit_codes.h"
#include "process_maps.h"
#include "record_session.h"
#include "record_task.h"
#include "scheduler.h"
#include "signals.h"
#include "syscall_table.h"
#include "task_state.h"

namespace rec {

namespace {
using Held = EmulatedPtrace::Held;
using State = RecordTask::State;

constexpr size_t kRegsSize = sizeof(user_regs_struct);
constexpr uint64_t kDebugRegOffset = offsetof(struct user, u_debugreg);

// The parent process of `tid`, from /proc (0 when unknown).
pid_t parentOf(pid_t tid) {
  const std::string text = readProcFile(fmt::format("/proc/{}/stat", tid));
  size_t close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(text.substr(close + 1));
  char state = 0;
  pid_t ppid = 0;
  rest >> state >> ppid;
  return ppid;
}

bool validSignal(uint64_t signo) {
  return signo < 65;
}
}  // namespace

RecordTask* RecordSession::findTask(pid_t tid) {
  auto it = tasks_.find(tid);
  return it == tasks_.end() ? nullptr : it->second.get();
}

// A ptrace call of a tracee, answered at its seccomp stop. Requests rec does
// not emulate fail with EIO, as an unknown request does.
bool RecordSession::answerPtrace(RecordTask& t) {
  const long request = static_cast<long>(t.args[0]);
  const pid_t pid = static_cast<pid_t>(t.args[1]);
  const uint64_t addr = t.args[2], data = t.args[3];
  auto attach = [&](RecordTask& tracee, RecordTask& tracer, bool seize, uint64_t options) {
    tracee.ptrace = EmulatedPtrace{};
    tracee.ptrace.tracer = tracer.task.tid();
    tracee.ptrace.tracerGroup = tracer.task.tgid();
    tracee.ptrace.seized = seize;
    tracee.ptrace.options = options;
    ++ptraceTracees_;
  };

  if (request == PTRACE_TRACEME) {
    // The tracer is the parent: the thread that forked it while that lives.
    RecordTask* parent = findTask(t.forkedBy);
    if (!parent || !parent->alive() || parent->state() == State::Exiting)
      parent = findTask(parentOf(t.task.tid()));
    if (t.ptrace.tracer || !parent || !parent->alive()) {
      completeAtEntry(t, -EPERM);
      return true;
    }
    attach(t, *parent, false, 0);
    completeAtEntry(t, 0);
    return true;
  }

  RecordTask* tracee = findTask(pid);
  bool usable = tracee && tracee->alive() && tracee->state() != State::Exiting;
  if (request == PTRACE_ATTACH || request == PTRACE_SEIZE) {
    int64_t result = 0;
    if (!usable)
      result = -ESRCH;
    else if (tracee->task.tgid() == t.task.tgid() || tracee->ptrace.tracer)
      result = -EPERM;
    else if (request == PTRACE_SEIZE && addr != 0)
      result = -EIO;
    if (result == 0) {
      attach(*tracee, t, request == PTRACE_SEIZE, request == PTRACE_SEIZE ? data : 0);
      // PTRACE_ATTACH stops the tracee with a SIGSTOP, whose delivery stop
      // is then its tracer's (stopForPtracer).
      if (request == PTRACE_ATTACH)
        ::syscall(SYS_tgkill, tracee->task.tgid(), tracee->task.tid(), SIGSTOP);
      if (tracee->state() == State::JobStopped) {
        // Stopped by job control: the kernel turns that stop into a
        // group-stop its new tracer sees at once (PTRACE_EVENT_STOP when
        // seized). rec takes it out of PTRACE_LISTEN so that it can be
        // resumed; it stays where it is.
        Stop stop = tracee->task.endListen();
        if (stop.kind == StopKind::GroupStop && stop.signal != SIGTRAP) {
          tracee->ptrace.groupStopSignal = tracee->jobStopSignal;
          enterPtraceStop(*tracee, Held::GroupStop,
                          ptraceStopStatus(tracee->jobStopSignal,
                                           request == PTRACE_SEIZE ? PTRACE_EVENT_STOP : 0));
        } else {
          handleStop(*tracee, stop);  // continued (or killed) meanwhile
        }
      }
    }
    completeAtEntry(t, result);
    return true;
  }

  if (!usable || tracee->ptrace.tracer != t.task.tid()) {
    completeAtEntry(t, -ESRCH);
    return true;
  }
  EmulatedPtrace& p = tracee->ptrace;
  if (request == PTRACE_KILL) {
    ::syscall(SYS_tgkill, tracee->task.tgid(), tracee->task.tid(), SIGKILL);
    completeAtEntry(t, 0);
    return true;
  }
  if (request == PTRACE_INTERRUPT) {
    if (!p.seized) {
      completeAtEntry(t, -EIO);
      return true;
    }
    int status =
        ptraceStopStatus(p.groupStopSignal ? p.groupStopSignal : SIGTRAP, PTRACE_EVENT_STOP);
    if (tracee->state() == State::Ready) {
      // Waiting in rec's queue (perhaps just resumed by its tracer and not
      // run yet): it stops where it is, between two of its events.
      if (!p.resumeSignal) p.held = Held::Parked;
      p.resumeSignal.reset();
      enterPtraceStop(*tracee, p.held, status);
    } else if (tracee->state() == State::Newborn) {
      p.interruptWanted = true;  // it stops before it first runs (startTask)
    } else if (tracee->state() == State::InSyscall) {
      // Asleep in the kernel: the kernel's interrupt ends the syscall, which
      // restarts when the tracee goes on (interruptForPtracer).
      p.interruptWanted = true;
      tracee->requestInterrupt();
    }
    completeAtEntry(t, 0);
    return true;
  }
  if (tracee->state() != State::PtraceStopped) {
    completeAtEntry(t, -ESRCH);
    return true;
  }

  Task& target = tracee->task;
  int64_t result = 0;
  std::vector<std::byte> traceeWrite;  // POKEDATA: the word written at addr
  bool regsChanged = false;
  bool xstateChanged = false;                            // SETFPREGS, SETREGSET of FP state
  std::vector<std::pair<uint64_t, uint64_t>> userWrites;  // POKEUSER beyond the registers
  // FP state goes to the real tracee (rec keeps no copy of it).
  auto setFpState = [&](uint64_t type, uint64_t from, size_t len) {
    std::vector<std::byte> buffer(len);
    if (t.task.read(from, buffer.data(), len) != len) {
      result = -EFAULT;
      return;
    }
    iovec local{buffer.data(), len};
    if (::ptrace(PTRACE_SETREGSET, target.tid(), type, &local) != 0)
      result = -errno;
    else
      xstateChanged = true;
  };
  auto toTracer = [&](uint64_t where, const void* bytes, size_t n) {
    if (!t.task.writeAsTask(where, bytes, n)) result = -EFAULT;
  };
  switch (request) {
    case PTRACE_PEEKTEXT:
    case PTRACE_PEEKDATA: {
      uint64_t word = 0;
      if (target.read(addr, &word, sizeof word) != sizeof word)
        result = -EIO;
      else
        toTracer(data, &word, sizeof word);
      break;
    }
    case PTRACE_POKETEXT:
    case PTRACE_POKEDATA:
      if (!target.writeAsTask(addr, &data, sizeof data)) {
        result = -EIO;
      } else {
        auto bytes = std::as_bytes(std::span(&data, 1));
        traceeWrite.assign(bytes.begin(), bytes.end());
      }
      break;
    case PTRACE_PEEKUSER: {
      uint64_t word = 0;
      if (addr % 8 != 0) {
        result = -EIO;
        break;
      }
      if (addr < kRegsSize) {
        std::memcpy(&word, reinterpret_cast<const char*>(&target.regs().raw()) + addr, 8);
      } else {
        errno = 0;
        long v = ::ptrace(PTRACE_PEEKUSER, target.tid(), addr, nullptr);
        if (errno) result = -errno;
        word = static_cast<uint64_t>(v);
      }
      if (result == 0) toTracer(data, &word, sizeof word);
      break;
    }
    case PTRACE_POKEUSER:
      if (addr % 8 != 0) {
        result = -EIO;
        break;
      }
      if (addr >= kRegsSize) {
        // Debug registers (and words the kernel ignores): the kernel checks
        // and sets them on the real tracee, rec's own breakpoints pick the
        // slots left free; replay pokes the same words.
        if (::ptrace(PTRACE_POKEUSER, target.tid(), addr, data) != 0)
          result = -errno;
        else
          userWrites.push_back({addr, data});
        break;
      }
      std::memcpy(reinterpret_cast<char*>(&target.mutableRegs().raw()) + addr, &data, 8);
      regsChanged = true;
      break;
    case PTRACE_GETREGS:
      toTracer(data, &target.regs().raw(), kRegsSize);
      break;
    case PTRACE_SETREGS: {
      user_regs_struct regs;
      if (t.task.read(data, &regs, kRegsSize) != kRegsSize) {
        result = -EFAULT;
        break;
      }
      target.mutableRegs().raw() = regs;
      regsChanged = true;
      break;
    }
    case PTRACE_GETFPREGS: {
      user_fpregs_struct fp;
      if (::ptrace(PTRACE_GETFPREGS, target.tid(), nullptr, &fp) != 0)
        result = -errno;
      else
        toTracer(data, &fp, sizeof fp);
      break;
    }
    case PTRACE_SETFPREGS:
      setFpState(NT_PRFPREG, data, sizeof(user_fpregs_struct));
      break;
    case PTRACE_SETREGSET: {
      iovec iov{};
      if (t.task.read(data, &iov, sizeof iov) != sizeof iov) {
        result = -EFAULT;
        break;
      }
      if (addr == NT_PRSTATUS) {
        if (iov.iov_len < kRegsSize) {
          result = -EINVAL;
          break;
        }
        user_regs_struct regs;
        if (t.task.read(reinterpret_cast<uint64_t>(iov.iov_base), &regs, kRegsSize) != kRegsSize) {
          result = -EFAULT;
          break;
        }
        target.mutableRegs().raw() = regs;
        regsChanged = true;
      } else if (addr == NT_PRFPREG || addr == NT_X86_XSTATE) {
        setFpState(addr, reinterpret_cast<uint64_t>(iov.iov_base),
                   std::min<size_t>(iov.iov_len, 1 << 16));
      } else {
        result = -EINVAL;
      }
      break;
    }
    case PTRACE_GETREGSET: {
      iovec iov{};
      if (t.task.read(data, &iov, sizeof iov) != sizeof iov) {
        result = -EFAULT;
        break;
      }
      std::vector<std::byte> buffer(std::min<size_t>(iov.iov_len, 1 << 16));
      size_t len = 0;
      if (addr == NT_PRSTATUS) {
        len = std::min(buffer.size(), kRegsSize);
        std::memcpy(buffer.data(), &target.regs().raw(), len);
      } else {
        iovec local{buffer.data(), buffer.size()};
        if (::ptrace(PTRACE_GETREGSET, target.tid(), addr, &local) != 0) {
          result = -errno;
          break;
        }
        len = local.iov_len;
      }
      toTracer(reinterpret_cast<uint64_t>(iov.iov_base), buffer.data(), len);
      iov.iov_len = len;
      if (result == 0) toTracer(data, &iov, sizeof iov);
      break;
    }
    case PTRACE_ARCH_PRCTL: {
      // fs/gs bases are part of user_regs_struct: GET reads them to `addr`,
      // SET takes the value in `addr` (recorded like SETREGS).
      const user_regs_struct& regs = target.regs().raw();
      switch (data) {
        case ARCH_GET_FS:
          toTracer(addr, &regs.fs_base, sizeof regs.fs_base);
          break;
        case ARCH_GET_GS:
          toTracer(addr, &regs.gs_base, sizeof regs.gs_base);
          break;
        case ARCH_SET_FS:
        case ARCH_SET_GS:
          if (addr >= (uint64_t{1} << 47)) {
            result = -EPERM;  // not a user address
            break;
          }
          (data == ARCH_SET_FS ? target.mutableRegs().raw().fs_base
                               : target.mutableRegs().raw().gs_base) = addr;
          regsChanged = true;
          break;
        default:
          result = -EINVAL;
          break;
      }
      break;
    }
    case PTRACE_GETSIGINFO:
      if (p.held != Held::SignalStop)
        result = -EINVAL;
      else
        toTracer(data, &p.siginfo, sizeof p.siginfo);
      break;
    case PTRACE_SETSIGINFO:
      if (p.held != Held::SignalStop)
        result = -EINVAL;
      else if (t.task.read(data, &p.siginfo, sizeof p.siginfo) != sizeof p.siginfo)
        result = -EFAULT;
      break;
    case PTRACE_GETEVENTMSG:
      toTracer(data, &p.eventMessage, sizeof p.eventMessage);
      break;
    case PTRACE_SETOPTIONS:
      p.options = data;
      break;
    case PTRACE_CONT:
      if (!validSignal(data)) {
        result = -EIO;
        break;
      }
      ptraceResume(*tracee, static_cast<int>(data));
      break;
    case PTRACE_DETACH:
      if (!validSignal(data)) {
        result = -EIO;
        break;
      }
      p.tracer = 0;
      p.tracerGroup = 0;
      --ptraceTracees_;
      ptraceResume(*tracee, static_cast<int>(data));
      break;
    default:
      // PTRACE_SYSCALL, SINGLESTEP, LISTEN and the rest are not emulated.
      result = -EIO;
      break;
  }
  completeAtEntry(t, result, {}, [&](schema::SyscallEvent::Builder s) {
    if (!traceeWrite.empty()) {
      auto w = s.initTaskWrites(1)[0];
      w.setTask(target.tid());
      w.setAddress(addr);
      w.setData(asData(traceeWrite.data(), traceeWrite.size()));
    }
    if (regsChanged) {
      s.setPtraceTracee(target.tid());
      s.setTraceeRegisters(asData(target.regs().raw()));
    }
    if (xstateChanged) {
      s.setPtraceTracee(target.tid());
      std::vector<uint8_t> xstate = readExtendedRegisters(target.tid());
      s.setTraceeXstate(asData(xstate.data(), xstate.size()));
    }
    if (!userWrites.empty()) {
      s.setPtraceTracee(target.tid());
      auto out = s.initTraceeUserWrites(static_cast<unsigned>(userWrites.size()));
      for (unsigned i = 0; i < out.size(); ++i) {
        out[i].setAddress(userWrites[i].first);
        out[i].setData(asData(userWrites[i].second));
      }
    }
  });
  return true;
}

// wait4/waitid of a task whose thread group traces others: a ptrace stop not
// yet collected, or the exit of a tracee that is not its child, is its
// answer. Otherwise the kernel waits as usual; rec's SIGCHLD (or interrupt)
// wakes it when a stop comes (notifyPtracer).
bool RecordSession::answerWait(RecordTask& t) {
  if (ptraceTracees_ == 0 && ptraceZombies_.empty()) return false;
  bool waitid = t.nr == SYS_waitid;
  int options = static_cast<int>(t.args[waitid ? 3 : 2]);
  auto wanted = [&](pid_t tid) {
    if (waitid) {
      int idtype = static_cast<int>(t.args[0]);
      return idtype != P_PID || static_cast<pid_t>(t.args[1]) == tid;
    }
    pid_t pid = static_cast<pid_t>(t.args[0]);
    return pid <= 0 || pid == tid;
  };
  if (answerWaitWithExit(t, wanted)) return true;
  RecordTask* stopped = nullptr;
  for (auto& [tid, u] : tasks_) {
    const EmulatedPtrace& p = u->ptrace;
    if (p.tracerGroup != t.task.tgid() || u->state() != State::PtraceStopped || p.reported)
      continue;
    if ((options & __WNOTHREAD) && p.tracer != t.task.tid()) continue;
    if (wanted(u->task.tid())) {
      stopped = u.get();
      break;
    }
  }
  if (!stopped) {
    if (!(options & WNOHANG)) waitInPlaceOfKernel(t, wanted);
    return false;
  }
  EmulatedPtrace& p = stopped->ptrace;
  siginfo_t info{};
  info.si_signo = SIGCHLD;
  info.si_code = CLD_TRAPPED;
  info.si_pid = stopped->task.tid();
  info.si_uid = ::getuid();
  info.si_status = (p.waitStatus >> 8) & 0xff;
  writeWaitAnswer(t, stopped->task.tid(), p.waitStatus, info);
  if (!(options & WNOWAIT)) p.reported = true;
  return true;
}

namespace {
// The SIGCHLD siginfo (and waitid's answer) for a child's exit `status`.
siginfo_t exitSiginfo(pid_t tid, int status) {
  siginfo_t info{};
  info.si_signo = SIGCHLD;
  info.si_pid = tid;
  info.si_uid = ::getuid();
  if (WIFEXITED(status)) {
    info.si_code = CLD_EXITED;
    info.si_status = WEXITSTATUS(status);
  } else {
    info.si_code = WCOREDUMP(status) ? CLD_DUMPED : CLD_KILLED;
    info.si_status = WTERMSIG(status);
  }
  return info;
}
}  // namespace

// The exit of a tracee that is not the waiting thread group's child
// (ptraceZombies_), which the kernel's wait does not know.
bool RecordSession::answerWaitWithExit(RecordTask& t, const std::function<bool(pid_t)>& wanted) {
  auto it = ptraceZombies_.find(t.task.tgid());
  if (it == ptraceZombies_.end()) return false;
  bool waitid = t.nr == SYS_waitid;
  int options = static_cast<int>(t.args[waitid ? 3 : 2]);
  if (waitid && !(options & WEXITED)) return false;
  auto& zombies = it->second;
  for (auto z = zombies.begin(); z != zombies.end(); ++z) {
    if ((options & __WNOTHREAD) && z->tracer != t.task.tid()) continue;
    if (!wanted(z->tid)) continue;
    PtraceZombie zombie = *z;
    if (!(options & WNOWAIT)) zombies.erase(z);
    if (zombies.empty()) ptraceZombies_.erase(it);
    writeWaitAnswer(t, zombie.tid, zombie.waitStatus,
                    exitSiginfo(zombie.tid, zombie.waitStatus));
    return true;
  }
  return false;
}

// Completes a wait4/waitid that rec answered with `who`'s status.
void RecordSession::writeWaitAnswer(RecordTask& t, pid_t who, int waitStatus,
                                    const siginfo_t& info) {
  bool waitid = t.nr == SYS_waitid;
  int64_t result = who;
  if (waitid) {
    result = 0;
    if (t.args[2] && !t.task.writeAsTask(t.args[2], &info, sizeof info)) result = -EFAULT;
  } else if (t.args[1]) {
    if (!t.task.writeAsTask(t.args[1], &waitStatus, sizeof waitStatus)) result = -EFAULT;
  }
  uint64_t rusageAt = t.args[waitid ? 4 : 3];
  if (rusageAt && result >= 0) {
    struct rusage none {};
    if (!t.task.writeAsTask(rusageAt, &none, sizeof none)) result = -EFAULT;
  }
  completeAtEntry(t, result);
}

// A blocking wait for one tracee that is not the caller's child (a thread
// of another process, a process it attached to) fails in the kernel with
// ECHILD: the tracer is not really tracing it. rec lets it sleep in
// ppoll(NULL, 0, NULL, NULL) instead, which its SIGCHLD (notifyPtracer) ends;
// the wait's number and arguments come back at the exit, so the kernel
// restarts the wait itself, which then finds the stop.
void RecordSession::waitInPlaceOfKernel(RecordTask& t, const std::function<bool(pid_t)>& wanted) {
  bool onePid =
      t.nr == SYS_waitid ? static_cast<int>(t.args[0]) == P_PID : static_cast<pid_t>(t.args[0]) > 0;
  if (!onePid) return;
  for (auto& [tid, u] : tasks_) {
    if (u->ptrace.tracerGroup != t.task.tgid() || !wanted(u->task.tid())) continue;
    bool child = u->task.tid() == u->task.tgid() && parentOf(u->task.tid()) == t.task.tgid();
    if (child) return;
    Registers& r = t.task.mutableRegs();
    r.setSyscallNumber(SYS_ppoll);
    r.setSyscallArgs({0, 0, 0, 0, 0, 0});
    t.argsRewritten = true;
    t.numberRewritten = true;
    return;
  }
}

// At a signal-delivery-stop of a traced task: the stop is its tracer's.
// The event says where the task stands (replay brings it there) but
// delivers nothing; the signal, if any, comes with the tracer's resumption.
bool RecordSession::stopForPtracer(RecordTask& t, int signo, capnp::MallocMessageBuilder& msg) {
  if (!t.ptrace.tracer || signo == SIGKILL) return false;
  auto s = msg.getRoot<schema::Event>().getSignal();
  if (s.getDisposition() == schema::SignalDisposition::BY_PTRACER) return false;
  s.setPtraceStop(true);
  if (signo == SIGCONT) t.ptrace.groupStopSignal = 0;  // SIGCONT ends a group-stop
  auto raw = s.getSiginfo();
  std::memcpy(&t.ptrace.siginfo, raw.begin(), std::min(raw.size(), sizeof t.ptrace.siginfo));
  emit(t, msg);
  enterPtraceStop(t, Held::SignalStop, ptraceStopStatus(signo));
  return true;
}

void RecordSession::enterPtraceStop(RecordTask& t, Held held, int status) {
  t.ptrace.held = held;
  t.ptrace.waitStatus = status;
  t.ptrace.reported = false;
  scheduler_->forget(t);
  t.setState(State::PtraceStopped);
  notifyPtracer(t);
}

// A stop sends the tracer SIGCHLD (CLD_TRAPPED). rec sends it for real where
// it matters (a thread of the tracer waits in the kernel, or the tracer
// handles SIGCHLD) and shows it with the kernel's siginfo
// (showPtraceSigchld).
void RecordSession::notifyPtracer(RecordTask& tracee) {
  siginfo_t info{};
  info.si_signo = SIGCHLD;
  info.si_code = CLD_TRAPPED;
  info.si_pid = tracee.task.tid();
  info.si_uid = ::getuid();
  info.si_status = (tracee.ptrace.waitStatus >> 8) & 0xff;
  sendPtraceSigchld(tracee.ptrace.tracer, tracee.ptrace.tracerGroup, info);
}

// The SIGCHLD `info` of a tracee's stop or exit, for its tracer `tracerTid`.
void RecordSession::sendPtraceSigchld(pid_t tracerTid, pid_t tracerGroup, const siginfo_t& info) {
  RecordTask* tracer = findTask(tracerTid);
  if (!tracer || !tracer->alive()) return;
  RecordTask* target = nullptr;
  for (auto& [tid, o] : tasks_) {
    if (o->task.tgid() != tracerGroup || o->state() != State::InSyscall ||
        (o->nr != SYS_wait4 && o->nr != SYS_waitid))
      continue;
    if (blocksSignal(o->task.tid(), SIGCHLD)) {
      // A SIGCHLD it blocks cannot end its wait: rec's own interrupt does.
      // The wait ends with -ERESTARTSYS and the kernel restarts it, and the
      // restarted wait finds the stop (answerWait).
      o->requestInterrupt();
      continue;
    }
    target = o.get();
  }
  if (!target && !hasHandler(tracer->task.tid(), SIGCHLD)) return;
  if (!target) target = tracer;
  ptraceSigchld_[tracerGroup].push_back(info);
  ::syscall(SYS_tgkill, target->task.tgid(), target->task.tid(), SIGCHLD);
}

void RecordSession::showPtraceSigchld(RecordTask& t, siginfo_t& info) {
  if (info.si_signo != SIGCHLD || info.si_code != SI_TKILL || info.si_pid != ::getpid()) return;
  auto it = ptraceSigchld_.find(t.task.tgid());
  if (it == ptraceSigchld_.end() || it->second.empty()) return;
  info = it->second.front();
  it->second.pop_front();
  t.task.setSiginfo(info);
}

void RecordSession::ptraceResume(RecordTask& tracee, int signo) {
  tracee.ptrace.resumeSignal = signo;
  tracee.ptrace.reported = true;
  scheduler_->makeReady(tracee);
}

void RecordSession::startTask(RecordTask& t) {
  if (t.ptrace.interruptWanted && t.ptrace.tracer) {
    // PTRACE_INTERRUPT before it ever ran.
    t.ptrace.interruptWanted = false;
    enterPtraceStop(
        t, Held::Parked,
        t.ptrace.seized ? ptraceStopStatus(SIGTRAP, PTRACE_EVENT_STOP) : ptraceStopStatus(SIGSTOP));
    return;
  }
  if (t.ptrace.resumeSignal) {
    resumeFromPtraceStop(t);
    return;
  }
  scheduler_->run(t);
}

// The tracer resumed `t` (PTRACE_CONT & co) and rec now runs it, from the
// stop it was held in.
void RecordSession::resumeFromPtraceStop(RecordTask& t) {
  int signo = *std::exchange(t.ptrace.resumeSignal, std::nullopt);
  Held held = std::exchange(t.ptrace.held, Held::None);
  if (held == Held::ExitStop) {
    onExitEvent(t);
    return;
  }
  if (held == Held::VforkDone) {
    onSyscallExit(t);
    return;
  }
  if (held == Held::ForkStop) {
    // On to the fork-like syscall's exit; a vfork parent waits there for
    // its child without being current.
    if (t.vforkChild)
      t.resume(Task::Resume::Syscall);
    else
      scheduler_->run(t, Task::Resume::Syscall);
    return;
  }
  if (held != Held::SignalStop || signo == 0) {
    // The kernel ignores a signal given at other stops.
    scheduler_->run(t);
    return;
  }
  siginfo_t info = t.ptrace.siginfo;
  if (info.si_signo != signo) {
    info = siginfo_t{};
    info.si_signo = signo;
    info.si_code = SI_USER;
    info.si_pid = t.ptrace.tracerGroup;
    info.si_uid = ::getuid();
  }
  t.task.setSiginfo(info);
  capnp::MallocMessageBuilder msg;
  auto s = msg.initRoot<schema::Event>().initSignal();
  s.setSigno(signo);
  s.setSiginfo(asData(info));
  s.setDisposition(schema::SignalDisposition::BY_PTRACER);
  s.setIp(t.task.regs().ip());
  s.initRegisters().setRaw(asData(t.task.regs().raw()));
  attachMemoryDigest(t, msg);
  deliverSignal(t, signo, msg);
}

// A PTRACE_INTERRUPT ended the syscall `t` slept in: it stops for its
// tracer at that syscall's exit, where replay parks it too; the syscall
// restarts when it goes on.
bool RecordSession::interruptForPtracer(RecordTask& t) {
  if (!std::exchange(t.ptrace.interruptWanted, false) || !t.ptrace.tracer) return false;
  t.nr = -1;
  capnp::MallocMessageBuilder msg;
  siginfo_t info{};
  info.si_signo = SIGTRAP;
  auto s = msg.initRoot<schema::Event>().initSignal();
  s.setSigno(SIGTRAP);
  s.setSiginfo(asData(info));
  s.setDisposition(schema::SignalDisposition::INJECT_AT_SYSCALL_EXIT);
  s.setIp(t.task.regs().ip());
  s.initRegisters().setRaw(asData(t.task.regs().raw()));
  s.setPtraceStop(true);
  emit(t, msg);
  int status = ptraceStopStatus(t.ptrace.groupStopSignal ? t.ptrace.groupStopSignal : SIGTRAP,
                                PTRACE_EVENT_STOP);
  enterPtraceStop(t, Held::Parked, status);
  return true;
}

// A traced task made a fork-like call its tracer follows (PTRACE_O_TRACEFORK,
// TRACEVFORK, TRACECLONE): the new task is traced too and stops before it
// runs, and `t` stops at the fork event. The event announces the child
// (SyscallEnter with newTask), since its tracer may act on it before `t`'s
// syscall returns. False when its tracer does not follow this kind.
bool RecordSession::stopAtForkForPtracer(RecordTask& t, RecordTask& child, int event) {
  uint64_t option = event == PTRACE_EVENT_FORK    ? PTRACE_O_TRACEFORK
                    : event == PTRACE_EVENT_VFORK ? PTRACE_O_TRACEVFORK
                                                  : PTRACE_O_TRACECLONE;
  if (!t.ptrace.tracer || !(t.ptrace.options & option)) return false;
  child.ptrace = EmulatedPtrace{};
  child.ptrace.tracer = t.ptrace.tracer;
  child.ptrace.tracerGroup = t.ptrace.tracerGroup;
  child.ptrace.seized = t.ptrace.seized;
  child.ptrace.options = t.ptrace.options;
  child.ptrace.interruptWanted = true;  // its first stop (startTask)
  ++ptraceTracees_;
  if (event != PTRACE_EVENT_VFORK) {
    capnp::MallocMessageBuilder msg;
    auto e = msg.initRoot<schema::Event>().initSyscallEnter();
    e.setNumber(t.nr);
    e.setNewTask(child.task.tid());
    e.setNewTaskCpu(child.cpu);
    attachMemoryDigest(t, msg, t.entryDigest, t.entryMasked);
    emit(t, msg);
    t.enterAnnounced = true;
  }
  t.ptrace.eventMessage = static_cast<uint64_t>(child.task.tid());
  t.ptrace.vforkDoneWanted =
      event == PTRACE_EVENT_VFORK && (t.ptrace.options & PTRACE_O_TRACEVFORKDONE);
  enterPtraceStop(t, Held::ForkStop, ptraceStopStatus(SIGTRAP, event));
  return true;
}

// The vfork child of `t` exec'd or exited and `t` stands at its vfork's
// exit: the kernel stops a task whose tracer asked for
// PTRACE_O_TRACEVFORKDONE there first (GETEVENTMSG: the child). Nothing in
// the trace: the syscall's event follows when its tracer resumes it.
bool RecordSession::stopAtVforkDoneForPtracer(RecordTask& t) {
  if (!std::exchange(t.ptrace.vforkDoneWanted, false) || !t.ptrace.tracer) return false;
  enterPtraceStop(t, Held::VforkDone, ptraceStopStatus(SIGTRAP, PTRACE_EVENT_VFORK_DONE));
  return true;
}

// `t` is gone: tasks it traced go on untraced (the kernel detaches them
// when their tracer dies), and it no longer counts as traced.
void RecordSession::endPtraceOf(RecordTask& t, int status) {
  if (t.ptrace.tracer) {
    // A tracer that is not its parent process collects its exit first (the
    // kernel's wait there knows nothing of it): answerWaitWithExit.
    pid_t parent = parentOf(t.task.tid());
    if (RecordTask* forker = findTask(t.forkedBy); !parent && forker) parent = forker->task.tgid();
    if (t.task.tid() != t.task.tgid() || parent != t.ptrace.tracerGroup) {
      ptraceZombies_[t.ptrace.tracerGroup].push_back({t.task.tid(), t.ptrace.tracer, status});
      sendPtraceSigchld(t.ptrace.tracer, t.ptrace.tracerGroup, exitSiginfo(t.task.tid(), status));
    }
    t.ptrace.tracer = 0;
    --ptraceTracees_;
  }
  if (auto z = ptraceZombies_.find(t.task.tgid()); z != ptraceZombies_.end()) {
    std::erase_if(z->second, [&](const PtraceZombie& e) { return e.tracer == t.task.tid(); });
    if (z->second.empty()) ptraceZombies_.erase(z);
  }
  if (ptraceTracees_ == 0) return;
  for (auto& [tid, u] : tasks_) {
    if (u->ptrace.tracer != t.task.tid()) continue;
    u->ptrace.tracer = 0;
    u->ptrace.tracerGroup = 0;
    --ptraceTracees_;
    if (u->state() == State::PtraceStopped) ptraceResume(*u, 0);
  }
}

}  // namespace rec
