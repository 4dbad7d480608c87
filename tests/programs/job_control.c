// Job control under rec: a child stopped by SIGSTOP stays stopped, its
// parent's WUNTRACED wait sees the stop (and a WNOHANG wait before it sees
// nothing), SIGCONT resumes it, and the first thing it runs is its
// SIGCONT handler. While it is stopped the parent takes a copy of its
// stdout with pidfd_getfd and writes through it (replay shows that line).
// With "threads", the child has a second thread blocked in a read on a
// pipe when it stops: the parent writes to that pipe while the child is
// stopped (nothing reads it until SIGCONT), and SIGCONT may be delivered to
// either thread. The child's exit status comes from the clock (1 of 100
// values), and the parent prints the clock's nanoseconds too, so the output
// differs on every native run.
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
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

static volatile sig_atomic_t resumed;

static void onCont(int sig) {
  (void)sig;
  resumed = 1;
}

static int data[2];

static void* reader(void* arg) {
  (void)arg;
  char buf[32];
  ssize_t n;
  do {
    n = read(data[0], buf, sizeof buf);
  } while (n < 0);
  printf("child thread: read %zd bytes\n", n);
  return NULL;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  int threads = argc > 1 && !strcmp(argv[1], "threads");
  CHECK(pipe(data) == 0);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int code = (int)(ts.tv_nsec / 1000 % 100) + 1;
  printf("parent: started at ns %ld\n", ts.tv_nsec);
  int ready[2];
  CHECK(pipe(ready) == 0);
  pid_t child = fork();
  if (child == 0) {
    signal(SIGCONT, onCont);
    pthread_t thread;
    if (threads) CHECK(pthread_create(&thread, NULL, reader, NULL) == 0);
    CHECK(write(ready[1], "r", 1) == 1);
    raise(SIGSTOP);
    if (threads) CHECK(pthread_join(thread, NULL) == 0);
    // Only SIGCONT gets here; the parent checked it stopped first.
    printf("child: resumed, handler ran %d\n", (int)resumed);
    _exit(code);
  }
  char c;
  CHECK(read(ready[0], &c, 1) == 1);
  int status = 0;
  pid_t got = waitpid(child, &status, WUNTRACED);
  CHECK(got == child && WIFSTOPPED(status));
  printf("parent: child stopped by %s\n", WSTOPSIG(status) == SIGSTOP ? "SIGSTOP" : "?");
  // Stopped means stopped: nothing more comes from it for a while.
  struct timespec pause = {0, 50 * 1000 * 1000};
  nanosleep(&pause, NULL);
  if (threads) {
    char line[32];
    int n = snprintf(line, sizeof line, "%d", code * 1000);
    CHECK(write(data[1], line, (size_t)n) == n);
    nanosleep(&pause, NULL);
  }
  CHECK(waitpid(child, &status, WNOHANG | WUNTRACED) == 0);
  printf("parent: still stopped after 50 ms\n");
  int pidfd = (int)syscall(SYS_pidfd_open, child, 0);
  int out = pidfd >= 0 ? (int)syscall(SYS_pidfd_getfd, pidfd, 1, 0) : -1;
  if (out >= 0) {
    char line[64];
    int n = snprintf(line, sizeof line, "parent: via the child's stdout, code %d\n", code);
    CHECK(write(out, line, (size_t)n) == n);
    close(out);
  } else {
    printf("parent: pidfd_getfd unsupported here\n");
  }
  if (pidfd >= 0) close(pidfd);
  CHECK(kill(child, SIGCONT) == 0);
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  printf("parent: child exited with %d (expected %d)\n", WEXITSTATUS(status), code);
  return 0;
}
