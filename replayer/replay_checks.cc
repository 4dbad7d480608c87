// Replay checks the task's state at every event against the recording's
// (docs/exactness.md): every general register at each syscall, signal and
// rdtsc, and, for traces recorded with --check-memory, a digest of the
// memory. The first difference ends the replay with a report that names it
// and the last event that matched.

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "errors.h"
#include "exit_codes.h"
#include "remote_syscall.h"
#include "replay_session.h"
#include "replay_task.h"
#include "signals.h"
#include "syscall_table.h"
#include "task_state.h"
#include "time_shim.h"

namespace rec {

user_regs_struct ReplaySession::rawRegisters(schema::Registers::Reader r) {
  user_regs_struct raw{};
  std::memcpy(&raw, r.getRaw().begin(), std::min(sizeof raw, r.getRaw().size()));
  return raw;
}

void ReplaySession::checkRegisters(ReplayTask& t, schema::Registers::Reader recorded,
                                   const std::string& at) {
  if (recorded.getRaw().size() == 0) return;  // a trace from before registers were recorded
  if (auto d = registerDifference(rawRegisters(recorded), t.task.regs().raw()))
    diverge(t, fmt::format("{} with every register as recorded", at),
            fmt::format("arrived with {}", *d));
}

std::vector<AddressRange> ReplaySession::rangesNotDigested() const {
  // rec's scratch page, the time shim and its log differ between the modes;
  // a trampoline exists only in replay.
  std::vector<AddressRange> out(std::begin(kRecPages), std::end(kRecPages));
  out.insert(out.end(), trampolines_.begin(), trampolines_.end());
  return out;
}

MemoryDigest ReplaySession::recordedDigest(capnp::List<schema::MemoryBlock>::Reader blocks) {
  MemoryDigest d;
  for (auto b : blocks) d.blocks.push_back({b.getStart(), b.getHash(), b.getPages()});
  return d;
}

void ReplaySession::checkMemory(ReplayTask& t, const std::string& at) {
  if (!currentEvent_ || !currentEvent_->hasMemory()) return;
  std::vector<AddressRange> masked;
  for (auto r : currentEvent_->getPendingOutputs()) masked.push_back({r.getStart(), r.getEnd()});
  MemoryDigest now = digestMemory(t.task.tid(), rangesNotDigested(), nullptr, masked);
  if (auto d = memoryDifference(recordedDigest(currentEvent_->getMemory()), now, t.task.tid()))
    diverge(t, fmt::format("{} with its memory as recorded", at),
            fmt::format("arrived with {}", *d));
}

// After an event's checks passed: what a later divergence report names as
// the last event that matched.
void ReplaySession::noteMatched(ReplayTask& t, schema::Event::Reader event) {
  if (event.isBufferedSyscalls()) return;  // queued, not yet made: matched on the way
  MatchedEvent& m = lastMatched_;
  m.valid = true;
  m.index = eventIndex_;
  m.tid = t.recordedTid;
  m.kind = event.which();
  switch (m.kind) {
    case schema::Event::SYSCALL:
      m.call = RecordedCall::of(event.getSyscall());
      break;
    case schema::Event::SYSCALL_ENTER:
      m.number = event.getSyscallEnter().getNumber();
      break;
    case schema::Event::SIGNAL:
      m.number = event.getSignal().getSigno();
      break;
    case schema::Event::PREEMPT:
      m.rip = rawRegisters(event.getPreempt().getRegisters()).rip;
      break;
    default:
      break;
  }
}

RecordedCall RecordedCall::of(schema::SyscallEvent::Reader e) {
  RecordedCall c;
  c.number = e.getNumber();
  auto args = e.getArgs();
  for (unsigned i = 0; i < 6 && i < args.size(); ++i) c.args[i] = args[i];
  for (auto s : e.getStrings()) c.strings.emplace_back(s.cStr());
  return c;
}

std::string RecordedCall::text() const {
  const sys::SyscallRow* row = sys::findSyscall(number);
  return row ? sys::formatCall(*row, args, strings) : fmt::format("syscall_{}", number);
}

std::string ReplaySession::MatchedEvent::text() const {
  if (!valid) return {};
  std::string what;
  switch (kind) {
    case schema::Event::SYSCALL:
      what = call.text();
      break;
    case schema::Event::SYSCALL_ENTER:
      what = fmt::format("entry of syscall {}", number);
      break;
    case schema::Event::SIGNAL:
      what = std::string(sys::signalName(number));
      break;
    case schema::Event::EXEC:
      what = "execve";
      break;
    case schema::Event::RDTSC:
      what = "rdtsc";
      break;
    case schema::Event::EXIT:
      what = "exit";
      break;
    case schema::Event::PREEMPT:
      what = fmt::format("preempted at {:#x}", rip);
      break;
    default:
      what = "?";
  }
  return fmt::format("#{} (task {}: {})", index, tid, what);
}

}  // namespace rec
