// A program that starts a daemon and exits: the daemon (double fork,
// setsid, stdio on /dev/null) outlives it by argv[1] seconds (default 1).
// rec ends the recording when the program exits, as rr does, and kills
// what it left running instead of waiting for it.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv) {
  unsigned lifetime = argc > 1 ? (unsigned)atoi(argv[1]) : 1;
  int started[2];
  if (pipe(started) != 0) return 1;
  pid_t child = fork();
  if (child < 0) return 1;
  if (child == 0) {
    setsid();
    pid_t daemon = fork();
    if (daemon != 0) _exit(daemon < 0);
    unsigned long nonce = 0;
    getrandom(&nonce, sizeof nonce, 0);
    printf("daemon pid %d nonce %lu\n", getpid(), nonce);
    fflush(stdout);
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0);
    dup2(devnull, 1);
    dup2(devnull, 2);
    if (write(started[1], "x", 1) != 1) _exit(1);
    close(started[1]);
    close(started[0]);
    sleep(lifetime);
    _exit(0);
  }
  close(started[1]);
  int status = 0;
  waitpid(child, &status, 0);
  char c;
  ssize_t n = read(started[0], &c, 1);
  printf("parent %d: intermediate exited %d, daemon %s, exiting\n", getpid(),
         WIFEXITED(status) ? WEXITSTATUS(status) : -1, n == 1 ? "started" : "missing");
  return 0;
}
