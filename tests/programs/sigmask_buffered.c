// rt_sigprocmask through the syscall buffer (docs/syscall-buffer.md).
// - A signal made pending while blocked runs its handler before the
//   unblocking sigprocmask returns (POSIX), also when that call is buffered:
//   the task stops inside the buffer's code and rec delivers the signal where
//   the program's call returns.
// - An rdtsc that traps (here: code the program writes at run time, which rec
//   never saw to patch) while a buffered sigprocmask blocks SIGSEGV: the
//   kernel's forced fault unblocks SIGSEGV and resets its handler, and rec
//   must put both back from what the buffer noted.
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile sig_atomic_t handled;
static void onUsr1(int sig) {
  (void)sig;
  handled++;
}
static void onSegv(int sig) {
  (void)sig;
  _exit(3);  // a trapped rdtsc's SIGSEGV must never reach the program
}

static void printState(const char* when) {
  sigset_t now;
  sigprocmask(SIG_SETMASK, NULL, &now);
  struct sigaction current;
  sigaction(SIGSEGV, NULL, &current);
  printf("%s: SIGSEGV blocked %d, handler %s\n", when, sigismember(&now, SIGSEGV),
         current.sa_handler == onSegv ? "ours" : "other");
}

int main(void) {
  signal(SIGUSR1, onUsr1);
  signal(SIGSEGV, onSegv);
  sigset_t usr1, segv, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigemptyset(&segv);
  sigaddset(&segv, SIGSEGV);

  // (the first call of the site is traced and patches it; the rest buffered)
  for (int i = 0; i < 4; ++i) {
    sigprocmask(SIG_BLOCK, &usr1, &old);
    kill(getpid(), SIGUSR1);
    int before = handled;
    sigprocmask(SIG_SETMASK, &old, NULL);
    int after = handled;
    printf("round %d pid %d: handled before unblock %d, after %d\n", i, (int)getpid(), before,
           after);
  }

  unsigned char* code =
      mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (code == MAP_FAILED) return 1;
  for (int i = 0; i < 4; ++i) {
    // rdtsc; shl $32,%rdx; or %rdx,%rax; ret -- at a new address each round
    static const unsigned char readTsc[] = {0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20,
                                            0x48, 0x09, 0xd0, 0xc3};
    unsigned char* at = code + 64 * i;
    memcpy(at, readTsc, sizeof readTsc);
    unsigned long long (*tsc)(void) = (unsigned long long (*)(void))at;
    sigprocmask(SIG_BLOCK, &segv, &old);
    unsigned long long value = tsc();
    printState("after rdtsc, SIGSEGV blocked");
    sigprocmask(SIG_SETMASK, &old, NULL);
    printState("unblocked");
    printf("tsc %llu\n", value);
  }
  return 0;
}
