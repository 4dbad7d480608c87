// Emulated ptrace requests that change a tracee's registers beyond
// user_regs_struct's general ones (docs/ptrace-emulation.md): the tracer
// points the tracee's gs base at a word it poked (PTRACE_ARCH_PRCTL), and
// the tracee reads that word through %gs; it sets the tracee's SSE rounding
// mode (SETFPREGS), which the tracee's division shows; and it sets a write
// watchpoint in the tracee's debug registers (POKEUSER), which stops the
// tracee at its store. The value and the rounding mode come from the clock,
// so the output differs on every native run.
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/user.h>
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
static volatile uint64_t watched;

static const char* const kRounding[4] = {"nearest", "down", "up", "toward zero"};

static void* debugReg(int i) {
  return (void*)(offsetof(struct user, u_debugreg) + (size_t)i * 8);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  pid_t child = fork();
  if (child == 0) {
    CHECK(ptrace(PTRACE_TRACEME, 0, NULL, NULL) == 0);
    raise(SIGSTOP);
    uint64_t seen;
    __asm__ volatile("mov %%gs:0, %0" : "=r"(seen));
    printf("child: %%gs:0 holds %llu\n", (unsigned long long)seen);
    volatile double one = 1, three = 3;
    double third = one / three;
    uint32_t mxcsr;
    __asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
    printf("child: rounding %s, 1/3 = %.17g\n", kRounding[(mxcsr >> 13) & 3], third);
    watched = seen;  // the tracer's watchpoint stops the child here
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

  struct user_fpregs_struct fp;
  CHECK(ptrace(PTRACE_GETFPREGS, child, NULL, &fp) == 0);
  unsigned mode = (unsigned)(ts.tv_nsec >> 10) & 3;
  fp.mxcsr = (fp.mxcsr & ~(3u << 13)) | (mode << 13);
  CHECK(ptrace(PTRACE_SETFPREGS, child, NULL, &fp) == 0);
  struct user_fpregs_struct back;
  CHECK(ptrace(PTRACE_GETFPREGS, child, NULL, &back) == 0);
  CHECK(back.mxcsr == fp.mxcsr);
  printf("parent: set the child's rounding to %s\n", kRounding[mode]);

  // DR0 = &watched, DR7: local enable, break on write, 8 bytes.
  CHECK(ptrace(PTRACE_POKEUSER, child, debugReg(0), (void*)&watched) == 0);
  CHECK(ptrace(PTRACE_POKEUSER, child, debugReg(7), (void*)(1 | 1ul << 16 | 2ul << 18)) == 0);
  CHECK(ptrace(PTRACE_PEEKUSER, child, debugReg(0), NULL) == (long)&watched);
  CHECK(ptrace(PTRACE_CONT, child, NULL, NULL) == 0);
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFSTOPPED(status) && WSTOPSIG(status) == SIGTRAP);
  long dr6 = ptrace(PTRACE_PEEKUSER, child, debugReg(6), NULL);
  long stored = ptrace(PTRACE_PEEKDATA, child, (void*)&watched, NULL);
  printf("parent: watchpoint hit (DR6 & 0xf = %ld), the child stored %ld\n", dr6 & 0xf, stored);
  CHECK(ptrace(PTRACE_POKEUSER, child, debugReg(7), NULL) == 0);
  CHECK(ptrace(PTRACE_CONT, child, NULL, NULL) == 0);
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  printf("parent: child exited with %d (value %% 64 = %llu)\n", WEXITSTATUS(status),
         (unsigned long long)(value & 63));
  return 0;
}
