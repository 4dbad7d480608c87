// Writes the program's output through every path replay must show in the
// recorded order: stdout, stderr, a dup of each, and a child writing to the
// same stdout at the same time as its parent. Every line names this run.
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long run_id;

static void say(int fd, const char* who, int i) {
  char line[96];
  int n = snprintf(line, sizeof line, "%s %d of run %ld\n", who, i, run_id);
  if (write(fd, line, (size_t)n) != n) _exit(3);
}

int main(void) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  run_id = now.tv_nsec;
  int out_copy = dup(1), err_copy = dup(2);
  if (out_copy < 0 || err_copy < 0) return 1;
  for (int i = 0; i < 200; ++i) {
    say(1, "out", i);
    say(2, "err", i);
    if (i % 10 == 0) {
      say(out_copy, "out copy", i);
      say(err_copy, "err copy", i);
    }
  }
  pid_t child = fork();
  if (child == 0) {
    for (int i = 0; i < 300; ++i) say(1, "child", i);
    _exit(0);
  }
  for (int i = 0; i < 300; ++i) say(1, "parent", i);
  int status = 0;
  waitpid(child, &status, 0);
  say(2, "child status", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  return 0;
}
