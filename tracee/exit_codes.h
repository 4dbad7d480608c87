// rec's own exit codes. `rec record` and `rec replay` otherwise exit with the
// recorded program's status, or 128+N when signal N killed it; these codes are
// documented in the README and chosen from sysexits.h so that they are
// unlikely to be confused with a program's own.
#pragma once

namespace rec {

inline constexpr int kExitUsage = 64;  // bad command line
inline constexpr int kExitBadTrace =
    65;  // trace corrupt, truncated before its header, wrong version
inline constexpr int kExitNoTrace = 66;  // trace file missing or unreadable
inline constexpr int kExitTraceCutShort =
    67;  // replay reached the end of a trace whose recording was cut short
inline constexpr int kExitUnsupported =
    69;                                     // ptrace/seccomp unavailable, CPU differs (see --force)
inline constexpr int kExitInternal = 70;    // a bug in rec
inline constexpr int kExitIoError = 74;     // could not write the trace
inline constexpr int kExitDivergence = 75;  // replay diverged from the recording
inline constexpr int kExitTimedOut = 124;   // record --timeout killed the program (as timeout(1))
inline constexpr int kExitNotExecutable = 126;
inline constexpr int kExitNotFound = 127;

}  // namespace rec
