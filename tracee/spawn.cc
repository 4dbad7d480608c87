#include "spawn.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "errors.h"
#include "exit_codes.h"
#include "scoped_fd.h"
#include "seccomp_filter.h"

namespace rec {

namespace {

constexpr long kPtraceOptions = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACESECCOMP | PTRACE_O_TRACEEXEC |
                                PTRACE_O_TRACEEXIT | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |
                                PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL;

// Runs in the forked child: only async-signal-safe calls from here on.
[[noreturn]] void childMain(const SpawnOptions& o, int syncFd, char* const* argv, char* const* envp,
                            const sock_fprog* filter) {
  char byte;
  // Wait until the parent has seized us, so that the execve below stops.
  while (::read(syncFd, &byte, 1) < 0 && errno == EINTR) {
  }
  ::close(syncFd);
  if (o.stdoutFd >= 0) ::dup2(o.stdoutFd, 1);
  if (o.stderrFd >= 0) ::dup2(o.stderrFd, 2);
  // rec ignores SIGINT/SIGQUIT/SIGPIPE for itself; the program must start
  // with the dispositions and mask a shell would give it.
  for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // Same address-space layout in record and replay.
  ::personality(ADDR_NO_RANDOMIZE);
  for (const auto& [resource, limit] : o.rlimits) ::setrlimit(resource, &limit);
  if (o.disableCoreDumps) {
    rlimit zero{0, 0};
    ::setrlimit(RLIMIT_CORE, &zero);
  }
  if (o.cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(o.cpu, &set);
    ::sched_setaffinity(0, sizeof set, &set);
  }
  // RDTSC/RDTSCP fault with SIGSEGV so rec can record and emulate them.
  if (o.trapRdtsc) ::prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0);
  if (!o.cwd.empty() && ::chdir(o.cwd.c_str()) != 0) ::_exit(kExitNoTrace);
  // Required for an unprivileged seccomp filter; it also means set-uid
  // programs run without their privileges (as they would under any ptrace).
  ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, filter) != 0) ::_exit(kExitUnsupported);
  ::execve(o.path.c_str(), argv, envp);
  ::_exit(errno == ENOENT ? kExitNotFound : kExitNotExecutable);
}

}  // namespace

pid_t spawnTraced(const SpawnOptions& o) {
  // Everything the child needs is prepared before fork.
  std::vector<char*> argv, envp;
  for (const auto& a : o.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : o.envp) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  SeccompFilter filter(o.tracedSyscalls, o.untracedIpFrom, o.untracedIpTo);

  int sync[2];
  if (::pipe2(sync, O_CLOEXEC) != 0) throwErrno(kExitInternal, "pipe");
  ScopedFd syncRead(sync[0]), syncWrite(sync[1]);

  pid_t child = ::fork();
  if (child < 0) throwErrno(kExitInternal, "fork");
  if (child == 0) {
    syncWrite.reset();
    childMain(o, syncRead.release(), argv.data(), envp.data(), filter.program());
  }
  syncRead.reset();
  if (::ptrace(PTRACE_SEIZE, child, nullptr, reinterpret_cast<void*>(kPtraceOptions)) != 0) {
    int err = errno;
    ::kill(child, SIGKILL);
    errno = err;
    throwErrno(kExitUnsupported, "cannot trace the program (PTRACE_SEIZE)");
  }
  char go = 1;
  if (::write(syncWrite.get(), &go, 1) != 1) throwErrno(kExitInternal, "write sync pipe");
  return child;
}

std::string resolveProgram(const std::string& program) {
  auto check = [](const std::string& path) -> int {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return ENOENT;
    if (S_ISDIR(st.st_mode)) return EISDIR;
    if (::access(path.c_str(), X_OK) != 0) return EACCES;
    return 0;
  };
  auto absolute = [](const std::string& path) {
    if (!path.empty() && path[0] == '/') return path;
    char cwd[4096];
    if (!::getcwd(cwd, sizeof cwd)) return path;
    return fmt::format("{}/{}", cwd, path);
  };
  if (program.empty()) throw RecError(kExitUsage, "rec: no program given");
  if (program.find('/') != std::string::npos) {
    int err = check(program);
    if (err == ENOENT) throw RecError(kExitNotFound, fmt::format("rec: {}: no such file", program));
    if (err)
      throw RecError(kExitNotExecutable, fmt::format("rec: {}: {}", program, std::strerror(err)));
    return absolute(program);
  }
  const char* pathEnv = ::getenv("PATH");
  std::string path = pathEnv ? pathEnv : "/usr/local/bin:/usr/bin:/bin";
  int firstError = ENOENT;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = end > start ? path.substr(start, end - start) : std::string(".");
    std::string candidate = fmt::format("{}/{}", dir, program);
    int err = check(candidate);
    if (err == 0) return absolute(candidate);
    if (err != ENOENT && firstError == ENOENT) firstError = err;
    start = end + 1;
  }
  if (firstError == ENOENT)
    throw RecError(kExitNotFound, fmt::format("rec: {}: command not found", program));
  throw RecError(kExitNotExecutable,
                 fmt::format("rec: {}: {}", program, std::strerror(firstError)));
}

int pinToCpu(int cpu) {
  cpu_set_t allowed;
  if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) return -1;
  if (cpu < 0) {
    std::vector<int> cpus;
    for (int i = 0; i < CPU_SETSIZE; ++i)
      if (CPU_ISSET(i, &allowed)) cpus.push_back(i);
    if (cpus.empty()) return -1;
    std::random_device rd;
    cpu = cpus[rd() % cpus.size()];
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0) return -1;
  return cpu;
}

}  // namespace rec
