// Emulated ptrace where the tracer is woken by something other than a
// SIGCHLD it can take (docs/ptrace-emulation.md). The values come from the
// clock, so the output differs on every native run.
//
// 1. The tracer blocks every signal, then waits for its seized child, which
//    raises SIGUSR2: the stop must end the wait though the SIGCHLD that a
//    stop sends stays blocked.
// 2. A tracee forks (PTRACE_O_TRACEFORK): its child, the grandchild of the
//    tracer, is traced too. The tracer reads it, kills it and collects its
//    death with waitpid although it is not the tracer's child; the tracee
//    then stops with the SIGCHLD of that death and exits.
#define _GNU_SOURCE
#include <signal.h>
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

static volatile long value;

static long fromClock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_nsec / 1000 % 100000 + 1;
}

static void blockedSigchld(void) {
  int go[2];
  CHECK(pipe(go) == 0);
  pid_t child = fork();
  if (child == 0) {
    char c;
    CHECK(read(go[0], &c, 1) == 1);
    value = fromClock();
    raise(SIGUSR2);
    _exit(0);
  }
  sigset_t all, old;
  sigfillset(&all);
  CHECK(sigprocmask(SIG_SETMASK, &all, &old) == 0);
  CHECK(ptrace(PTRACE_SEIZE, child, NULL, NULL) == 0);
  CHECK(write(go[1], "g", 1) == 1);
  int status = 0;
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFSTOPPED(status) && WSTOPSIG(status) == SIGUSR2);
  long seen = ptrace(PTRACE_PEEKDATA, child, (void*)&value, NULL);
  printf("blocked: woken by the SIGUSR2 stop, child's value %ld\n", seen);
  CHECK(kill(child, SIGKILL) == 0);
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  CHECK(sigprocmask(SIG_SETMASK, &old, NULL) == 0);
  close(go[0]);
  close(go[1]);
}

static void grandchild(void) {
  int go[2];
  CHECK(pipe(go) == 0);
  pid_t child = fork();
  if (child == 0) {
    char c;
    CHECK(read(go[0], &c, 1) == 1);
    value = fromClock();
    pid_t g = fork();
    if (g == 0) {
      for (;;) pause();
    }
    _exit((int)(value & 63));
  }
  CHECK(ptrace(PTRACE_SEIZE, child, NULL, (void*)PTRACE_O_TRACEFORK) == 0);
  CHECK(write(go[1], "g", 1) == 1);
  int status = 0;
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(status >> 8 == (SIGTRAP | (PTRACE_EVENT_FORK << 8)));
  unsigned long g = 0;
  CHECK(ptrace(PTRACE_GETEVENTMSG, child, NULL, &g) == 0);
  CHECK(waitpid((pid_t)g, &status, 0) == (pid_t)g);
  CHECK(WIFSTOPPED(status) && status >> 16 == PTRACE_EVENT_STOP);
  long seen = ptrace(PTRACE_PEEKDATA, (pid_t)g, (void*)&value, NULL);
  printf("grandchild: traced, value %ld\n", seen);
  CHECK(kill((pid_t)g, SIGKILL) == 0);
  CHECK(waitpid((pid_t)g, &status, 0) == (pid_t)g);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  printf("grandchild: its death collected by the tracer\n");
  CHECK(ptrace(PTRACE_CONT, child, NULL, NULL) == 0);
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFSTOPPED(status) && WSTOPSIG(status) == SIGCHLD);
  printf("grandchild: the child stopped with its SIGCHLD\n");
  CHECK(ptrace(PTRACE_CONT, child, NULL, NULL) == 0);
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  printf("grandchild: child exited with %d (value %% 64 = %ld)\n", WEXITSTATUS(status), seen & 63);
  close(go[0]);
  close(go[1]);
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  blockedSigchld();
  grandchild();
  return 0;
}
