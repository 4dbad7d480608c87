// Signals, rdtsc, preemption, and the points in user code where a task is
// stopped for them (see tracee/code_patch.h for how replay finds them).

#include <elf.h>
#include <fcntl.h>
#include <fmt/format.h>
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
#include "signals.h"
#include "syscall_table.h"

namespace rec {

namespace {
schema::SignalEvent::Builder initSignalEvent(capnp::MallocMessageBuilder& msg,
                                             const siginfo_t& info,
                                             schema::SignalDisposition disposition, uint64_t ip) {
  auto s = msg.initRoot<schema::Event>().initSignal();
  s.setSigno(info.si_signo);
  s.setSiginfo(asData(info));
  s.setDisposition(disposition);
  s.setIp(ip);
  return s;
}
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
  if (t.atSyscallReturn(t.task.regs(), false)) {
    // Right at a syscall's return: a switch there needs no event, replay
    // parks the task after that syscall anyway.
    t.leftSyscallReturn();
    scheduler_->makeReady(t);
    return;
  }
  t.leftSyscallReturn();
  std::vector<MemoryCheck> memory;
  std::optional<Stop> other = choosePoint(t, memory);
  if (other) {
    // A syscall or a signal came first: carry on with that stop normally.
    handleStop(t, *other);
    return;
  }
  capnp::MallocMessageBuilder msg;
  auto p = msg.initRoot<schema::Event>().initPreempt();
  setPoint(p.initRegisters(), p.initMemory(static_cast<unsigned>(memory.size())), t, memory);
  emit(t, msg);
  rememberResumeIp(t);
  scheduler_->notePreemption();
  scheduler_->makeReady(t);
}

// Chooses where the task stops for a preemption or a signal: an instruction
// where replay can plant its conditional breakpoint (tracee/code_patch.h),
// identified by every register plus the memory words the surrounding code
// writes, so that the iterations of a loop whose registers never change
// (a counter in memory, a spin on a flag) are still told apart. It
// single-steps through one round of the loop to learn those words. Returns
// the stop that interrupted the stepping (a syscall, a signal), or nullopt
// once the task stands at the chosen point.
std::optional<Stop> RecordSession::choosePoint(RecordTask& t, std::vector<MemoryCheck>& memory) {
  constexpr int kMaxSteps = 256;
  std::set<uint64_t> visited, written;
  bool loopClosed = false;
  uint64_t fallthrough = 0;
  t.jumpTargets.clear();
  for (int step = 0;; ++step) {
    const user_regs_struct& regs = t.task.regs().raw();
    uint64_t ip = regs.rip;
    uint8_t code[kCodeWindow] = {};
    size_t n = t.task.read(ip, code, sizeof code);
    std::span<const uint8_t> window(code, n);
    // Code reached by a jump must not fall inside a patch (see patchableHere).
    if (step > 0 && ip != fallthrough) t.jumpTargets.insert(ip);
    fallthrough = ip + instructionLength(window, ip);
    if (!visited.insert(ip).second) loopClosed = true;
    // Best: one instruction of at least five bytes, whose inside no path can
    // jump into. Otherwise, after a longer walk, several instructions.
    bool allowed = !time_shim::inShimCode(ip);
    if (allowed && loopClosed && patchableHere(t, window, ip, true)) break;
    if (allowed && step >= kMaxSteps && patchableHere(t, window, ip, false)) break;
    if (step >= 4 * kMaxSteps)
      throw RecError(kExitInternal, fmt::format("no patchable instruction near {:#x}", ip));
    // What the shim writes (its log, its own stack frame) differs between
    // recording and replay: never part of a point's identity.
    if (allowed)
      for (uint64_t address : memoryWrittenBy(window, ip, regs))
        if (address < kScratchAddress || address >= kTimeShimEnd) written.insert(address);
    if (::ptrace(PTRACE_SINGLESTEP, t.task.tid(), nullptr, nullptr) != 0)
      throwErrno(kExitInternal, "PTRACE_SINGLESTEP");
    Stop stop = t.task.wait();
    if (stop.kind == StopKind::Signal && stop.signal == SIGTRAP &&
        t.task.siginfo().si_code == TRAP_TRACE)
      continue;
    if (stop.kind == StopKind::Signal && stop.signal != SIGTRAP && !t.injected.count(stop.signal)) {
      // Another asynchronous signal: held for later, while stepping goes on
      // for this one. Starting over for the newcomer would, under a timer
      // faster than the stepping, never deliver any.
      siginfo_t info = t.task.siginfo();
      if (!isSynchronousFault(stop.signal, info)) {
        holdSignal(t, info);
        continue;
      }
    }
    // Stepped into a syscall (or a signal): the kernel may still report the
    // step as a SIGTRAP when that syscall returns; it is rec's, not the program's.
    t.expect(RecordTask::Expect::StepTrap);
    return stop;
  }
  memory.clear();
  for (uint64_t address : written) {
    MemoryCheck check{address, 0};
    if (t.task.read(address, &check.value, sizeof check.value) == sizeof check.value)
      memory.push_back(check);
    if (memory.size() == 8) break;
  }
  return std::nullopt;
}

// Replay overwrites [ip, ip + length) with a jump while it runs the task to
// the point, so no code may enter that range anywhere but at ip. A single
// instruction guarantees it. A range of several instructions is checked
// against the places the task resumes at (where it stands now, where a signal
// handler returns to) and the jump targets seen while stepping, which covers
// the loop but not every path: it is the fallback.
bool RecordSession::patchableHere(RecordTask& t, std::span<const uint8_t> window, uint64_t ip,
                                  bool singleInstruction) {
  auto length = patchableLength(window, ip);
  if (!length) return false;
  if (singleInstruction) return *length == instructionLength(window, ip);
  for (uint64_t avoid : t.resumeIps)
    if (avoid > ip && avoid < ip + *length) return false;
  auto target = t.jumpTargets.upper_bound(ip);
  return target == t.jumpTargets.end() || *target >= ip + *length;
}

void RecordSession::rememberResumeIp(RecordTask& t) {
  constexpr size_t kKept = 16;
  t.resumeIps.push_back(t.task.regs().ip());
  if (t.resumeIps.size() > kKept) t.resumeIps.pop_front();
}

void RecordSession::setPoint(schema::Registers::Builder regs,
                             capnp::List<schema::MemWrite>::Builder out, RecordTask& t,
                             const std::vector<MemoryCheck>& memory) {
  regs.setRaw(asData(t.task.regs().raw()));
  for (unsigned i = 0; i < memory.size(); ++i) {
    out[i].setAddress(memory[i].address);
    out[i].setData(asData(memory[i].value));
  }
}

// An RDTSC/RDTSCP that faulted (PR_SET_TSC) or a patched site that did.
bool RecordSession::emulateRdtsc(RecordTask& t) {
  Registers& r = t.task.mutableRegs();
  unsigned char insn[3] = {};
  t.task.read(r.ip(), insn, sizeof insn);
  bool rdtsc = insn[0] == 0x0f && insn[1] == 0x31;
  bool rdtscp = insn[0] == 0x0f && insn[1] == 0x01 && insn[2] == 0xf9;
  if (rdtscPatcher_) {
    if (auto site = rdtscPatcher_->siteAt(t.task, r.ip())) {
      rdtsc = *site == TscInstruction::Rdtsc;
      rdtscp = *site == TscInstruction::Rdtscp;
    }
  }
  if (!rdtsc && !rdtscp) return false;
  unsigned aux = 0;
  uint64_t value = rdtscp ? __rdtscp(&aux) : __rdtsc();
  capnp::MallocMessageBuilder msg;
  auto e = msg.initRoot<schema::Event>().initRdtsc();
  e.setValue(value);
  e.setAux(aux);
  e.setIsRdtscp(rdtscp);
  e.setIp(r.ip());
  r.raw().rax = value & 0xffffffff;
  r.raw().rdx = value >> 32;
  if (rdtscp) r.raw().rcx = aux;
  r.setIp(r.ip() + (rdtscp ? 3 : 2));
  emit(t, msg);
  scheduler_->run(t);
  return true;
}

void RecordSession::patchRdtsc(RecordTask& t, const format::BlobHash& file,
                               const std::string& readPath, uint64_t start, uint64_t end,
                               uint64_t offset, int prot) {
  if (rdtscPatcher_ && (prot & PROT_EXEC))
    rdtscPatcher_->patchMapping(t.task, file.hex(), readPath, start, end, offset);
}

void RecordSession::onSignal(RecordTask& t, int signo) {
  siginfo_t info = t.task.siginfo();
  const Registers& regs = t.task.regs();
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
  auto signalEvent = [&](schema::SignalDisposition disposition, const siginfo_t& si, bool sync) {
    capnp::MallocMessageBuilder msg;
    initSignalEvent(msg, si, disposition, regs.ip()).setSynchronous(sync);
    emit(t, msg);
    ++signalCount_;
  };

  auto injected = t.injected.find(signo);
  if (injected != t.injected.end()) {
    siginfo_t original = injected->second;
    t.injected.erase(injected);
    t.task.setSiginfo(original);
    signalEvent(schema::SignalDisposition::DELIVERED, original, false);
    scheduler_->run(t, Task::Resume::Cont, signo);
    return;
  }
  if (isSynchronousFault(signo, info)) {
    signalEvent(schema::SignalDisposition::DELIVERED, info, true);
    scheduler_->run(t, Task::Resume::Cont, signo);
    return;
  }
  if (atExit) {
    // It interrupted (or arrived during) the syscall that just returned:
    // deliver it right here, as the kernel would.
    signalEvent(schema::SignalDisposition::INJECT_AT_SYSCALL_EXIT, info, false);
    scheduler_->run(t, Task::Resume::Cont, signo);
    return;
  }
  // Arrived while the task ran user code: deliver it at a point replay can
  // find again without a branch counter (rip and every register; see
  // tracee/code_patch.h), a few instructions on if need be.
  std::vector<MemoryCheck> memory;
  std::optional<Stop> other = choosePoint(t, memory);
  if (other) {
    // The task reached a syscall (or another signal) first: deliver this one
    // just before that syscall instead, as replay will.
    holdSignal(t, info);
    handleStop(t, *other);
    return;
  }
  capnp::MallocMessageBuilder msg;
  auto s = initSignalEvent(msg, info, schema::SignalDisposition::AT_POINT, t.task.regs().ip());
  setPoint(s.initRegisters(), s.initMemory(static_cast<unsigned>(memory.size())), t, memory);
  emit(t, msg);
  rememberResumeIp(t);
  ++signalCount_;
  t.task.setSiginfo(info);
  scheduler_->run(t, Task::Resume::Cont, signo);
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
  initSignalEvent(msg, info, schema::SignalDisposition::INJECT_BEFORE_SYSCALL, t.task.regs().ip());
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
