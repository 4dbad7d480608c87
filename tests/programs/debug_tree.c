// For the debugger tests: a parent forks a child that works on a random
// value of its own; both print what they did.
#include <stdio.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

__attribute__((noinline)) unsigned child_work(unsigned value) {
  unsigned result = value % 1000;  // LINE:child-work
  printf("child %d value %u\n", (int)getpid(), value);
  fflush(stdout);
  return result;
}

int main(void) {
  printf("parent %d\n", (int)getpid());
  fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    unsigned r;
    getrandom(&r, sizeof r, 0);
    _exit((int)(child_work(r) % 100));
  }
  int status = 0;
  waitpid(child, &status, 0);
  printf("child exited %d\n", WEXITSTATUS(status));
  return 0;
}
