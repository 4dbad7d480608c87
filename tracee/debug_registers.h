// The x86 debug registers of a stopped task (ptrace PTRACE_PEEKUSER and
// PTRACE_POKEUSER on struct user's u_debugreg).
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace rec {

uint64_t peekDebugRegister(pid_t tid, int index);
void pokeDebugRegister(pid_t tid, int index, uint64_t value);

// An execution breakpoint at one address, armed in a debug register nobody
// else (a debugger above the replay) uses at that moment. Under a debugger
// the caller disarms it at each stop, DR7 put back as it was, so that the
// debugger finds the others as it left them; without one it stays armed
// until disarm() or destruction (each arm and disarm is a DR7 write).
class ExecutionBreakpoint {
 public:
  ExecutionBreakpoint(pid_t tid, uint64_t address) : tid_(tid), address_(address) {}
  ~ExecutionBreakpoint();
  ExecutionBreakpoint(const ExecutionBreakpoint&) = delete;
  ExecutionBreakpoint& operator=(const ExecutionBreakpoint&) = delete;

  // False when all four debug registers are taken.
  bool arm();
  void disarm();

 private:
  pid_t tid_;
  uint64_t address_;
  bool armed_ = false;
  uint64_t savedDr7_ = 0;
};

}  // namespace rec
