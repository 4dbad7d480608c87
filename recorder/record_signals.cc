// Signals, rdtsc, preemption, and the points in user code where a task is
// stopped for them (see tracee/code_patch.h for how replay finds them).

#include <elf.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/perf_event.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <x86intrin.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <sstream>
#include <map>
#include <set>

#include "code_patch.h"
#include "debug_registers.h"
#include "errors.h"
#include "exit_codes.h"
#include "process_maps.h"
#include "record_session.h"
#include "record_task.h"
#include "remote_syscall.h"
#include "scheduler.h"
#include "signals.h"
#include "spawn.h"
#include "syscall_buffer.h"
#include "syscall_table.h"
#include "task_state.h"
#include "time_shim.h"

namespace rec {

namespace {
// `regs`: the task's registers where the signal is delivered, which replay
// compares (a point's are set by setPoint).
schema::SignalEvent::Builder initSignalEvent(capnp::MallocMessageBuilder& msg,
                                             const siginfo_t& info,
                                             schema::SignalDisposition disposition,
                                             const user_regs_struct& regs) {
  auto s = msg.initRoot<schema::Event>().initSignal();
  s.setSigno(info.si_signo);
  s.setSiginfo(asData(info));
  s.setDisposition(disposition);
  s.setIp(regs.rip);
  s.initRegisters().setRaw(asData(regs));
  return s;
}

// What the in-process check compares of the registers (all general
// registers and the arithmetic flags), as one number.
uint64_t registerStateHash(const user_regs_struct& r) {
  const uint64_t values[] = {r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi,
                             r.rbp, r.rsp, r.r8,  r.r9,  r.r10, r.r11,
                             r.r12, r.r13, r.r14, r.r15, r.rip, r.eflags & 0xcd5};
  return XXH3_64bits(values, sizeof values);
}
}  // namespace

namespace {
// Moves rec's thread to `cpu` for a while, back to `home` afterwards.
class NearCpu {
 public:
  NearCpu(int cpu, int home) : home_(home) {
    moved_ = cpu >= 0 && home >= 0 && cpu != home && pinToCpu(cpu) == cpu;
  }
  ~NearCpu() {
    if (moved_) pinToCpu(home_);
  }
  NearCpu(const NearCpu&) = delete;
  NearCpu& operator=(const NearCpu&) = delete;

 private:
  int home_;
  bool moved_ = false;
};
}  // namespace

// A preemption the scheduler asked for (Scheduler::maybePreempt) has stopped
// the task: switch away from it at a point replay can find.
void RecordSession::onInterrupted(RecordTask& t) {
  if (!scheduler_->isCurrent(t) || t.state() != RecordTask::State::Running) {
    // It stopped elsewhere first (a syscall); the interrupt came after.
    if (scheduler_->isCurrent(t))
      scheduler_->run(t);
    else
      scheduler_->makeReady(t);
    return;
  }
  if (inBlockWindow(t)) {
    // Asleep in the buffer (or on its way in or out): a call that had no
    // effect is made traced instead, where it blocks under the scheduler.
    std::optional<Stop> other;
    switch (settleBlock(t, other)) {
      case BlockSettle::Aborted:
        scheduler_->run(t);
        return;
      case BlockSettle::Other:
        handleStop(t, *other);
        return;
      case BlockSettle::Completed:
        break;  // it ran on: a preemption as any other
    }
  }
  if (t.atSyscallReturn(t.task.regs(), false)) {
    // Right at a syscall's return: a switch there needs no event, replay
    // parks the task after that syscall anyway.
    t.leftSyscallReturn();
    scheduler_->makeReady(t);
    return;
  }
  t.leftSyscallReturn();
  PointChoice point;
  std::optional<Stop> other = choosePoint(t, point);
  if (other) {
    // A syscall or a signal came first: carry on with that stop normally.
    handleStop(t, *other);
    return;
  }
  capnp::MallocMessageBuilder msg;
  auto p = msg.initRoot<schema::Event>().initPreempt();
  setPoint(p.initRegisters(), p.initMemory(static_cast<unsigned>(point.memory.size())),
           p.initState(), t, point);
  emit(t, msg);
  scheduler_->notePreemption();
  scheduler_->makeReady(t);
}

// Chooses where the task stops for a preemption or a signal, and how replay
// will get there (tracee/code_patch.h). The point's identity is its whole
// state (setPoint); the general registers and a few memory words are what
// replay checks in-process, so the recorder single-steps the task round the
// loop it is in to learn which words the loop changes (a counter in memory,
// a spin on a flag, the value of an interpreter's variable): replay's
// in-process check then tells the rounds apart by itself instead of stopping
// at each. A round is seen once an instruction recurs with the same
// registers (what changed since then is in memory), or when the registers
// themselves count (an instruction visited many times, never alike), or when
// the loop writes no memory. Best is then an instruction of five bytes or
// more in that loop (replay patches a jump over it: no stop until the
// registers match); twice round a loop without one, or after a long walk,
// any instruction will do (replay enters through a debug register). Returns
// the stop that interrupted the stepping (a syscall, a signal), or nullopt
// once the task stands at the chosen point.
std::optional<Stop> RecordSession::choosePoint(RecordTask& t, PointChoice& point) {
  // Each step wakes the task, then rec: with the task on another CPU than
  // rec (docs/parallel.md "CPU placement") those are cross-CPU wake-ups, and
  // a walk of 4096 steps took 1.4 s under load. rec walks on the task's CPU.
  NearCpu near(t.cpu, cpus_.empty() ? -1 : cpus_.front());
  constexpr int kMaxSteps = 256;        // then any patchable instruction, once a round is seen
  constexpr int kMaxRoundSteps = 4096;  // a round longer than this is not waited for
  constexpr int kCountingVisits = 24;   // visits of one instruction, never alike: registers count
  point.walkStart = std::chrono::steady_clock::now();
  std::map<uint64_t, int> visits;
  // (rip, hash of the registers) -> the tracked memory's hashes when last
  // there: a recurrence is a round only if memory changed in between (the
  // same call twice in one round of an interpreter's loop is not one).
  struct Seen {
    uint64_t memory, entered;
  };
  std::map<std::pair<uint64_t, uint64_t>, Seen> states;
  // XOR of (address, value) over the words written so far, current values;
  // and the same over their values before the walk wrote them.
  uint64_t memoryHash = 0, enteredHash = 0;
  auto wordHash = [](uint64_t address, uint64_t value) {
    const uint64_t pair[2] = {address, value};
    return XXH3_64bits(pair, sizeof pair);
  };
  std::vector<std::pair<uint64_t, uint64_t>>
      pending;                          // written by this step: (address, value before)
  std::map<uint64_t, uint64_t> before;  // word written -> its value before that
  bool roundSeen = false;
  int roundKnownAt = -1;
  bool loopHasJumpable = false;  // an instruction of 5 bytes or more passed twice
  // Instructions replay can enter by a jump over them and what follows
  // (jumpOverFits), and the steps spent walking on to one of them.
  std::set<uint64_t> overJumpable;
  int overWait = 0;
  // The last step stopped for a signal before its instruction ran: this is
  // the same visit again, not a recurrence (a state "recurring" so looked
  // like a loop that writes nothing, and its point had no word to check:
  // alarm_busy under load, a SIGALRM during a 53 ms step).
  bool again = false;
  for (int step = 0;; ++step) {
    const user_regs_struct& regs = t.task.regs().raw();
    uint64_t ip = regs.rip;
    uint8_t code[kCodeWindow] = {};
    size_t n = t.task.read(ip, code, sizeof code);
    std::span<const uint8_t> window(code, n);
    t.task.knowCodeAt(ip, window);
    const bool repeat = again;
    again = false;
    int visit = repeat ? visits[ip] : ++visits[ip];
    if (size_t length = repStringLength(window)) {
      // Stepping a REP string instruction goes one iteration at a time, and
      // replay can only stop before its first: let it finish.
      if (auto stop = runTo(t, ip + length)) return stop;
      continue;
    }
    bool recurred = false;  // this instruction with these registers, seen before
    if (!repeat) {
      auto [seen, fresh] =
          states.try_emplace({ip, registerStateHash(regs)}, Seen{memoryHash, enteredHash});
      recurred = !fresh;
      // Words first written since count with the value they had then.
      if (!fresh && (seen->second.memory ^ seen->second.entered ^ enteredHash) != memoryHash)
        roundSeen = true;
      seen->second = Seen{memoryHash, enteredHash};
    }
    // A loop that writes nothing is a round of its own only when its state
    // recurs whole (a spin on a flag, `jmp .`): every pass is then the same
    // moment. One whose registers move (a hash table's probe loop) is
    // usually an inner loop, entered alike in every round of a loop around
    // it whose state is in memory: walk on until that round is seen.
    bool roundKnown = roundSeen || (before.empty() && recurred) || visit >= kCountingVisits ||
                      step >= kMaxRoundSteps;
    if (roundKnown && roundKnownAt < 0) roundKnownAt = step;
    // The shim runs other instructions in recording and replay: no point there.
    bool allowed = !time_shim::inShimCode(ip) && roundKnown;
    bool jumpable = !time_shim::inShimCode(ip) && jumpPatchable(window, ip);
    if (jumpable && visit >= 2) loopHasJumpable = true;
    if (allowed && (visit >= 2 || step >= kMaxSteps) && jumpable) {
      point.entry = PointEntry::Jump;
      point.steps = step;
      break;
    }
    // A debug register stops the task at every pass that leaves its copied
    // loop: only for a small loop without a jump-patchable instruction (it
    // fits the copy), or when no jump will do.
    bool smallLoop = visit >= 3 && visits.size() <= 32 && !loopHasJumpable;
    // Replay enters a point by a jump over it and the instructions after it
    // where those fit, with no stop each time the loop is entered again
    // (the thread pool's, every work item): in a small loop with such an
    // instruction, walk on to it (less than a round more).
    const bool fitsOver = !time_shim::inShimCode(ip) && jumpOverFits(window, ip);
    if (fitsOver) overJumpable.insert(ip);
    bool waitForOver = false;
    if (allowed && smallLoop && !fitsOver && overWait < 32)
      for (uint64_t other : overJumpable) waitForOver |= visits[other] >= 2;
    if (waitForOver) ++overWait;
    if (allowed && !waitForOver && (smallLoop || step - roundKnownAt >= kMaxSteps) &&
        relocatable(window, ip)) {
      point.entry = PointEntry::DebugRegister;
      point.steps = step;
      break;
    }
    if (step >= kMaxRoundSteps + 4 * kMaxSteps)
      throw RecError(kExitInternal, fmt::format("no instruction near {:#x} can be a point", ip));
    // What the shim writes (its log, its own stack frame) differs between
    // recording and replay: never part of a point's identity.
    pending.clear();
    if (!time_shim::inShimCode(ip))
      for (uint64_t address : memoryWrittenBy(window, ip, regs)) {
        if (address >= kRecPages[0].start && address < kRecPages[0].end) continue;
        uint64_t value = 0;
        if (t.task.read(address, &value, sizeof value) != sizeof value) continue;
        if (before.try_emplace(address, value).second) {
          memoryHash ^= wordHash(address, value);
          enteredHash ^= wordHash(address, value);
        }
        pending.push_back({address, value});
      }
    if (ip == kScratchShimSyscall && inBlockWindow(t)) {
      // Stepping into a call that would block in the buffer: made traced
      // instead (the walk ends at its seccomp stop).
      std::optional<Stop> ignored;
      settleBlock(t, ignored);
    }
    t.task.resume(Task::Resume::Step);  // with the registers rec changed
    Stop stop = t.task.wait();
    if (absorbDesched(t, stop)) {
      again = true;
      continue;
    }
    // Stepped over a syscall that needs no stop (rec lets some through):
    // the kernel reports that step as TRAP_BRKPT, and the flags it saved in
    // r11 hold rec's trap flag, which the program, replayed without
    // stepping, would not find there.
    const bool overSyscall = n >= 2 && code[0] == 0x0f && code[1] == 0x05;
    if (stop.kind == StopKind::Signal && stop.signal == SIGTRAP &&
        (t.task.siginfo().si_code == TRAP_TRACE ||
         (overSyscall && t.task.siginfo().si_code == TRAP_BRKPT && t.task.regs().ip() == ip + 2))) {
      if (overSyscall) t.task.mutableRegs().raw().r11 &= ~uint64_t{0x100};
      for (auto [address, old] : pending) {
        uint64_t value = old;
        t.task.read(address, &value, sizeof value);
        memoryHash ^= wordHash(address, old) ^ wordHash(address, value);
      }
      continue;
    }
    if (holdIfAsynchronous(t, stop)) {
      again = true;
      continue;
    }
    // Stepped into a syscall (or a signal): the kernel may still report the
    // step as a SIGTRAP when that syscall returns; it is rec's, not the program's.
    t.expect(RecordTask::Expect::StepTrap);
    // The flags a syscall saves in r11 include rec's trap flag: the program
    // finds r11 so after the syscall, and replay, which does not step there,
    // would not.
    if (stop.kind == StopKind::Seccomp) t.task.mutableRegs().raw().r11 &= ~uint64_t{0x100};
    return stop;
  }
  // The words the in-process check compares: first those the walk changed
  // (they tell rounds apart; off the stack first, where counters live), then
  // those it wrote with the value they had.
  const uint64_t rsp = t.task.regs().raw().rsp;
  auto onStack = [&](uint64_t a) { return a + (1u << 16) > rsp && a < rsp + (1u << 16); };
  std::vector<MemoryCheck> changed, changedOnStack, rewritten;
  for (auto [address, old] : before) {
    MemoryCheck check{address, 0};
    if (t.task.read(address, &check.value, sizeof check.value) != sizeof check.value) continue;
    (check.value == old ? rewritten : onStack(address) ? changedOnStack : changed).push_back(check);
  }
  point.memory.clear();
  for (auto* list : {&changed, &changedOnStack, &rewritten})
    for (const MemoryCheck& c : *list)
      if (point.memory.size() < kMaxPointWords) point.memory.push_back(c);
  return std::nullopt;
}

// Another asynchronous signal while rec walks the task to a point: held for
// later, while the walk goes on for this one. Starting over for the newcomer
// would, under a timer faster than the stepping, never deliver any.
bool RecordSession::holdIfAsynchronous(RecordTask& t, const Stop& stop) {
  if (stop.kind != StopKind::Signal || stop.signal == SIGTRAP || t.injected.count(stop.signal))
    return false;
  siginfo_t info = t.task.siginfo();
  if (isSynchronousFault(stop.signal, info)) return false;
  holdSignal(t, info);
  return true;
}

// Runs the task until it is about to execute `address`, holding the
// asynchronous signals that arrive meanwhile. Returns any other stop.
std::optional<Stop> RecordSession::runTo(RecordTask& t, uint64_t address) {
  ExecutionBreakpoint breakpoint(t.task.tid(), address);
  if (!breakpoint.arm())
    throw RecError(kExitInternal, "rec: no free debug register to finish a REP instruction");
  for (;;) {
    t.task.resume(Task::Resume::Cont);  // with the registers rec changed
    Stop stop = t.task.wait();
    if (absorbDesched(t, stop)) continue;
    if (stop.kind == StopKind::Signal && stop.signal == SIGTRAP &&
        t.task.siginfo().si_code == TRAP_HWBKPT && t.task.regs().raw().rip == address)
      return std::nullopt;
    if (holdIfAsynchronous(t, stop)) continue;
    return stop;
  }
}

namespace {
AddressRange staleXsaveInRedZoneOf(Task& task) {
  const uint64_t redZone = task.regs().raw().rsp - 128;
  std::array<uint8_t, 128> bytes{};
  if (task.read(redZone, bytes.data(), bytes.size()) != bytes.size()) return {};
  return staleXsaveInRedZone(bytes, redZone);
}
}  // namespace

// The point's identity: every general register, the extended registers and
// a digest of memory (docs/exactness.md), plus the words the in-process
// check compares and how long the task ran to get there (replay's bound).
void RecordSession::setPoint(schema::Registers::Builder regs,
                             capnp::List<schema::MemWrite>::Builder out,
                             schema::PointState::Builder state, RecordTask& t,
                             const PointChoice& point) {
  regs.setRaw(asData(t.task.regs().raw()));
  for (unsigned i = 0; i < point.memory.size(); ++i) {
    out[i].setAddress(point.memory[i].address);
    out[i].setData(asData(point.memory[i].value));
  }
  std::vector<uint8_t> xstate = readExtendedRegisters(t.task.tid());
  state.setExtendedRegisters(asData(xstate.data(), xstate.size()));
  std::vector<AddressRange> excluded(std::begin(kRecPages), std::end(kRecPages));
  excluded.push_back(deadStackBelow(t.task.tid(), t.task.regs().raw().rsp));
  state.setDeadStackExcluded(true);
  std::vector<AddressRange> masked = pendingOutputsBeside(t);
  // The dead stack in rsp's own page too (an XSAVEC image of lazy binding
  // there made the thread pool's replays under load reject their point):
  // masked, so that replay, which reads the ranges from the trace, does alike.
  if (AddressRange dead = deadStackInRspPage(t.task.tid(), t.task.regs().raw().rsp); dead.end)
    masked.push_back(dead);
  if (AddressRange stale = staleXsaveInRedZoneOf(t.task); stale.end) masked.push_back(stale);
  setAddressRanges(state.initPendingOutputs(static_cast<unsigned>(masked.size())), masked);
  MemoryDigest digest = digestMemory(t.task.tid(), excluded, nullptr, masked);
  auto blocks = state.initMemory(static_cast<unsigned>(digest.blocks.size()));
  for (unsigned i = 0; i < digest.blocks.size(); ++i) {
    blocks[i].setStart(digest.blocks[i].start);
    blocks[i].setHash(digest.blocks[i].hash);
    blocks[i].setPages(digest.blocks[i].pages);
  }
  state.setRunNs(static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t.sliceStart).count()));
  state.setHardwareBreakpoint(point.entry == PointEntry::DebugRegister);
  // The stack from rsp up, to where its mapping ends (a short read).
  std::vector<uint8_t> stack(kPointStackBytes);
  stack.resize(t.task.read(t.task.regs().raw().rsp, stack.data(), stack.size()) & ~size_t{7});
  state.setStack(asData(stack.data(), stack.size()));
  if (options_.verbose)
    fmt::print(stderr, "rec: point at {:#x} after {} steps, {} words checked, {} ms\n",
               t.task.regs().raw().rip, point.steps, point.memory.size(),
               std::chrono::duration_cast<std::chrono::microseconds>(
                   std::chrono::steady_clock::now() - point.walkStart)
                       .count() /
                   1000.0);
}

void RecordSession::setAddressRanges(capnp::List<schema::AddressRange>::Builder list,
                                     std::span<const AddressRange> ranges) {
  for (unsigned i = 0; i < ranges.size(); ++i) {
    list[i].setStart(ranges[i].start);
    list[i].setEnd(ranges[i].end);
  }
}

// A syscall another thread is blocked in completes in the kernel while this
// one runs, and writes its outputs then (python3.10's time.sleep: pselect6's
// timespec on the main thread's stack); the trace makes them visible at that
// call's exit event, so at a point they are the kernel's race, not state.
std::vector<AddressRange> RecordSession::pendingOutputsBeside(RecordTask& t) const {
  std::vector<AddressRange> out;
  for (const auto& [tid, u] : tasks_) {
    if (u.get() == &t || u->state() != RecordTask::State::InSyscall || !u->row) continue;
    if (u->task.tgid() != t.task.tgid() && (!t.timeSpace || u->timeSpace != t.timeSpace)) continue;
    for (const sys::MemRange& r : sys::pendingOutputRanges(*u->row, u->args, t.task))
      out.push_back({r.addr, r.addr + r.len});
  }
  return out;
}

// An RDTSC/RDTSCP that faulted (PR_SET_TSC) or a patched site that did.
bool RecordSession::emulateRdtsc(RecordTask& t) {
  const user_regs_struct atTrap = t.task.regs().raw();
  unsigned char insn[3] = {};
  t.task.read(atTrap.rip, insn, sizeof insn);
  bool rdtsc = insn[0] == 0x0f && insn[1] == 0x31;
  bool rdtscp = insn[0] == 0x0f && insn[1] == 0x01 && insn[2] == 0xf9;
  if (rdtscPatcher_) {
    if (auto site = rdtscPatcher_->siteAt(t.task, atTrap.rip)) {
      rdtsc = *site == TscInstruction::Rdtsc;
      rdtscp = *site == TscInstruction::Rdtscp;
    }
  }
  if (!rdtsc && !rdtscp) return false;
  bool startsLog = false;
  {
    // the site that ran: here, or the one whose slot's fallback this is
    static constexpr uint8_t kSlotStart[7] = {0x48, 0x8d, 0x64, 0x24, 0x80, 0xff, 0x15};
    uint8_t slot[sizeof kSlotStart] = {};
    uint64_t site = atTrap.rip;
    const bool inSlot =
        t.task.read(atTrap.rip - REC_RDTSC_SLOT_FALLBACK, slot, sizeof slot) == sizeof slot &&
        std::memcmp(slot, kSlotStart, sizeof slot) == 0;
    if (inSlot)
      t.task.read(atTrap.rip - REC_RDTSC_SLOT_FALLBACK + REC_RDTSC_SLOT_SITE, &site, sizeof site);
    noteRdtscRan(t, site);
    // A patched site's fallback in a process with no log yet (a fork's
    // child): its log now, so that its next rdtscs there cost no stop.
    if (inSlot && timeShim_ && t.timeSpace && !t.timeSpace->log && !t.timeSpace->disabled &&
        t.tscMode != PR_TSC_SIGSEGV) {
      StraySignals strays;
      startsLog = startTimeLog(t, *t.timeSpace, strays);
      absorbStrays(t, strays);
    }
  }
  const bool restores = t.signalMask && (*t.signalMask & signalBit(trapSignal()));
  if (restores) {
    StraySignals strays;
    restoreForcedSignal(t.task, trapSignal(), t.blockedTrapAction, strays);
    absorbStrays(t, strays);
  }
  unsigned aux = 0;
  if (rdtscp) __rdtscp(&aux);
  // TSC_AUX is (node << 12) | cpu of rec's CPU: the task's own CPU instead.
  if (rdtscp && t.cpu >= 0) aux = (aux & ~0xfffu) | static_cast<unsigned>(t.cpu);
  // (the scale the time shim reports at patched sites, kept above what it
  // reported in this process)
  if (t.timeSpace && t.timeSpace->log)
    lastTsc_ = std::max(lastTsc_, t.timeSpace->log->log().last_tsc);
  const uint64_t value = tscNow();
  if (t.timeSpace && t.timeSpace->log) t.timeSpace->log->log().last_tsc = value;
  capnp::MallocMessageBuilder msg;
  auto e = msg.initRoot<schema::Event>().initRdtsc();
  e.setValue(value);
  e.setAux(aux);
  e.setIsRdtscp(rdtscp);
  e.setIp(atTrap.rip);
  e.initRegisters().setRaw(asData(atTrap));
  e.setStartsTimeLog(startsLog);
  if (restores) {
    e.setReblockTrapSignal(true);
    if (t.blockedTrapAction.size() == kKernelSigactionSize)
      e.setTrapAction(asData(t.blockedTrapAction.data(), t.blockedTrapAction.size()));
  }
  attachMemoryDigest(t, msg);
  Registers& r = t.task.mutableRegs();
  r.raw().rax = value & 0xffffffff;
  r.raw().rdx = value >> 32;
  if (rdtscp) r.raw().rcx = aux;
  r.setIp(r.ip() + (rdtscp ? 3 : 2));
  emit(t, msg);
  scheduler_->run(t);
  return true;
}

int RecordSession::trapSignal() const {
  return rdtscPatcher_ ? SIGILL : SIGSEGV;
}

// After the task changed its signal mask (rt_sigprocmask, exec): notes the
// mask, and when the rdtsc trap's signal became blocked, its action then.
void RecordSession::noteSignalMask(RecordTask& t) {
  const uint64_t bit = signalBit(trapSignal());
  bool wasBlocked = t.signalMask && (*t.signalMask & bit);
  t.signalMask = readSignalMask(t.task.tid());
  if (!t.signalMask || !(*t.signalMask & bit)) {
    t.blockedTrapAction.clear();
    return;
  }
  if (wasBlocked && !t.blockedTrapAction.empty()) return;
  StraySignals strays;
  t.blockedTrapAction = readSignalAction(t.task, trapSignal(), strays);
  absorbStrays(t, strays);
}

void RecordSession::patchRdtsc(RecordTask& t, const format::BlobHash& file,
                               const std::string& readPath, uint64_t start, uint64_t end,
                               uint64_t offset, int prot) {
  if (rdtscPatcher_ && (prot & PROT_EXEC))
    rdtscPatcher_->patchMapping(t.task, file.hex(), readPath, start, end, offset);
}

void RecordSession::onSignal(RecordTask& t, int signo) {
  siginfo_t info = t.task.siginfo();
  takeInterruptingSignal(t, signo, info);
  showPtraceSigchld(t, info);
  const Registers& regs = t.task.regs();
  if (sysbuf::ownSigpipe(t.task, t.sysbuf.get(), signo, info)) {
    scheduler_->run(t);  // the buffer makes the write again, traced: SIGPIPE comes again
    return;
  }
  if (onDeschedSignal(t, signo, info)) return;
  if (inBlockWindow(t) && !isSynchronousFault(signo, info)) {
    std::optional<Stop> other;
    bool stepped = false;
    switch (settleBlock(t, other, &stepped)) {
      case BlockSettle::Aborted:
        // It interrupts the traced call the buffer makes instead, as it
        // interrupted this one (EINTR, or a restart under SA_RESTART).
        t.interruptNext = info;
        scheduler_->run(t);
        return;
      case BlockSettle::Other:
        holdSignal(t, info);
        handleStop(t, *other);
        return;
      case BlockSettle::Completed:
        if (stepped) {
          // (the delivery stop is gone) at the next syscall, made traced
          holdSignal(t, info);
          sysbuf::stopAtNextCall(*t.sysbuf);
          scheduler_->run(t);
          return;
        }
        break;  // at a point, as any signal in user code (below)
    }
  }
  bool atExit = t.atSyscallReturn(regs, true);
  t.leftSyscallReturn();

  if (signo == SIGTRAP && t.expecting(RecordTask::Expect::StepTrap) &&
      (info.si_code == TRAP_TRACE || info.si_code == TRAP_BRKPT)) {
    t.consume(RecordTask::Expect::StepTrap);
    scheduler_->run(t);
    return;
  }
  // Under the program's own PR_TSC_SIGSEGV the fault is its to handle.
  if (((signo == SIGSEGV && info.si_code == SI_KERNEL) ||
       (signo == SIGILL && info.si_code == ILL_ILLOPN && rdtscPatcher_)) &&
      t.tscMode != PR_TSC_SIGSEGV) {
    if (emulateRdtsc(t)) return;
  }
  auto deliverWithEvent = [&](schema::SignalDisposition disposition, const siginfo_t& si,
                              bool sync) {
    capnp::MallocMessageBuilder msg;
    initSignalEvent(msg, si, disposition, regs.raw()).setSynchronous(sync);
    attachMemoryDigest(t, msg);
    deliverSignal(t, signo, msg);
  };

  auto injected = t.injected.find(signo);
  if (injected != t.injected.end()) {
    siginfo_t original = injected->second;
    t.injected.erase(injected);
    t.task.setSiginfo(original);
    deliverWithEvent(schema::SignalDisposition::DELIVERED, original, false);
    return;
  }
  if (isSynchronousFault(signo, info)) {
    deliverWithEvent(schema::SignalDisposition::DELIVERED, info, true);
    return;
  }
  if (std::exchange(t.afterJobStop, false)) {
    // The first signal after SIGCONT ended a job-control stop comes where
    // the task stopped, not in user code: replay queues it for the task
    // parked there (ReplaySession::onSignal, DELIVERED).
    deliverWithEvent(schema::SignalDisposition::DELIVERED, info, false);
    return;
  }
  if (atExit) {
    // It interrupted (or arrived during) the syscall that just returned:
    // deliver it right here, as the kernel would.
    deliverWithEvent(schema::SignalDisposition::INJECT_AT_SYSCALL_EXIT, info, false);
    // Stopped there for its emulated ptracer: it is still at that return,
    // and a signal pending behind this one comes there when it is resumed.
    if (t.state() == RecordTask::State::PtraceStopped) t.returnedFromSyscall(t.task.regs());
    return;
  }
  // Arrived while the task ran user code: deliver it at a point replay can
  // find again without a branch counter (rip and every register; see
  // tracee/code_patch.h), a few instructions on if need be.
  PointChoice point;
  std::optional<Stop> other = choosePoint(t, point);
  if (other) {
    // The task reached a syscall (or another signal) first: deliver this one
    // just before that syscall instead, as replay will.
    holdSignal(t, info);
    handleStop(t, *other);
    return;
  }
  capnp::MallocMessageBuilder msg;
  auto s = initSignalEvent(msg, info, schema::SignalDisposition::AT_POINT, t.task.regs().raw());
  setPoint(s.initRegisters(), s.initMemory(static_cast<unsigned>(point.memory.size())),
           s.initState(), t, point);
  t.task.setSiginfo(info);
  deliverSignal(t, signo, msg);
}

// Lets the task take `signo` (it is at a signal-delivery-stop) and writes
// the signal's event. Into a handler, the task is single-stepped so that it
// stops on the handler's first instruction, where the words of the frame
// that come from the kernel's record of rec's traps are read into the event
// (signals.h: FrameTrapWords), for replay to write back.
void RecordSession::deliverSignal(RecordTask& t, int signo, capnp::MallocMessageBuilder& msg) {
  if (stopForPtracer(t, signo, msg)) return;
  // A handler may return here: the syscall buffer never patches over it.
  if (t.sysbuf) t.sysbuf->signalIps.insert(t.task.regs().ip());
  ++signalCount_;
  if (!hasHandler(t.task.tid(), signo)) {
    emit(t, msg);
    scheduler_->run(t, Task::Resume::Cont, signo);
    return;
  }
  // Its sigreturn will restore a mask rec does not see.
  t.signalMask.reset();
  t.blockedTrapAction.clear();
  const uint64_t interruptedRsp = t.task.regs().raw().rsp;
  scheduler_->run(t, Task::Resume::Step, signo);
  Stop stop = t.task.wait();
  bool stepped = stop.kind == StopKind::Signal && stop.signal == SIGTRAP;
  // Another signal came first, with the frame written (the kernel delivers
  // the next pending signal before the handler's first instruction), or
  // there is no frame after all (it could not be written: SIGSEGV).
  bool framed = stepped || (stop.kind == StopKind::Signal && atHandlerEntry(t.task, signo));
  if (framed) {
    HandlerFrame written = readHandlerFrame(t.task, interruptedRsp);
    auto signal = msg.getRoot<schema::Event>().getSignal();
    auto frame = signal.initFrame(3);
    for (unsigned i = 0; i < 3; ++i) frame.set(i, written.trapWords[i]);
    if (written.address) {
      auto memory = signal.initFrameMemory();
      memory.setAddress(written.address);
      memory.setData(asData(written.bytes.data(), written.bytes.size()));
    }
  }
  emit(t, msg);
  if (stepped)
    scheduler_->run(t);
  else
    handleStop(t, stop);
}

// ---- The desched event (docs/syscall-buffer.md "Blocking") ----------------

namespace {
bool restartCode(int64_t result) {
  return result <= -512 && result >= -516;  // -ERESTARTSYS ... -ERESTART_RESTARTBLOCK
}

// Whether a desched signal of the task's event is queued for it.
bool deschedEchoPending(RecordTask& t) {
  siginfo_t queued[8];
  __ptrace_peeksiginfo_args args{0, 0, 8};  // the thread's own queue
  long n = ::ptrace(PTRACE_PEEKSIGINFO, t.task.tid(), &args, queued);
  for (long i = 0; i < n; ++i)
    if (sysbuf::isDeschedSignal(t.desched.get(), queued[i].si_signo, queued[i])) return true;
  return false;
}

// Whether `signo` is pending for the thread itself (not the process).
bool threadSignalPending(pid_t tid, int signo) {
  std::istringstream status(readProcFile(fmt::format("/proc/{}/status", tid)));
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("SigPnd:", 0) == 0)
      return (std::stoull(line.substr(7), nullptr, 16) >> (signo - 1)) & 1;
  return false;
}
}  // namespace

// The desched event's signal, or any signal while the running task is in
// the window of a buffered call that may block: handled here, never the
// program's. Returns false for every other signal.
bool RecordSession::onDeschedSignal(RecordTask& t, int signo, const siginfo_t& info) {
  const bool desched = sysbuf::isDeschedSignal(t.desched.get(), signo, info);
  const bool armed = t.desched && scheduler_->isCurrent(t) &&
                     sysbuf::deschedArmed(t.sysbuf.get()) &&
                     time_shim::inShimCode(t.task.regs().ip());
  if (!desched && !armed) return false;
  sysbuf::disarmDesched(*t.desched);
  if (!armed) {
    // After the window (a switch between its end and the event's disable,
    // or the stop at the window's end): nothing to do but drop it.
    if (scheduler_->isCurrent(t))
      scheduler_->run(t);
    else
      t.task.resume(t.state() == RecordTask::State::InSyscall ? Task::Resume::Syscall
                                                              : Task::Resume::Cont);
    return true;
  }
  // The program's own signal: delivered before the traced call the buffer
  // makes instead (or before the next traced one), as replay will.
  if (!desched) holdSignal(t, info);
  if (std::optional<Stop> other = settleDesched(t)) {
    handleStop(t, *other);
    return true;
  }
  scheduler_->run(t);
  return true;
}

// Brings the task from a signal stop inside the window of a buffered call
// that may block to the window's end, with its event off: a call that was
// interrupted (it blocked) or is still to be made fails with EINTR and the
// buffer is told to make it traced (desched_abort), where it blocks under
// rec's scheduler; a call that completed stays buffered. Each desched signal
// on the way (the ptrace stops themselves are context switches) is dropped,
// any other held. Returns another stop that came instead (an exit).
std::optional<Stop> RecordSession::settleDesched(RecordTask& t) {
  SysbufSpace& space = *t.sysbuf;
  auto abortAtReturn = [&] {
    Registers& r = t.task.mutableRegs();
    if (r.ip() != kScratchShimSyscallIp || !restartCode(r.result())) return;
    r.raw().rax = static_cast<uint64_t>(-EINTR);  // not restarted
    sysbuf::setDeschedAbort(space);
  };
  abortAtReturn();
  if (space.buffer->header().desched_abort && deschedEchoPending(t)) {
    // The usual case: the call blocked, and the stop rec stands at was a
    // switch with the event on, whose signal is queued already: taken here,
    // the task goes on to the traced call with nothing pending.
    t.task.resume(Task::Resume::Cont);
    Stop stop = t.task.wait();
    if (stop.kind != StopKind::Signal) return stop;
    siginfo_t info = t.task.siginfo();
    if (!sysbuf::isDeschedSignal(t.desched.get(), stop.signal, info)) holdSignal(t, info);
    if (!deschedEchoPending(t)) return std::nullopt;
  }
  bool inCall = false;  // between a syscall's entry and exit stops
  bool skipped = false;
  bool done = false;
  for (int round = 0; round < 64 && !done; ++round) {
    sysbuf::disarmDesched(*t.desched);  // (an ENABLE made meanwhile turned it on)
    t.task.resume(Task::Resume::Syscall);
    Stop stop = t.task.wait();
    if (stop.kind == StopKind::Signal) {
      siginfo_t info = t.task.siginfo();
      if (!sysbuf::isDeschedSignal(t.desched.get(), stop.signal, info)) holdSignal(t, info);
      if (!inCall) abortAtReturn();
      continue;
    }
    if (stop.kind != StopKind::SyscallStop) return stop;
    inCall = !inCall;
    Registers& r = t.task.mutableRegs();
    if (r.ip() != kScratchShimSyscallIp) return std::nullopt;  // past the window (not expected)
    const auto nr = static_cast<int64_t>(r.raw().orig_rax);
    if (inCall) {
      if (nr != SYS_ioctl && !space.buffer->header().desched_abort) {
        r.setSyscallNumber(-1);  // the call that may block: not made
        skipped = true;
      }
      continue;
    }
    if (skipped) {
      skipped = false;
      r.raw().rax = static_cast<uint64_t>(-EINTR);
      sysbuf::setDeschedAbort(space);
    } else if (nr == SYS_ioctl && r.raw().rsi == PERF_EVENT_IOC_DISABLE) {
      done = true;
    }
  }
  // The stop that began this was a switch with the event on: its signal
  // may still be pending, and would interrupt the traced call.
  if (threadSignalPending(t.task.tid(), REC_SYSBUF_DESCHED_SIGNAL)) {
    t.task.resume(Task::Resume::Syscall);
    Stop stop = t.task.wait();
    if (stop.kind != StopKind::Signal) return stop;
    siginfo_t info = t.task.siginfo();
    if (!sysbuf::isDeschedSignal(t.desched.get(), stop.signal, info)) holdSignal(t, info);
  }
  return std::nullopt;
}

// A desched signal while rec steps or runs the task to a point: dropped
// (settling the window if it is open). False for any other stop, or when
// settling ended in another stop (then `stop`).
bool RecordSession::absorbDesched(RecordTask& t, Stop& stop) {
  if (stop.kind != StopKind::Signal || stop.signal != REC_SYSBUF_DESCHED_SIGNAL || !t.desched)
    return false;
  if (!sysbuf::isDeschedSignal(t.desched.get(), stop.signal, t.task.siginfo())) return false;
  sysbuf::disarmDesched(*t.desched);
  if (sysbuf::deschedArmed(t.sysbuf.get()) && time_shim::inShimCode(t.task.regs().ip()))
    if (std::optional<Stop> other = settleDesched(t)) {
      stop = *other;
      return false;
    }
  return true;
}

// ---- Blocking in the buffer (docs/syscall-buffer.md "Blocking in the buffer") ----

// The task executes the window of a call blocking in the buffer (the one
// task of its address space that runs user code; the window is in rec's
// image or its scratch page).
bool RecordSession::inBlockWindow(RecordTask& t) {
  return t.sysbuf && t.state() == RecordTask::State::Running && scheduler_->isCurrent(t) &&
         sysbuf::blockArmed(t.sysbuf.get()) && time_shim::inShimCode(t.task.regs().ip());
}

// From a stop in the window: a call not made yet, or interrupted (it had no
// effect: -ERESTART*, -EINTR), fails with EINTR and the buffer is told to
// make it traced (Aborted); one that completed stays buffered (Completed).
// The window holds that one untraced syscall at rec's scratch page, so rip
// says which: before it, the task is stepped there (a few instructions),
// holding any signal met. Other: another stop came instead (an exit).
RecordSession::BlockSettle RecordSession::settleBlock(RecordTask& t, std::optional<Stop>& other,
                                                      bool* stepped) {
  SysbufSpace& space = *t.sysbuf;
  auto abort = [&](Registers& r) {
    r.setIp(kScratchShimSyscallIp);
    r.raw().rax = static_cast<uint64_t>(-EINTR);  // not restarted
    sysbuf::setBlockAbort(space);
    return BlockSettle::Aborted;
  };
  for (int step = 0; step < 64; ++step) {
    if (!sysbuf::blockArmed(&space)) return BlockSettle::Completed;
    Registers& r = t.task.mutableRegs();
    if (r.ip() == kScratchShimSyscall) return abort(r);  // not made yet
    if (r.ip() == kScratchShimSyscallIp) {
      const int64_t result = r.result();
      if (restartCode(result) || result == -EINTR) return abort(r);
      return BlockSettle::Completed;
    }
    if (!time_shim::inShimCode(r.ip())) return BlockSettle::Completed;
    if (stepped) *stepped = true;
    t.task.resume(Task::Resume::Step);
    Stop stop = t.task.wait();
    if (stop.kind == StopKind::Signal) {
      siginfo_t info = t.task.siginfo();
      if (stop.signal != SIGTRAP || info.si_code != TRAP_TRACE) holdSignal(t, info);
      continue;
    }
    other = stop;
    return BlockSettle::Other;
  }
  throw RecError(kExitInternal, "rec: a task did not reach its buffered call's syscall");
}

// The signal that interrupted a call blocking in the buffer is raised again
// as its traced twin is entered: pending, it interrupts that call (or is
// delivered at its exit if the call completes at once), at a syscall exit
// replay knows. The raised one is rec's (SI_TKILL): its delivery stop gets
// the original siginfo back (takeInterruptingSignal).
void RecordSession::raiseInterruptingSignal(RecordTask& t) {
  siginfo_t info = *t.interruptNext;
  t.interruptNext.reset();
  if (::syscall(SYS_tgkill, t.task.tgid(), t.task.tid(), info.si_signo) == 0)
    t.interrupting = info;
  else
    holdSignal(t, info);
}

bool RecordSession::takeInterruptingSignal(RecordTask& t, int signo, siginfo_t& info) {
  if (!t.interrupting || t.interrupting->si_signo != signo || info.si_code != SI_TKILL ||
      info.si_pid != ::getpid())
    return false;
  info = *t.interrupting;
  t.interrupting.reset();
  t.task.setSiginfo(info);
  return true;
}

// A standard signal already held is not held twice: the kernel, too, keeps
// one pending instance of each (real-time signals queue).
void RecordSession::holdSignal(RecordTask& t, const siginfo_t& info) {
  if (info.si_signo < SIGRTMIN)
    for (const siginfo_t& held : t.heldSignals)
      if (held.si_signo == info.si_signo) return;
  t.heldSignals.push_back(info);
}

void RecordSession::injectHeldSignal(RecordTask& t) {
  siginfo_t info = t.heldSignals.front();
  t.heldSignals.pop_front();
  int signo = info.si_signo;
  capnp::MallocMessageBuilder msg;
  initSignalEvent(msg, info, schema::SignalDisposition::INJECT_BEFORE_SYSCALL, t.task.regs().raw());
  attachMemoryDigest(t, msg);
  emit(t, msg);
  ++signalCount_;

  // Undo the syscall entry: the signal is raised with the task back at its
  // syscall instruction, which it re-executes after the handler.
  StraySignals strays;
  unwindSyscallEntry(t.task, strays);
  absorbStrays(t, strays);
  t.injected[signo] = info;
  scheduler_->run(t, Task::Resume::Cont, signo);
}

}  // namespace rec
