// ppoll and pselect with a temporary signal mask that blocks SIGCHLD while
// a child exits: the signal waits until the call returns (timeout) and is
// delivered then, with the program's own mask back.
#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t lastChild;

static void onChild(int sig, siginfo_t* info, void* context) {
  (void)sig;
  (void)context;
  lastChild = info->si_pid;
}

int main(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = onChild;
  sa.sa_flags = SA_SIGINFO;
  sigaction(SIGCHLD, &sa, NULL);
  int fds[2];
  pipe(fds);
  sigset_t blockChild;
  sigemptyset(&blockChild);
  sigaddset(&blockChild, SIGCHLD);
  for (int i = 0; i < 4; ++i) {
    pid_t child = fork();
    if (child == 0) {
      usleep(10000);
      _exit(i);
    }
    struct timespec timeout = {0, 60 * 1000 * 1000};
    int r;
    if (i % 2 == 0) {
      struct pollfd pfd = {fds[0], POLLIN, 0};
      r = ppoll(&pfd, 1, &timeout, &blockChild);
    } else {
      fd_set set;
      FD_ZERO(&set);
      FD_SET(fds[0], &set);
      r = pselect(fds[0] + 1, &set, NULL, NULL, &timeout, &blockChild);
    }
    int status;
    waitpid(child, &status, 0);
    printf("%s returned %d; SIGCHLD from %d (child %d) handled after it\n",
           i % 2 ? "pselect" : "ppoll", r, (int)lastChild, child);
  }
  return 0;
}
