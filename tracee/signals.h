// Signal classification shared by recorder and replayer.
#pragma once

#include <signal.h>

namespace rec {

// A fault raised by the CPU or kernel for the instruction just executed: it
// recurs by itself when replay executes the same instruction, whereas sent
// signals (si_code <= 0) and timers must be injected from the trace.
inline bool isSynchronousFault(int signo, const siginfo_t& info) {
  switch (signo) {
    case SIGSEGV:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
    case SIGTRAP:
    case SIGSYS:
      return info.si_code > 0;
    default:
      return false;
  }
}

}  // namespace rec
