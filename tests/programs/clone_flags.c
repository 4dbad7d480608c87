// clone() flags that change who sees the child: CLONE_UNTRACED (a child no
// tracer may follow) and CLONE_PIDFD with CLONE_VFORK (the kernel stores a
// pidfd in the parent while the child runs on its memory).
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

static int pipeFds[2];
static char stack[2][65536];

static int untraced(void* arg) {
  (void)arg;
  unsigned value;
  getrandom(&value, sizeof value, 0);
  write(pipeFds[1], &value, sizeof value);
  return 0;
}

static int vforked(void* arg) {
  (void)arg;
  _exit(77);
}

int main(void) {
  pipe(pipeFds);
  pid_t child = clone(untraced, stack[0] + sizeof stack[0], CLONE_UNTRACED | SIGCHLD, NULL);
  unsigned value = 0;
  read(pipeFds[0], &value, sizeof value);
  int status;
  waitpid(child, &status, 0);
  printf("untraced child %d sent %u and exited %d\n", child, value, WEXITSTATUS(status));

  int pidfd = -1;
  child =
      clone(vforked, stack[1] + sizeof stack[1], CLONE_PIDFD | CLONE_VFORK | SIGCHLD, NULL, &pidfd);
  waitpid(child, &status, 0);
  printf("vfork child %d exited %d; pidfd %d is the next fd after the pipe: %s\n", child,
         WEXITSTATUS(status), pidfd, pidfd == pipeFds[1] + 1 ? "yes" : "no");
  return 0;
}
