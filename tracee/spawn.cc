#include "spawn.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <random>

#include "errors.h"
#include "exit_codes.h"
#include "scoped_fd.h"
#include "seccomp_filter.h"

namespace rec {

namespace {

// The child's stack: a mapping of its own, unmapped with ChildSetup.
class ChildStack {
 public:
  static constexpr size_t kSize = 256 << 10;
  ChildStack() {
    void* p = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (p == MAP_FAILED) throwErrno(kExitInternal, "mmap");
    base_ = static_cast<char*>(p);
  }
  ~ChildStack() { ::munmap(base_, kSize); }
  ChildStack(const ChildStack&) = delete;
  ChildStack& operator=(const ChildStack&) = delete;
  void* top() const { return base_ + kSize; }

 private:
  char* base_ = nullptr;
};

constexpr long kPtraceOptions = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACESECCOMP | PTRACE_O_TRACEEXEC |
                                PTRACE_O_TRACEEXIT | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |
                                PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL;

// The child is made with CLONE_VM: it runs on rec's memory, without the
// copy of rec's page tables that fork makes and the copy-on-write faults
// that follow it in rec (each a trap to the hypervisor in a VM), until its
// execve replaces its address space. So it calls the kernel directly:
// glibc's wrappers would set errno in the thread-local storage of rec's
// thread, which runs on meanwhile.
// (r8 too: prctl(PR_SET_NO_NEW_PRIVS) fails with EINVAL unless arguments 3
// to 5 are zero, and without it an unprivileged seccomp filter is refused)
long rawSyscall(long nr, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0) {
  long result;
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  __asm__ volatile("syscall"
                   : "=a"(result)
                   : "0"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                   : "rcx", "r11", "memory");
  return result;
}

[[noreturn]] void rawExit(int code) {
  for (;;) rawSyscall(SYS_exit_group, code);
}

// What the child reads until its execve has copied it. Kept until the next
// spawn, by when that child has long exec'd or died.
struct ChildSetup {
  ChildSetup(const SpawnOptions& o)
      : options(o), filter(o.tracedSyscalls, o.refusedSyscalls, o.untracedIpFrom, o.untracedIpTo) {
    for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const auto& e : options.envp) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);
  }
  ChildSetup(const ChildSetup&) = delete;
  ChildSetup& operator=(const ChildSetup&) = delete;

  SpawnOptions options;
  SeccompFilter filter;
  std::vector<char*> argv, envp;
  int syncFd = -1;
  ChildStack stack;
};

std::unique_ptr<ChildSetup> gLastChild;

// Runs in the child, on its own stack in rec's memory.
int childMain(void* arg) {
  const ChildSetup& s = *static_cast<const ChildSetup*>(arg);
  const SpawnOptions& o = s.options;
  char byte;
  // Wait until the parent has seized us, so that the execve below stops.
  while (rawSyscall(SYS_read, s.syncFd, reinterpret_cast<long>(&byte), 1) == -EINTR) {
  }
  rawSyscall(SYS_close, s.syncFd);
  if (o.stdoutFd >= 0) rawSyscall(SYS_dup2, o.stdoutFd, 1);
  if (o.stderrFd >= 0) rawSyscall(SYS_dup2, o.stderrFd, 2);
  // rec ignores SIGINT/SIGQUIT/SIGPIPE for itself; the program must start
  // with the dispositions and mask a shell would give it.
  struct KernelSigaction {
    unsigned long handler, flags, restorer, mask;
  } dfl{reinterpret_cast<unsigned long>(SIG_DFL), 0, 0, 0};
  for (int sig = 1; sig < NSIG; ++sig)
    rawSyscall(SYS_rt_sigaction, sig, reinterpret_cast<long>(&dfl), 0, 8);
  uint64_t none = 0;
  rawSyscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&none), 0, 8);
  // Same address-space layout in record and replay.
  rawSyscall(SYS_personality, ADDR_NO_RANDOMIZE);
  for (const auto& [resource, limit] : o.rlimits)
    rawSyscall(SYS_prlimit64, 0, resource, reinterpret_cast<long>(&limit), 0);
  if (o.disableCoreDumps) {
    rlimit zero{0, 0};
    rawSyscall(SYS_prlimit64, 0, RLIMIT_CORE, reinterpret_cast<long>(&zero), 0);
  }
  if (o.cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(o.cpu, &set);
    rawSyscall(SYS_sched_setaffinity, 0, sizeof set, reinterpret_cast<long>(&set));
  }
  // RDTSC/RDTSCP fault with SIGSEGV so rec can record and emulate them.
  if (o.trapRdtsc) rawSyscall(SYS_prctl, PR_SET_TSC, PR_TSC_SIGSEGV);
  if (!o.cwd.empty() && rawSyscall(SYS_chdir, reinterpret_cast<long>(o.cwd.c_str())) != 0)
    rawExit(kExitNoTrace);
  // Required for an unprivileged seccomp filter; it also means set-uid
  // programs run without their privileges (as they would under any ptrace).
  rawSyscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1);
  if (rawSyscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0,
                 reinterpret_cast<long>(s.filter.program())) != 0)
    rawExit(kExitUnsupported);
  long err =
      rawSyscall(SYS_execve, reinterpret_cast<long>(o.path.c_str()),
                 reinterpret_cast<long>(s.argv.data()), reinterpret_cast<long>(s.envp.data()));
  rawExit(err == -ENOENT ? kExitNotFound : kExitNotExecutable);
}

}  // namespace

pid_t spawnTraced(const SpawnOptions& o) {
  // Everything the child needs is prepared before it starts.
  auto setup = std::make_unique<ChildSetup>(o);
  int sync[2];
  if (::pipe2(sync, O_CLOEXEC) != 0) throwErrno(kExitInternal, "pipe");
  ScopedFd syncRead(sync[0]), syncWrite(sync[1]);
  setup->syncFd = syncRead.get();

  pid_t child = ::clone(childMain, setup->stack.top(), CLONE_VM | SIGCHLD, setup.get());
  if (child < 0) throwErrno(kExitInternal, "clone");
  syncRead.reset();
  if (::ptrace(PTRACE_SEIZE, child, nullptr, reinterpret_cast<void*>(kPtraceOptions)) != 0) {
    int err = errno;
    ::kill(child, SIGKILL);
    errno = err;
    throwErrno(kExitUnsupported, "cannot trace the program (PTRACE_SEIZE)");
  }
  char go = 1;
  if (::write(syncWrite.get(), &go, 1) != 1) throwErrno(kExitInternal, "write sync pipe");
  gLastChild = std::move(setup);
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

int chooseCpu(int preferred) {
  cpu_set_t allowed;
  if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) return -1;
  if (preferred >= 0 && preferred < CPU_SETSIZE && CPU_ISSET(preferred, &allowed)) return preferred;
  // The CPU this thread runs on: pinning to it needs no migration (which
  // under load waits for the other CPU's current task), and the kernel
  // placed rec's exec on the idlest CPU.
  if (int here = ::sched_getcpu(); here >= 0 && here < CPU_SETSIZE && CPU_ISSET(here, &allowed))
    return here;
  std::vector<int> cpus;
  for (int i = 0; i < CPU_SETSIZE; ++i)
    if (CPU_ISSET(i, &allowed)) cpus.push_back(i);
  if (cpus.empty()) return -1;
  std::random_device rd;
  return cpus[rd() % cpus.size()];
}

int pinToCpu(int cpu) {
  if (cpu < 0) cpu = chooseCpu(-1);
  if (cpu < 0) return -1;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0) return -1;
  return cpu;
}

std::vector<int> allowedCpus(int first, size_t most) {
  std::vector<int> cpus;
  cpu_set_t allowed;
  if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) return cpus;
  if (first >= 0 && first < CPU_SETSIZE && CPU_ISSET(first, &allowed)) cpus.push_back(first);
  for (int i = 0; i < CPU_SETSIZE && (most == 0 || cpus.size() < most); ++i)
    if (CPU_ISSET(i, &allowed) && i != first) cpus.push_back(i);
  return cpus;
}

bool pinTask(pid_t tid, int cpu) {
  if (cpu < 0 || cpu >= CPU_SETSIZE) return false;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return ::sched_setaffinity(tid, sizeof set, &set) == 0;
}

}  // namespace rec
