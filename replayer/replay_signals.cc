// Replaying signals and rdtsc, and stopping a task at a point in the middle
// of its user code through a conditional breakpoint (tracee/code_patch.h).

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

user_regs_struct ReplaySession::rawRegisters(schema::Registers::Reader r) {
  user_regs_struct raw{};
  std::memcpy(&raw, r.getRaw().begin(), std::min(sizeof raw, r.getRaw().size()));
  return raw;
}

namespace {
// A free page within reach of a rel32 jump from `ip`, or 0.
uint64_t freePageNear(const std::vector<MapEntry>& maps, uint64_t ip) {
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
}  // namespace

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
    if (auto death = advanceInitial(t))
      diverge(t, fmt::format("to reach {}", what), describeStop(*death));
  } else if (t.park == Park::SkipPending) {
    skipSyscall(t);
    const Registers regs = t.task.regs();
    skipToSyscallExit(t.task, regs.result(), strays);
    t.task.setRegs(regs);  // the skip's result and ip, now at the syscall's exit
    t.park = Park::Resumable;
  } else if (t.park != Park::Resumable) {
    throw RecError(kExitBadTrace, fmt::format("rec: event #{}: a point in user code for a task "
                                              "inside a syscall",
                                              eventIndex_));
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
  auto trampoline =
      buildTrampoline(page, ip, std::span<const uint8_t>(code, n), *length, expected, memory);
  if (!trampoline)
    diverge(t, fmt::format("to reach {} at {:#x}", what, ip), "has no relocatable code there");
  int64_t mapped = remoteSyscall(
      t.task, SYS_mmap,
      {page, kTrampolineSize, PROT_READ | PROT_EXEC,
       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, static_cast<uint64_t>(-1), 0},
      strays);
  if (mapped != static_cast<int64_t>(page))
    throw RecError(kExitInternal, fmt::format("rec: cannot map a trampoline at {:#x}", page));
  t.task.write(page, trampoline->page.data(), trampoline->page.size());
  t.task.write(ip, trampoline->jump.data(), trampoline->jump.size());

  if (hasPending) t.task.setSiginfo(pendingInfo);
  activePatch_ = ActivePatch{t.recordedTid, ip, std::vector<uint8_t>(code, code + *length), page,
                             trampoline->trapIp};
  resumeUserCode(t, std::exchange(t.pendingSignal, 0));
  for (;;) {
    Stop stop = t.task.wait();
    if (observerClaims(t, stop)) {
      resumeUserCode(t, 0);
      continue;
    }
    if (stop.kind == StopKind::Signal) {
      siginfo_t info = t.task.siginfo();
      if (stop.signal == SIGTRAP && t.task.regs().ip() == trampoline->trapIp) break;
      if (!isSynchronousFault(stop.signal, info)) {
        resumeUserCode(t, 0);  // a replay-time signal, not the recording's
        continue;
      }
    } else if (stop.kind == StopKind::GroupStop) {
      resumeUserCode(t, 0);
      continue;
    }
    activePatch_.reset();
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
  activePatch_.reset();
  t.task.write(ip, code, *length);
  Registers regs(expected);
  regs.raw().eflags = t.task.regs().raw().eflags;
  t.task.setRegs(regs);
  remoteSyscall(t.task, SYS_munmap, {page, kTrampolineSize, 0, 0, 0, 0}, strays);
  t.pendingSignal = 0;
  t.park = Park::Resumable;
}

std::optional<Stop> ReplaySession::advanceInitial(ReplayTask& t) {
  for (;;) {
    Stop stop = t.task.wait();
    if (stop.kind == StopKind::GroupStop) break;
    // Killed before it ever ran (a sibling's exit_group, SIGKILL): it may
    // report its death without a first stop.
    if (stop.kind == StopKind::ExitEvent || stop.kind == StopKind::Exited) {
      t.park = ReplayTask::Park::Resumable;
      return stop;
    }
    t.task.resume(Task::Resume::Cont);
  }
  if (t.childTidAddress) {
    int32_t value = t.childTidValue;
    t.task.write(std::exchange(t.childTidAddress, 0), &value, sizeof value);
  }
  t.park = ReplayTask::Park::Resumable;
  return std::nullopt;
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
      StraySignals strays;
      unwindSyscallEntry(t.task, strays);
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
      // A signal the temporary mask blocks arrived during the syscall and
      // was delivered only after it returned with the old mask back: no
      // waiting for it (it would never end the wait).
      uint64_t maskBits = 0;
      if (mask && t.task.read(*mask, &maskBits, sizeof maskBits) == sizeof maskBits &&
          (maskBits & (uint64_t{1} << (signo - 1))))
        mask.reset();
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
                                                  "without that syscall",
                                                  eventIndex_));
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
    std::string actual = stop.kind == StopKind::Seccomp ? "made a syscall"
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
  bool patched = stop.kind == StopKind::Signal && stop.signal == SIGILL && rdtscPatcher_ &&
                 rdtscPatcher_->siteAt(t.task, t.task.regs().ip());
  if (stop.kind != StopKind::Signal || (stop.signal != SIGSEGV && !patched) ||
      t.task.regs().ip() != e.getIp())
    diverge(t, fmt::format("rdtsc at {:#x}", e.getIp()), describeStop(stop));
  Registers& r = t.task.mutableRegs();
  r.raw().rax = e.getValue() & 0xffffffff;
  r.raw().rdx = e.getValue() >> 32;
  if (e.getIsRdtscp()) r.raw().rcx = e.getAux();
  r.setIp(r.ip() + (e.getIsRdtscp() ? 3 : 2));
  t.pendingSignal = 0;
  t.park = ReplayTask::Park::Resumable;
}

}  // namespace rec
