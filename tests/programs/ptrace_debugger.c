// A tiny debugger: ptrace between two recorded processes, which rec emulates
// (docs/ptrace-emulation.md). Prints what it reads and pokes; the poked value
// comes from the clock, so the output differs on every native run.
//
// 1. TRACEME child: stops with SIGSTOP; the parent reads its registers
//    (GETREGS, PEEKUSER), peeks and pokes a variable, asks for the exit stop,
//    continues it; the child raises SIGUSR1, which the parent sees, checks
//    (GETSIGINFO) and passes on with PTRACE_CONT; the exit stop, then the exit.
// 2. ATTACH to a child asleep in read(): the SIGSTOP stop, then CONT with
//    signal 0 restarts the read, which gets what the parent wrote.
// 3. SEIZE a running child, PTRACE_INTERRUPT it, kill it.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static volatile long secret = 1234;
static volatile sig_atomic_t handled;

static void onUsr1(int sig) {
  (void)sig;
  handled = 1;
}

static void tracemeChild(void) {
  signal(SIGUSR1, onUsr1);
  CHECK(ptrace(PTRACE_TRACEME, 0, 0, 0) == 0);
  CHECK(ptrace(PTRACE_TRACEME, 0, 0, 0) == -1);
  raise(SIGSTOP);
  // The parent has poked `secret` meanwhile.
  raise(SIGUSR1);
  printf("child: secret %ld, handler ran %d\n", secret, (int)handled);
  fflush(stdout);
  _exit((int)(secret & 0x3f));
}

static void traceme(long poke) {
  pid_t child = fork();
  if (child == 0) tracemeChild();
  int status;
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFSTOPPED(status) && WSTOPSIG(status) == SIGSTOP);
  struct user_regs_struct regs;
  CHECK(ptrace(PTRACE_GETREGS, child, 0, &regs) == 0);
  errno = 0;
  long rip = ptrace(PTRACE_PEEKUSER, child, offsetof(struct user_regs_struct, rip), 0);
  CHECK(errno == 0);
  printf("parent: stopped by SIGSTOP, registers agree: %d\n", (uint64_t)rip == regs.rip);
  long before = ptrace(PTRACE_PEEKDATA, child, (void*)&secret, 0);
  CHECK(ptrace(PTRACE_POKEDATA, child, (void*)&secret, (void*)poke) == 0);
  long after = ptrace(PTRACE_PEEKDATA, child, (void*)&secret, 0);
  printf("parent: secret was %ld, poked %ld, reads %ld\n", before, poke, after);
  CHECK(ptrace(PTRACE_SETOPTIONS, child, 0, PTRACE_O_TRACEEXIT) == 0);
  CHECK(ptrace(PTRACE_CONT, child, 0, 0) == 0);

  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFSTOPPED(status) && WSTOPSIG(status) == SIGUSR1);
  siginfo_t info;
  CHECK(ptrace(PTRACE_GETSIGINFO, child, 0, &info) == 0);
  printf("parent: stopped by %s (siginfo %d), passing it on\n", strsignal(WSTOPSIG(status)),
         info.si_signo);
  CHECK(ptrace(PTRACE_CONT, child, 0, SIGUSR1) == 0);

  CHECK(waitpid(child, &status, 0) == child);
  CHECK(status >> 8 == (SIGTRAP | (PTRACE_EVENT_EXIT << 8)));
  unsigned long exitStatus = 0;
  CHECK(ptrace(PTRACE_GETEVENTMSG, child, 0, &exitStatus) == 0);
  printf("parent: exit stop, status %lu\n", exitStatus >> 8);
  CHECK(ptrace(PTRACE_CONT, child, 0, 0) == 0);
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  printf("parent: child exited with %d\n", WEXITSTATUS(status));
}

static void attach(long poke) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  pid_t child = fork();
  if (child == 0) {
    long got = 0;
    CHECK(read(fds[0], &got, sizeof got) == sizeof got);
    printf("child: read %ld after the attach\n", got);
    fflush(stdout);
    _exit(3);
  }
  struct timespec pause = {0, 20 * 1000 * 1000};
  nanosleep(&pause, NULL);
  CHECK(ptrace(PTRACE_ATTACH, child, 0, 0) == 0);
  int status;
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(status == ((SIGSTOP << 8) | 0x7f));
  printf("parent: attached, child stopped by SIGSTOP\n");
  CHECK(write(fds[1], &poke, sizeof poke) == sizeof poke);
  CHECK(ptrace(PTRACE_CONT, child, 0, 0) == 0);
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 3);
  printf("parent: attached child exited with 3\n");
}

static void seize(void) {
  pid_t child = fork();
  if (child == 0) {
    for (;;) pause();
  }
  CHECK(ptrace(PTRACE_SEIZE, child, 0, 0) == 0);
  CHECK(ptrace(PTRACE_INTERRUPT, child, 0, 0) == 0);
  int status;
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(status >> 16 == PTRACE_EVENT_STOP);
  printf("parent: seized child stopped by PTRACE_INTERRUPT\n");
  CHECK(kill(child, SIGKILL) == 0);
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  printf("parent: seized child killed\n");
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  long poke = now.tv_nsec % 100000;
  traceme(poke);
  attach(poke + 1);
  seize();
  printf("done\n");
  return 0;
}
