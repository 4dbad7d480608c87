#include "traps.h"

#include <fmt/format.h>
#include <sys/ptrace.h>
#include <sys/user.h>

#include <cerrno>
#include <cstddef>

#include "errors.h"
#include "exit_codes.h"

namespace rec::dbg {

namespace {

constexpr uint64_t kDr7Offset = offsetof(struct user, u_debugreg) + 7 * sizeof(long);
constexpr uint64_t kDr6Offset = offsetof(struct user, u_debugreg) + 6 * sizeof(long);
uint64_t drOffset(int i) {
  return offsetof(struct user, u_debugreg) + static_cast<uint64_t>(i) * sizeof(long);
}

// Aligned pieces of 1, 2, 4 or 8 bytes covering [address, address + length).
std::vector<std::pair<uint64_t, int>> pieces(uint64_t address, uint64_t length) {
  std::vector<std::pair<uint64_t, int>> out;
  while (length > 0 && out.size() <= kDebugRegisters) {
    int size = 8;
    while (size > 1 && (address % size != 0 || static_cast<uint64_t>(size) > length)) size /= 2;
    out.emplace_back(address, size);
    address += size;
    length -= size;
  }
  return out;
}

uint64_t lenBits(int length) {
  switch (length) {
    case 2:
      return 1;
    case 8:
      return 2;
    case 4:
      return 3;
    default:
      return 0;
  }
}

}  // namespace

TrapSet TrapSet::operator|(const TrapSet& other) const {
  TrapSet out = *this;
  out.breakpoints.insert(other.breakpoints.begin(), other.breakpoints.end());
  out.watches.insert(other.watches.begin(), other.watches.end());
  return out;
}

int debugRegistersFor(const Watch& watch) {
  return static_cast<int>(pieces(watch.address, watch.length).size());
}

void TrapArming::reset() {
  threads_.clear();
  inserted_.clear();
  wasInserted_.clear();
  insertedIn_ = 0;
}

void TrapArming::program(Task& task, const std::array<Slot, kDebugRegisters>& slots) {
  ThreadState& state = threads_[task.tid()];
  if (state.programmed && state.slots == slots) return;
  auto poke = [&](uint64_t offset, uint64_t value) {
    if (::ptrace(PTRACE_POKEUSER, task.tid(), reinterpret_cast<void*>(offset),
                 reinterpret_cast<void*>(value)) != 0 &&
        errno != ESRCH)
      throwErrno(kExitInternal, fmt::format("setting debug registers of task {}", task.tid()));
  };
  // Disable first: the kernel checks each address against the enabled kinds.
  poke(kDr7Offset, 0);
  uint64_t dr7 = 0;
  for (int i = 0; i < kDebugRegisters; ++i) {
    const Slot& s = slots[i];
    if (s.use == Slot::Use::Free) continue;
    poke(drOffset(i), s.address);
    uint64_t rw = s.use == Slot::Use::Exec ? 0 : s.use == Slot::Use::Write ? 1 : 3;
    uint64_t len = s.use == Slot::Use::Exec ? 0 : lenBits(s.length);
    dr7 |= (1ull << (2 * i)) | (rw << (16 + 4 * i)) | (len << (18 + 4 * i));
  }
  if (dr7) poke(kDr7Offset, dr7);
  state.slots = slots;
  state.programmed = true;
}

void TrapArming::arm(Task& task, const TrapSet& traps, std::optional<uint64_t> skip,
                     const std::optional<ActivePatch>& patch, const std::set<uint64_t>& hardware) {
  std::array<Slot, kDebugRegisters> slots{};
  int used = 0;
  for (const Watch& w : traps.watches) {
    for (auto [address, size] : pieces(w.address, w.length)) {
      if (used >= kDebugRegisters) break;  // refused when inserted; never more here
      Slot& s = slots[used++];
      s.address = address;
      s.length = size;
      s.use = w.kind == WatchKind::Write ? Slot::Use::Write : Slot::Use::Access;
      s.watch = w;
    }
  }
  std::vector<uint64_t> overflow;
  for (uint64_t address : traps.breakpoints) {
    if (skip && *skip == address) continue;
    if (hardware.count(address) && used < kDebugRegisters) {
      Slot& s = slots[used++];
      s.address = address;
      s.use = Slot::Use::Exec;
    } else {
      overflow.push_back(address);
    }
  }
  program(task, slots);
  armedSlots_ = slots;
  for (uint64_t address : overflow) {
    if (patch && address >= patch->ip && address < patch->ip + patch->original.size()) continue;
    uint8_t original = 0;
    if (task.read(address, &original, 1) != 1) continue;
    const uint8_t int3 = 0xcc;
    try {
      task.writeForced(address, &int3, 1);
    } catch (const RecError&) {
      continue;  // unmapped or gone: nothing to arrive at there
    }
    inserted_[address] = original;
  }
  insertedIn_ = task.tid();
}

void TrapArming::disarm(Task& task) {
  wasInserted_.clear();
  for (auto [address, original] : inserted_) {
    wasInserted_.insert(address);
    try {
      task.writeForced(address, &original, 1);
    } catch (const RecError&) {
      // The task died with its address space; nothing to restore.
    }
  }
  inserted_.clear();
  insertedIn_ = 0;
}

TrapHit TrapArming::classify(Task& task, const Stop& stop, bool steppingRequested) {
  TrapHit hit;
  if (stop.kind != StopKind::Signal || stop.signal != SIGTRAP) return hit;
  siginfo_t info = task.siginfo();
  if (info.si_code == SI_KERNEL) {
    // int3: ours when one of ours sits right before the stop address.
    uint64_t at = task.regs().ip() - 1;
    if (wasInserted_.count(at)) {
      hit.ours = true;
      hit.breakpoint = at;
      task.mutableRegs().setIp(at);
    }
    return hit;
  }
  if (info.si_code != TRAP_TRACE && info.si_code != TRAP_HWBKPT && info.si_code != TRAP_BRKPT)
    return hit;
  errno = 0;
  long dr6 = ::ptrace(PTRACE_PEEKUSER, task.tid(), reinterpret_cast<void*>(kDr6Offset), nullptr);
  if (errno != 0) dr6 = 0;
  for (int i = 0; i < kDebugRegisters; ++i) {
    if (!(dr6 & (1l << i))) continue;
    const Slot& s = armedSlots_[i];
    if (s.use == Slot::Use::Free) continue;
    hit.ours = true;
    if (s.use == Slot::Use::Exec) {
      hit.breakpoint = s.address;
    } else {
      bool seen = false;
      for (const Watch& w : hit.watches) seen |= w == s.watch;
      if (!seen) hit.watches.push_back(s.watch);
      if (!hit.watchAddress) hit.watchAddress = s.address;
    }
  }
  if (dr6) ::ptrace(PTRACE_POKEUSER, task.tid(), reinterpret_cast<void*>(kDr6Offset), nullptr);
  // A requested single step always ends in one of these traps once the
  // instruction completed (together with any watch it triggered).
  if (steppingRequested) {
    hit.ours = true;
    hit.stepped = true;
  }
  return hit;
}

}  // namespace rec::dbg
