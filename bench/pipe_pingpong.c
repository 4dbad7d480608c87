// bench/run.sh's pipe row: two processes pass a small message back and
// forth over a pair of pipes (issue 13): small reads and writes that block.
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 20000;
  int there[2], back[2];
  if (pipe(there) || pipe(back)) return 1;
  pid_t child = fork();
  if (child == 0) {
    char m[16];
    for (int i = 0; i < rounds; ++i) {
      if (read(there[0], m, sizeof m) <= 0) _exit(2);
      if (write(back[1], m, 8) != 8) _exit(3);
    }
    _exit(0);
  }
  char m[16] = "ping....";
  long sum = 0;
  for (int i = 0; i < rounds; ++i) {
    if (write(there[1], m, 8) != 8) return 4;
    ssize_t n = read(back[0], m, sizeof m);
    if (n <= 0) return 5;
    sum += n;
  }
  int status;
  waitpid(child, &status, 0);
  printf("%ld\n", sum);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 6;
}
