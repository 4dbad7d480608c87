// RDTSC while the program blocks SIGSEGV, and SIGSEGV blocked across exec.
// Under rec RDTSC traps with a SIGSEGV the kernel forces: when SIGSEGV is
// blocked it unblocks it and resets its handler to SIG_DFL. rec must undo
// both, so the program finds its mask and handler as it left them (the
// dynamic loader reads the TSC at start-up, before main).
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <x86intrin.h>

static volatile sig_atomic_t faults;
static char* page;

static void onSegv(int sig, siginfo_t* info, void* context) {
  (void)sig;
  (void)context;
  faults++;
  mprotect(info->si_addr, 4096, PROT_READ | PROT_WRITE);
}

static void printMask(const char* when) {
  sigset_t now;
  sigprocmask(SIG_SETMASK, NULL, &now);
  struct sigaction current;
  sigaction(SIGSEGV, NULL, &current);
  printf("%s: SIGSEGV blocked %d, SIGUSR1 blocked %d, handler %s\n", when,
         sigismember(&now, SIGSEGV), sigismember(&now, SIGUSR1),
         current.sa_sigaction == onSegv       ? "ours"
         : current.sa_handler == SIG_DFL      ? "default"
         : current.sa_handler == SIG_IGN      ? "ignored"
                                              : "other");
}

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "after-exec") == 0) {
    printMask("after exec");
    printf("tsc after exec %llu\n", (unsigned long long)__rdtsc());
    return 0;
  }
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = onSegv;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGSEGV, &sa, NULL);

  sigset_t segv, old;
  sigemptyset(&segv);
  sigaddset(&segv, SIGSEGV);
  for (int i = 0; i < 2; ++i) {
    sigprocmask(SIG_BLOCK, &segv, &old);
    unsigned long long tsc = __rdtsc();
    printMask("rdtsc with SIGSEGV blocked");
    sigprocmask(SIG_SETMASK, &old, NULL);
    printf("tsc %llu\n", tsc);
  }
  printMask("unblocked");

  // A real fault still reaches the handler.
  page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  page[0] = 1;
  printf("faults handled: %d\n", (int)faults);

  // Blocked with the default action, across exec.
  signal(SIGSEGV, SIG_DFL);
  sigaddset(&segv, SIGUSR1);
  sigprocmask(SIG_BLOCK, &segv, NULL);
  printMask("before exec");
  fflush(stdout);
  char* args[] = {argv[0], "after-exec", NULL};
  execv("/proc/self/exe", args);
  perror("execv");
  return 1;
}
