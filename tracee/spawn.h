// Starting a program under ptrace, the same way for record and replay.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <string>
#include <vector>

namespace rec {

struct SpawnOptions {
  std::string path;  // what to execve
  std::vector<std::string> argv;
  std::vector<std::string> envp;
  std::string cwd;                              // empty: inherit
  int cpu = -1;                                 // pin the tracee to this CPU; -1: no pinning
  std::vector<std::pair<int, rlimit>> rlimits;  // applied before exec
  std::vector<uint8_t> tracedSyscalls;          // bitmap for the seccomp filter
  std::vector<uint8_t> refusedSyscalls;         // answered ENOSYS by the filter (none: empty)
  // Syscalls whose ip is in [untracedIpFrom, untracedIpTo] are never traced
  // (rec's scratch page).
  uint64_t untracedIpFrom = 0, untracedIpTo = 0;
  bool disableCoreDumps = false;
  bool trapRdtsc = true;  // PR_SET_TSC: RDTSC/RDTSCP fault with SIGSEGV
  int stdoutFd = -1;      // dup2'ed onto 1 / 2 when >= 0
  int stderrFd = -1;
};

// Forks, seizes the child with rec's ptrace options, and lets it install the
// seccomp filter and execve. Returns the child's pid; the child's next stop
// is the seccomp stop of that execve. Throws RecError.
pid_t spawnTraced(const SpawnOptions& options);

// Resolves PROGRAM like execvp: returns an absolute path, or throws RecError
// with kExitNotFound / kExitNotExecutable and a one-line message.
std::string resolveProgram(const std::string& program);

// An allowed CPU of the calling thread: `preferred` when allowed, else the
// one it runs on, else a random one; -1 when none can be told.
int chooseCpu(int preferred);
// Pins the calling thread to `cpu`; returns the CPU chosen (chooseCpu(-1)'s
// when cpu < 0), or -1 when pinning is impossible.
int pinToCpu(int cpu);
// The CPUs the calling thread may run on, `first` (when allowed) first, then
// ascending, at most `most` of them (0: all).
std::vector<int> allowedCpus(int first, size_t most);
// Pins task `tid` (not the caller) to `cpu`; false when the kernel refuses.
bool pinTask(pid_t tid, int cpu);

}  // namespace rec
