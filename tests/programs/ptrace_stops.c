// Emulated ptrace meets job control and vfork (docs/ptrace-emulation.md).
// The values come from the clock, so the output differs on every native run.
//
// attach: a child stops itself with SIGSTOP; its parent sees it stopped,
//   then PTRACE_ATTACHes: the tracer's wait reports the stop at once (the
//   kernel turns the job-control stop into a ptrace stop), the tracer reads
//   the child's value, CONT brings the attach's own SIGSTOP to its delivery
//   stop, and a CONT without a signal lets the child run on and exit with
//   its value.
// seize: the same with PTRACE_SEIZE: the stop is a PTRACE_EVENT_STOP.
// vforkdone: a seized child (PTRACE_O_TRACEVFORK | TRACEVFORKDONE) vforks;
//   the tracer sees the vfork event, the new child's first stop, then
//   PTRACE_EVENT_VFORK_DONE once the vfork child has exited, and the exit.
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static void attachStopped(int seize) {
  const char* how = seize ? "seize" : "attach";
  int ready[2];
  CHECK(pipe(ready) == 0);
  pid_t child = fork();
  if (child == 0) {
    value = fromClock();
    CHECK(write(ready[1], "r", 1) == 1);
    raise(SIGSTOP);
    printf("%s: child ran on with %ld\n", how, value);
    _exit((int)(value % 64));
  }
  char c;
  CHECK(read(ready[0], &c, 1) == 1);
  int status = 0;
  CHECK(waitpid(child, &status, WUNTRACED) == child);
  CHECK(WIFSTOPPED(status) && WSTOPSIG(status) == SIGSTOP);
  if (seize) {
    CHECK(ptrace(PTRACE_SEIZE, child, NULL, NULL) == 0);
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(WIFSTOPPED(status) && WSTOPSIG(status) == SIGSTOP && status >> 16 == PTRACE_EVENT_STOP);
  } else {
    CHECK(ptrace(PTRACE_ATTACH, child, NULL, NULL) == 0);
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(status == ((SIGSTOP << 8) | 0x7f));
  }
  long seen = ptrace(PTRACE_PEEKDATA, child, (void*)&value, NULL);
  printf("%s: stopped child traced at once, value %ld\n", how, seen);
  if (seize) {
    CHECK(kill(child, SIGKILL) == 0);
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    printf("%s: child killed\n", how);
    return;
  }
  CHECK(ptrace(PTRACE_CONT, child, NULL, NULL) == 0);
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFSTOPPED(status) && WSTOPSIG(status) == SIGSTOP);
  printf("%s: then the attach's SIGSTOP\n", how);
  CHECK(ptrace(PTRACE_CONT, child, NULL, NULL) == 0);
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  printf("%s: child exited with %d (value %% 64 = %ld)\n", how, WEXITSTATUS(status), seen % 64);
}

static void vforkDone(void) {
  int go[2];
  CHECK(pipe(go) == 0);
  pid_t child = fork();
  if (child == 0) {
    char c;
    CHECK(read(go[0], &c, 1) == 1);
    long v = fromClock();
    pid_t grandchild = vfork();
    if (grandchild == 0) _exit((int)(v % 64));
    CHECK(grandchild > 0);
    _exit(7);
  }
  CHECK(ptrace(PTRACE_SEIZE, child, NULL,
               (void*)(long)(PTRACE_O_TRACEVFORK | PTRACE_O_TRACEVFORKDONE)) == 0);
  CHECK(write(go[1], "g", 1) == 1);
  int status = 0;
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(status >> 8 == (SIGTRAP | (PTRACE_EVENT_VFORK << 8)));
  unsigned long grandchild = 0;
  CHECK(ptrace(PTRACE_GETEVENTMSG, child, NULL, &grandchild) == 0);
  CHECK(waitpid((pid_t)grandchild, &status, __WALL) == (pid_t)grandchild);
  CHECK(status >> 8 == (SIGTRAP | (PTRACE_EVENT_STOP << 8)));
  printf("vforkdone: vfork event, the new child stopped\n");
  CHECK(ptrace(PTRACE_CONT, (pid_t)grandchild, NULL, NULL) == 0);
  CHECK(ptrace(PTRACE_CONT, child, NULL, NULL) == 0);
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(status >> 8 == (SIGTRAP | (PTRACE_EVENT_VFORK_DONE << 8)));
  unsigned long done = 0;
  CHECK(ptrace(PTRACE_GETEVENTMSG, child, NULL, &done) == 0);
  printf("vforkdone: PTRACE_EVENT_VFORK_DONE, message is the new child: %s\n",
         done == grandchild ? "yes" : "no");
  CHECK(waitpid((pid_t)grandchild, &status, __WALL) == (pid_t)grandchild);
  CHECK(WIFEXITED(status));
  int code = WEXITSTATUS(status);
  // The vfork child's SIGCHLD was pending as the vfork returned: the
  // child stops with it before it runs on to its exit.
  CHECK(ptrace(PTRACE_CONT, child, NULL, NULL) == 0);
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFSTOPPED(status) && WSTOPSIG(status) == SIGCHLD);
  CHECK(ptrace(PTRACE_CONT, child, NULL, NULL) == 0);
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 7);
  printf("vforkdone: the vfork child exited with %d, the child stopped with its SIGCHLD, "
         "then exited with 7\n",
         code);
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  const char* mode = argc > 1 ? argv[1] : "all";
  if (!strcmp(mode, "attach") || !strcmp(mode, "all")) attachStopped(0);
  if (!strcmp(mode, "seize") || !strcmp(mode, "all")) attachStopped(1);
  if (!strcmp(mode, "vforkdone") || !strcmp(mode, "all")) vforkDone();
  return 0;
}
