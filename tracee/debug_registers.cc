#include "debug_registers.h"

#include <fmt/format.h>
#include <sys/ptrace.h>
#include <sys/user.h>

#include <cerrno>
#include <cstddef>

#include "errors.h"
#include "exit_codes.h"

namespace rec {

namespace {
size_t offsetOf(int index) {
  return offsetof(struct user, u_debugreg) + static_cast<size_t>(index) * sizeof(uint64_t);
}
constexpr int kDr7 = 7;
constexpr int kAddressRegisters = 4;
}  // namespace

uint64_t peekDebugRegister(pid_t tid, int index) {
  errno = 0;
  long value = ::ptrace(PTRACE_PEEKUSER, tid, reinterpret_cast<void*>(offsetOf(index)), nullptr);
  if (errno != 0)
    throwErrno(kExitInternal, fmt::format("reading debug register {} of task {}", index, tid));
  return static_cast<uint64_t>(value);
}

void pokeDebugRegister(pid_t tid, int index, uint64_t value) {
  if (::ptrace(PTRACE_POKEUSER, tid, reinterpret_cast<void*>(offsetOf(index)),
               reinterpret_cast<void*>(value)) != 0)
    throwErrno(kExitInternal, fmt::format("setting debug register {} of task {}", index, tid));
}

ExecutionBreakpoint::~ExecutionBreakpoint() {
  try {
    disarm();
  } catch (const RecError&) {
    // Nothing more to do for it while unwinding.
  }
}

bool ExecutionBreakpoint::arm() {
  if (armed_) return true;
  savedDr7_ = peekDebugRegister(tid_, kDr7);
  for (int slot = 0; slot < kAddressRegisters; ++slot) {
    uint64_t enable = uint64_t{3} << (2 * slot);
    if (savedDr7_ & enable) continue;
    pokeDebugRegister(tid_, slot, address_);
    // Local enable; R/W and LEN 0: break before executing the address.
    uint64_t dr7 = savedDr7_ & ~(uint64_t{0xf} << (16 + 4 * slot));
    pokeDebugRegister(tid_, kDr7, dr7 | (uint64_t{1} << (2 * slot)));
    armed_ = true;
    return true;
  }
  return false;
}

void ExecutionBreakpoint::disarm() {
  if (!armed_) return;
  armed_ = false;
  if (::ptrace(PTRACE_POKEUSER, tid_, reinterpret_cast<void*>(offsetOf(kDr7)),
               reinterpret_cast<void*>(savedDr7_)) != 0 &&
      errno != ESRCH)  // gone: so are its debug registers
    throwErrno(kExitInternal, fmt::format("setting debug register 7 of task {}", tid_));
}

}  // namespace rec
