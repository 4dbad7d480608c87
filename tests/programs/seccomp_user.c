// A program that installs seccomp filters of its own: ERRNO, TRAP (SIGSYS
// with a handler that emulates the call) and KILL_PROCESS results, a NULL
// filter, PR_GET_SECCOMP, and strict mode in children. Under rec the
// kernel must act on them as natively, in the recording and the replay.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <pthread.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

static volatile sig_atomic_t sigsysCount;
static volatile long sigsysSyscall, sigsysData, sigsysRax;

static void onSigsys(int sig, siginfo_t* info, void* context) {
  (void)sig;
  ucontext_t* uc = context;
  sigsysCount++;
  sigsysSyscall = info->si_syscall;
  sigsysData = info->si_errno;
  sigsysRax = uc->uc_mcontext.gregs[REG_RAX];
  uc->uc_mcontext.gregs[REG_RAX] = 4242;  // the "emulated" result
}

#define ALLOW_UNLESS(nr, action) \
  BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, (action))

static int installFilter(int viaPrctl) {
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      ALLOW_UNLESS(SYS_getppid, SECCOMP_RET_ERRNO | 77),
      ALLOW_UNLESS(SYS_getpriority, SECCOMP_RET_TRAP | 9),
      ALLOW_UNLESS(SYS_sched_yield, SECCOMP_RET_KILL_PROCESS),
      ALLOW_UNLESS(SYS_rseq, SECCOMP_RET_ERRNO | 79),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog program = {sizeof code / sizeof code[0], code};
  if (viaPrctl) return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program);
  return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program);
}

// SECCOMP_FILTER_FLAG_TSYNC: a thread blocked in read() while another
// installs the filter is under it afterwards (its mode and the filter's
// ERRNO), in a child so that the rest of the program is not.
static int tsyncPipe[2];
static void* tsyncThread(void* arg) {
  (void)arg;
  char c;
  if (read(tsyncPipe[0], &c, 1) != 1) return NULL;
  errno = 0;
  long parent = syscall(SYS_getppid);
  printf("TSYNC thread: mode %d, getppid %ld errno %d\n", prctl(PR_GET_SECCOMP), parent, errno);
  return NULL;
}

static void tsyncChild(void) {
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    pthread_t thread;
    if (pipe(tsyncPipe) != 0 || pthread_create(&thread, NULL, tsyncThread, NULL) != 0) _exit(5);
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        ALLOW_UNLESS(SYS_getppid, SECCOMP_RET_ERRNO | 78),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = {sizeof code / sizeof code[0], code};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(6);
    long synced = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &program);
    printf("TSYNC filter: %ld; mode now %d\n", synced, prctl(PR_GET_SECCOMP));
    fflush(stdout);
    if (write(tsyncPipe[1], "x", 1) != 1) _exit(7);
    pthread_join(thread, NULL);
    fflush(stdout);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
}

static void strictChild(int breaksTheRule) {
  fflush(stdout);
  int fds[2];
  if (pipe(fds) != 0) exit(1);
  pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0) syscall(SYS_exit, 2);
    char line[64];
    int n = snprintf(line, sizeof line, "strict child %d writes", breaksTheRule ? 1 : 0);
    write(fds[1], line, (size_t)n);
    if (breaksTheRule) syscall(SYS_getpid);
    syscall(SYS_exit, 0);
  }
  close(fds[1]);
  char buf[64] = {0};
  ssize_t n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  // Natively the kernel kills a rule breaker with SIGKILL, under rec with
  // SIGSYS (seccomp_filter.h): only "killed" is printed.
  printf("%s (%zd bytes); then %s\n", buf, n,
         WIFEXITED(status) ? (WEXITSTATUS(status) == 0 ? "exited 0" : "exited non-zero")
                           : "killed by a signal");
}

int main(void) {
  unsigned long nonce = 0;
  getrandom(&nonce, sizeof nonce, 0);
  printf("pid %d nonce %lu\n", getpid(), nonce);

  errno = 0;
  int null = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, NULL);
  printf("NULL filter: %d %s; mode now %d\n", null, strerror(errno), prctl(PR_GET_SECCOMP));
  strictChild(0);
  strictChild(1);
  tsyncChild();

  // A child with the filter dies by its KILL_PROCESS.
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || installFilter(0) != 0) _exit(3);
    sched_yield();
    _exit(4);
  }
  int status = 0;
  waitpid(child, &status, 0);
  printf("child with the filter: %s %d\n", WIFSIGNALED(status) ? "killed by signal" : "exited",
         WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = onSigsys;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGSYS, &sa, NULL);
  // Calls rec refuses (natively: EINVAL, glibc registered rseq already and
  // clone3 wants a bigger struct; under rec its own filter answers ENOSYS),
  // then under the program's filter, whose ERRNO comes first.
  errno = 0;
  long r = syscall(SYS_rseq, NULL, 0, 0, 0);
  printf("rseq: %ld errno %d\n", r, errno);
  errno = 0;
  r = syscall(SYS_clone3, NULL, 0);
  printf("clone3: %ld errno %d\n", r, errno);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 1;
  int installed = installFilter(1);
  printf("filter installed: %d; mode now %d\n", installed, prctl(PR_GET_SECCOMP));
  errno = 0;
  long parent = syscall(SYS_getppid);
  printf("getppid: %ld errno %d\n", parent, errno);
  errno = 0;
  r = syscall(SYS_rseq, NULL, 0, 0, 0);
  printf("rseq under the filter: %ld errno %d\n", r, errno);
  long priority = syscall(SYS_getpriority, PRIO_PROCESS, 0);
  printf("getpriority: %ld; SIGSYS %d times, syscall %ld data %ld rax %ld\n", priority,
         (int)sigsysCount, sigsysSyscall, sigsysData, sigsysRax);
  getrandom(&nonce, sizeof nonce, 0);
  printf("after the filter: pid %d nonce %lu\n", getpid(), nonce);
  return 0;
}
