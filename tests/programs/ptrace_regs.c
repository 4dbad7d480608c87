// Emulated ptrace requests that change a tracee's registers beyond
// user_regs_struct's general ones (docs/ptrace-emulation.md): the tracer
// points the tracee's gs base at a word it poked (PTRACE_ARCH_PRCTL), and
// the tracee reads that word through %gs. The value comes from the clock,
// so the output differs on every native run.
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHECK(cond)                                                    \
  do {                                                                 \
    if (!(cond)) {                                                     \
      fprintf(stderr, "line %d: check failed: %s\n", __LINE__, #cond); \
      exit(1);                                                         \
    }                                                                  \
  } while (0)

static volatile uint64_t word;

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  pid_t child = fork();
  if (child == 0) {
    CHECK(ptrace(PTRACE_TRACEME, 0, NULL, NULL) == 0);
    raise(SIGSTOP);
    uint64_t seen;
    __asm__ volatile("mov %%gs:0, %0" : "=r"(seen));
    printf("child: %%gs:0 holds %llu\n", (unsigned long long)seen);
    _exit((int)(seen & 63));
  }
  int status = 0;
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFSTOPPED(status) && WSTOPSIG(status) == SIGSTOP);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t value = (uint64_t)ts.tv_nsec / 1000 + 1;
  CHECK(ptrace(PTRACE_POKEDATA, child, (void*)&word, (void*)value) == 0);
  uintptr_t gs = 1;
  CHECK(ptrace(PTRACE_ARCH_PRCTL, child, &gs, ARCH_GET_GS) == 0);
  CHECK(ptrace(PTRACE_ARCH_PRCTL, child, (void*)&word, ARCH_SET_GS) == 0);
  uintptr_t now = 0, fs = 0;
  CHECK(ptrace(PTRACE_ARCH_PRCTL, child, &now, ARCH_GET_GS) == 0);
  CHECK(ptrace(PTRACE_ARCH_PRCTL, child, &fs, ARCH_GET_FS) == 0);
  CHECK(now == (uintptr_t)&word && fs != 0);
  printf("parent: gs base was %s, now at the poked word %llu\n", gs == 0 ? "0" : "set",
         (unsigned long long)value);
  CHECK(ptrace(PTRACE_CONT, child, NULL, NULL) == 0);
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  printf("parent: child exited with %d (value %% 64 = %llu)\n", WEXITSTATUS(status),
         (unsigned long long)(value & 63));
  return 0;
}
