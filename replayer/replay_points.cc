// Reaching a point in the middle of user code (a preemption, a signal that
// arrived there): the task runs with an in-process check at the point's
// address (tracee/code_patch.h) that traps when the general registers and
// the loop's memory words match; rec then compares the rest of the state,
// the extended registers and a digest of memory (tracee/task_state.h), and
// stops the task only where all of it equals the recording's. A task that
// gets nowhere near within a bound is a divergence (docs/exactness.md).

#include <fmt/format.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>

#include "code_patch.h"
#include "environment.h"
#include "errors.h"
#include "exit_codes.h"
#include "process_maps.h"
#include "remote_syscall.h"
#include "replay_session.h"
#include "replay_task.h"
#include "signals.h"
#include "syscall_buffer.h"
#include "task_state.h"

namespace rec {

namespace {

// A free two-page range within reach of a rel32 jump from `ip`, or 0.
uint64_t freePagesNear(const std::vector<MapEntry>& maps, uint64_t ip) {
  constexpr uint64_t kReach = (1ull << 31) - (1ull << 20);
  constexpr uint64_t kLowest = 0x10000, kHighest = 0x7ffffffff000;
  uint64_t best = 0, bestDistance = ~0ull;
  uint64_t previousEnd = kLowest;
  auto consider = [&](uint64_t gapStart, uint64_t gapEnd) {
    if (gapEnd <= gapStart || gapEnd - gapStart < kTrampolineSize + 2 * kPageSize) return;
    // Keep a page of distance from both neighbours.
    uint64_t lo = gapStart + kPageSize, hi = gapEnd - kTrampolineSize - kPageSize;
    uint64_t candidate = std::clamp(ip & ~(kPageSize - 1), lo, hi);
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

// The process's start_brk (/proc/TID/stat field 47), or 0.
uint64_t startBrkOf(pid_t tid) {
  std::istringstream stat(readProcFile(fmt::format("/proc/{}/stat", tid)));
  std::string line;
  std::getline(stat, line);
  const auto close = line.rfind(')');
  if (close == std::string::npos || close + 2 > line.size()) return 0;
  std::istringstream fields(line.substr(close + 2));  // from field 3 on
  std::string field;
  for (int i = 3; fields >> field; ++i)
    if (i == 47) return std::strtoull(field.c_str(), nullptr, 10);
  return 0;
}

// The task's mappings, with those the buffered calls queued for it will
// make before it reaches the point (anonymous mmaps, which replay's buffer
// code makes at the recorded address): a trampoline page put there would be
// mapped over, and its unmapping take the program's memory.
std::vector<MapEntry> mapsWithPending(pid_t tid, SysbufSpace* space) {
  std::vector<MapEntry> maps = readMaps(tid);
  if (!space) return maps;
  for (auto [start, end] : sysbuf::pendingMappings(*space, startBrkOf(tid))) {
    MapEntry m;
    m.start = start;
    m.end = end;
    maps.push_back(m);
  }
  std::sort(maps.begin(), maps.end(),
            [](const MapEntry& a, const MapEntry& b) { return a.start < b.start; });
  return maps;
}

// Wakes rec's waitpid every tick (this thread only), so the bound on
// reaching a point is enforced while the task runs.
class WaitTicker {
 public:
  explicit WaitTicker(std::chrono::milliseconds every) {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};  // no SA_RESTART: waitpid returns EINTR
    ::sigaction(SIGALRM, &sa, &old_);
    sigevent ev{};
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = SIGALRM;
    ev._sigev_un._tid = static_cast<pid_t>(::syscall(SYS_gettid));
    if (::timer_create(CLOCK_MONOTONIC, &ev, &timer_) != 0) return;
    created_ = true;
    itimerspec spec{};
    spec.it_interval.tv_sec = every.count() / 1000;
    spec.it_interval.tv_nsec = (every.count() % 1000) * 1'000'000;
    spec.it_value = spec.it_interval;
    ::timer_settime(timer_, 0, &spec, nullptr);
  }
  ~WaitTicker() {
    if (created_) ::timer_delete(timer_);
    ::sigaction(SIGALRM, &old_, nullptr);
  }
  WaitTicker(const WaitTicker&) = delete;
  WaitTicker& operator=(const WaitTicker&) = delete;

 private:
  timer_t timer_{};
  bool created_ = false;
  struct sigaction old_ {};
};

// CPU time the task has used, from /proc/TID/schedstat.
std::chrono::nanoseconds cpuTime(pid_t tid) {
  std::istringstream in(readProcFile(fmt::format("/proc/{}/schedstat", tid)));
  uint64_t ns = 0;
  in >> ns;
  return std::chrono::nanoseconds(ns);
}

constexpr int kTrapHardwareBreakpoint = 4;  // TRAP_HWBKPT

// The registers of a task stopped at the point's address against the
// recorded point's. orig_rax is the kernel's note of the last syscall (the
// recorder's walk may have stepped over one just before the point; replay
// arrives by a trap): the program cannot read it, and it does not count.
std::optional<std::string> pointRegisterDifference(const user_regs_struct& recorded,
                                                   user_regs_struct live, uint64_t ip) {
  live.rip = ip;
  live.orig_rax = recorded.orig_rax;
  return registerDifference(recorded, live);
}

}  // namespace

ReplaySession::RecordedPoint ReplaySession::recordedPoint(
    schema::Registers::Reader regs, capnp::List<schema::MemWrite>::Reader words, bool hasState,
    schema::PointState::Reader state) {
  RecordedPoint p;
  p.regs = rawRegisters(regs);
  // For rec's tests: a point whose rcx the program never holds (it is
  // unreachable), to check that replay reports it within its bound.
  if (const char* corrupt = ::getenv("REC_TEST_UNREACHABLE_POINTS"); corrupt && *corrupt == '1')
    p.regs.rcx ^= uint64_t{1} << 40;
  for (auto w : words) {
    MemoryCheck c{w.getAddress(), 0};
    std::memcpy(&c.value, w.getData().begin(), std::min<size_t>(8, w.getData().size()));
    p.words.push_back(c);
  }
  if (hasState) {
    auto x = state.getExtendedRegisters();
    p.xstate.emplace(x.begin(), x.end());
    p.memory = recordedDigest(state.getMemory());
    p.runNs = state.getRunNs();
    p.entry = state.getHardwareBreakpoint() ? PointEntry::DebugRegister : PointEntry::Jump;
    auto stack = state.getStack();
    p.stack.assign(stack.begin(), stack.end());
    p.deadStackExcluded = state.getDeadStackExcluded();
    for (auto r : state.getPendingOutputs()) p.pendingOutputs.push_back({r.getStart(), r.getEnd()});
  }
  return p;
}

// What still differs between the task, trapped by the in-process check at a
// candidate, and the recorded point; nullopt when nothing does. The task's
// code at the point must be as the program has it (no patch).
std::optional<std::string> ReplaySession::stateDifference(ReplayTask& t, const RecordedPoint& point,
                                                          uint64_t ip) {
  // The trap is in the trampoline: rip is the point's.
  if (auto d = pointRegisterDifference(point.regs, t.task.regs().raw(), ip)) return *d;
  if (point.xstate) {
    std::vector<uint8_t> x = readExtendedRegisters(t.task.tid());
    if (auto d = extendedRegisterDifference(*point.xstate, x))
      return fmt::format("extended register {}", *d);
  }
  if (point.memory) {
    std::vector<AddressRange> excluded = rangesNotDigested();
    if (point.deadStackExcluded) excluded.push_back(deadStackBelow(t.task.tid(), point.regs.rsp));
    // The block that differed at the previous candidate first, alone: in a
    // loop whose rounds differ in memory only, it usually differs again, and
    // hashing one block costs far less than all of memory (a JVM's heap).
    if (point.suspectBlock) {
      BlockDigest now = digestBlock(t.task.tid(), excluded, *point.suspectBlock, point.pendingOutputs);
      BlockDigest recorded{*point.suspectBlock, 0, 0};
      for (const BlockDigest& b : point.memory->blocks)
        if (b.start == *point.suspectBlock) recorded = b;
      if (!(now == recorded))
        return fmt::format("memory in the 1 MiB at {:#x} differs: {} non-zero pages, recorded {}",
                           now.start, now.pages, recorded.pages);
    }
    MemoryDigest now = digestMemory(t.task.tid(), excluded, nullptr, point.pendingOutputs);
    point.suspectBlock = firstDifferingBlock(*point.memory, now);
    if (auto d = memoryDifference(*point.memory, now, t.task.tid())) return *d;
  }
  return std::nullopt;
}

// Stops the task at the first moment its whole state equals the recorded
// point's (see the top of this file).
void ReplaySession::reachPoint(ReplayTask& t, const RecordedPoint& point, const std::string& what) {
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

  const uint64_t ip = point.regs.rip;
  const std::string expected = fmt::format("to reach {} at {:#x}", what, ip);
  const auto setupStart = std::chrono::steady_clock::now();
  // The code around the point: for a debug-register entry, the loop it may be in.
  uint64_t codeStart = point.entry == PointEntry::Jump ? ip : ip - kRegionBack;
  std::vector<uint8_t> code(ip + kRegionForward + 16 - codeStart);
  size_t n = t.task.read(codeStart, code.data(), code.size());
  if (n <= ip - codeStart && codeStart < ip) {
    // The page before is not mapped: start at the point's page.
    codeStart = std::max(codeStart, ip & ~(kPageSize - 1));
    code.resize(ip + kRegionForward + 16 - codeStart);
    n = t.task.read(codeStart, code.data(), code.size());
  }
  code.resize(n);
  if (n <= ip - codeStart) diverge(t, expected, "has no code there");
  uint64_t page = freePagesNear(mapsWithPending(t.task.tid(), t.sysbuf.get()), ip);
  if (!page) diverge(t, expected, "has no room for a trampoline near it");
  std::span<const uint8_t> xmm;
  if (point.xstate && point.xstate->size() >= kXmmOffset + kXmmBytes)
    xmm = std::span<const uint8_t>(*point.xstate).subspan(kXmmOffset, kXmmBytes);
  // Without a debugger, a point a debug register would enter is entered by a
  // jump over it and the instructions after it, when they allow one
  // (tracee/code_patch.h): a loop entered again and again (the thread pool's,
  // once per item) then costs no stop per entry. REC_POINT_JUMP_OVER=off
  // keeps the debug register (for measuring).
  static const bool jumpOverAllowed = !offByEnvironment("REC_POINT_JUMP_OVER");
  auto trampoline =
      buildTrampoline(page, ip, code, codeStart, point.entry, point.regs, point.words,
                      point.stack, xmm,
                      point.entry == PointEntry::DebugRegister && !observer_ && jumpOverAllowed);
  if (!trampoline) diverge(t, expected, "has code there that cannot be checked in place");
  bool jumpEntry = point.entry == PointEntry::Jump || !trampoline->jump.empty();
  if (jumpEntry && point.entry == PointEntry::DebugRegister) {
    // The task stands inside what the jump covers (the previous point was
    // in the same loop): at the start of an instruction there, it goes on
    // from that instruction's copy; with a signal to deliver first (whose
    // frame would hold the trampoline's address) it keeps the debug register.
    const uint64_t now = t.task.regs().ip();
    if (now > ip && now < ip + trampoline->jump.size()) {
      std::optional<uint64_t> copy = trampoline->copyOf(now);
      if (copy && !hasPending)
        t.task.mutableRegs().setIp(*copy);
      else
        jumpEntry = false;
    }
    if (!jumpEntry) {
      trampoline->jump.clear();
      trampoline->guards.clear();
    }
  }
  int64_t mapped = remoteSyscall(
      t.task, SYS_mmap,
      {page, kTrampolineSize, PROT_READ | PROT_WRITE | PROT_EXEC,
       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, static_cast<uint64_t>(-1), 0},
      strays);
  if (mapped != static_cast<int64_t>(page))
    throw RecError(kExitInternal, fmt::format("rec: cannot map a trampoline at {:#x}", page));
  trampolines_.push_back({page, page + kTrampolineSize});
  t.task.write(page, trampoline->code.data(), trampoline->code.size());
  t.task.write(page + kPageSize, trampoline->data.data(), trampoline->data.size());
  std::span<const uint8_t> original(code.data() + (ip - codeStart), trampoline->jump.size());
  auto plant = [&] {
    if (jumpEntry) t.task.write(ip, trampoline->jump.data(), trampoline->jump.size());
  };
  auto unplant = [&] {
    if (jumpEntry) t.task.write(ip, original.data(), original.size());
  };
  plant();
  // A debugger above the replay (observer_) sees the task's runs: its
  // breakpoints must not be skipped by running a copy of the program's loop,
  // so it gets no copy; rec then checks each hit of the debug register itself.
  const bool checkHitsInRec = point.entry == PointEntry::DebugRegister && observer_;
  if (!jumpEntry)
    pointBreakpoints_.push_back(std::make_unique<ExecutionBreakpoint>(t.task.tid(), ip));
  for (uint64_t guard : trampoline->guards)
    pointBreakpoints_.push_back(std::make_unique<ExecutionBreakpoint>(t.task.tid(), guard));
  activePatch_ = ActivePatch{t.recordedTid, ip,
                             jumpEntry ? std::vector<uint8_t>(original.begin(), original.end())
                                       : std::vector<uint8_t>{},
                             page, trampoline->trapIp};
  auto cleanUp = [&] {
    unplant();
    disarmPointBreakpoints();
    activePatch_.reset();
  };
  // The in-process check's words, read by rec (checkHitsInRec).
  auto wordsMatch = [&] {
    for (const MemoryCheck& w : point.words) {
      uint64_t value = 0;
      if (t.task.read(w.address, &value, sizeof value) != sizeof value || value != w.value)
        return false;
    }
    return true;
  };

  // The bound: the task's own CPU time (a load on the machine does not
  // count), and rec's wall time (which includes comparing candidates).
  const auto recorded = std::chrono::nanoseconds(point.runNs);
  auto cpuLimit = std::chrono::seconds(10) + 50 * recorded;
  auto wallLimit = std::chrono::seconds(60) + 500 * recorded;
  if (const char* limit = ::getenv("REC_POINT_TIMEOUT")) {  // seconds; for tests
    cpuLimit = std::chrono::seconds(std::atoi(limit));
    wallLimit = 2 * cpuLimit;
  }
  // A debugger may hold the task as long as its user likes: CPU time only.
  if (observer_) wallLimit = std::chrono::nanoseconds::max();
  const auto cpuStart = cpuTime(t.task.tid());
  const auto wallStart = std::chrono::steady_clock::now();
  uint64_t candidates = 0, entryHits = 0, guardHits = 0;
  std::chrono::steady_clock::duration confirming{};
  const auto setupTime = wallStart - setupStart;
  std::string lastDifference;

  if (hasPending) t.task.setSiginfo(pendingInfo);
  resumeDeliveringPending(t);
  WaitTicker ticker(std::chrono::milliseconds(100));
  for (;;) {
    std::optional<Stop> got = t.task.waitUnlessInterrupted();
    // DR7 as the debugger left it, for the debugger (observer_). Without
    // one nobody else programs the task's debug registers: the breakpoint
    // stays armed across stops (a hit costs 4 ptrace calls fewer, two of
    // them DR7 writes; the thread pool's loop entry hits it once per item).
    if (got && observer_)
      for (auto it = pointBreakpoints_.rbegin(); it != pointBreakpoints_.rend(); ++it)
        (*it)->disarm();
    if (got && observerClaims(t, *got)) {
      resumeUserCode(t, 0);
      continue;
    }
    if (!got) {
      auto cpu = cpuTime(t.task.tid()) - cpuStart;
      auto wall = std::chrono::steady_clock::now() - wallStart;
      if (cpu < cpuLimit && wall < wallLimit) continue;
      // Out of bounds: stop it where it is and say so.
      ::ptrace(PTRACE_INTERRUPT, t.task.tid(), nullptr, nullptr);
      Stop s = t.task.wait();
      while (s.kind != StopKind::GroupStop && s.kind != StopKind::Exited) {
        t.task.resume(Task::Resume::Cont);
        s = t.task.wait();
      }
      if (s.kind == StopKind::Exited) {
        t.park = Park::Dead;
        throw RecError(kExitDivergence,
                       fmt::format("rec: replay diverged at event #{} (task {}): expected {}, "
                                   "but the program {}",
                                   eventIndex_, t.recordedTid, expected, describeStop(s)));
      }
      // Stepped on to the point's address (the next pass of a loop), what
      // differs there tells where replay went its own way.
      std::string here;
      for (int i = 0;
           i < 20000 && t.task.regs().ip() != ip && t.task.regs().ip() != trampoline->checkIp;
           ++i) {
        t.task.resume(Task::Resume::Step);
        Stop s2 = t.task.wait();
        if (s2.kind != StopKind::Signal || s2.signal != SIGTRAP) break;
      }
      cleanUp();
      if (t.task.regs().ip() == ip || t.task.regs().ip() == trampoline->checkIp) {
        if (auto d = pointRegisterDifference(point.regs, t.task.regs().raw(), ip))
          here = "; at its next pass " + *d;
        else
          for (const MemoryCheck& w : point.words) {
            uint64_t value = 0;
            if (t.task.read(w.address, &value, sizeof value) != sizeof value || value != w.value) {
              here = fmt::format("; at its next pass the word at {:#x} is {:#x}, recorded {:#x}",
                                 w.address, value, w.value);
              break;
            }
          }
      }
      auto ms = [](auto d) {
        return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
      };
      diverge(t, expected,
              fmt::format("had not got there after {} ms of its CPU time and {} ms of rec's "
                          "(recorded: {} ms; {} candidate(s) with matching registers{}{}), and is",
                          ms(cpu), ms(wall), ms(recorded), candidates,
                          lastDifference.empty() ? "" : "; the last differed: " + lastDifference,
                          here));
    }
    Stop stop = *got;
    if (stop.kind == StopKind::Signal) {
      siginfo_t info = t.task.siginfo();
      uint64_t at = t.task.regs().ip();
      if (stop.signal == SIGTRAP && at == trampoline->trapIp) {
        // A candidate: the registers and words match. The rest of the state?
        ++candidates;
        unplant();  // memory as the program has it
        const auto confirmStart = std::chrono::steady_clock::now();
        auto difference = stateDifference(t, point, ip);
        confirming += std::chrono::steady_clock::now() - confirmStart;
        if (!difference) break;
        lastDifference = *difference;
        plant();
        t.task.mutableRegs().setIp(trampoline->resumeIp);
        resumeUserCode(t, 0);
        continue;
      }
      if (stop.signal == SIGTRAP && info.si_code == kTrapHardwareBreakpoint &&
          std::find(trampoline->guards.begin(), trampoline->guards.end(), at) !=
              trampoline->guards.end()) {
        // Into the middle of the jump: that instruction's copy runs instead.
        ++guardHits;
        t.task.mutableRegs().setIp(*trampoline->copyOf(at));
        resumeUserCode(t, 0);
        continue;
      }
      if (stop.signal == SIGTRAP && info.si_code == kTrapHardwareBreakpoint && at == ip &&
          point.entry == PointEntry::DebugRegister && !jumpEntry) {
        ++entryHits;
        if (!checkHitsInRec) {
          t.task.mutableRegs().setIp(trampoline->checkIp);  // into the copy, checked
          resumeUserCode(t, 0);
          continue;
        }
        // The kernel set the resume flag: resumed, the instruction runs
        // without hitting the debug register again.
        if (pointRegisterDifference(point.regs, t.task.regs().raw(), ip) || !wordsMatch()) {
          resumeUserCode(t, 0);
          continue;
        }
        ++candidates;
        auto difference = stateDifference(t, point, ip);
        if (!difference) break;
        lastDifference = *difference;
        resumeUserCode(t, 0);
        continue;
      }
      auto faultMiss = trampoline->faultMissFor(at);
      if ((stop.signal == SIGSEGV || stop.signal == SIGBUS) && faultMiss) {
        // A memory word the check reads is not mapped yet: not the point.
        t.task.mutableRegs().setIp(*faultMiss);
        resumeUserCode(t, 0);
        continue;
      }
      if (!isSynchronousFault(stop.signal, info)) {
        resumeUserCode(t, 0);  // a replay-time signal, not the recording's
        continue;
      }
    } else if (stop.kind == StopKind::GroupStop) {
      resumeUserCode(t, 0);
      continue;
    }
    if (stop.kind == StopKind::Exited) {
      pointBreakpoints_.clear();  // the task is gone, and its debug registers
      activePatch_.reset();
      t.park = Park::Dead;
      throw RecError(kExitDivergence,
                     fmt::format("rec: replay diverged at event #{} (task {}): expected {}, but "
                                 "the program {}",
                                 eventIndex_, t.recordedTid, expected, describeStop(stop)));
    }
    cleanUp();
    // A fault in copied code happened at the original instruction, for the program.
    if (auto original = trampoline->originalOf(t.task.regs().ip()))
      t.task.mutableRegs().setIp(*original);
    std::string actual = stop.kind == StopKind::Seccomp ? "made a syscall"
                         : stop.kind == StopKind::Signal
                             ? fmt::format("received {}", sys::signalName(stop.signal))
                             : describeStop(stop);
    if (candidates)
      actual += fmt::format(" after {} candidate(s) with matching registers (the last differed: {})",
                            candidates, lastDifference);
    diverge(t, expected, actual);
  }
  // There: take the check away again and stand exactly at the point.
  cleanUp();
  t.task.setRegs(Registers(point.regs));
  remoteSyscall(t.task, SYS_munmap, {page, kTrampolineSize, 0, 0, 0, 0}, strays);
  trampolines_.pop_back();
  t.pendingSignal = 0;
  t.park = Park::Resumable;
  if (options_.verbose) {
    auto ms = [](auto d) {
      return std::chrono::duration_cast<std::chrono::microseconds>(d).count() / 1000.0;
    };
    fmt::print(stderr,
               "rec: reached {} at {:#x} after {} candidate(s), entered by {}, {} debug-register "
               "entries, {} guard hits, {} ms of its CPU time and {} ms of rec's (recorded: {} "
               "ms; set-up {} ms, confirmation {} ms)\n",
               what, ip, candidates,
               !jumpEntry                             ? "a debug register"
               : point.entry == PointEntry::Jump      ? "a jump"
                                                      : "a jump over several instructions",
               entryHits, guardHits, ms(cpuTime(t.task.tid()) - cpuStart),
               ms(std::chrono::steady_clock::now() - wallStart), ms(recorded), ms(setupTime),
               ms(confirming));
  }
}

}  // namespace rec
