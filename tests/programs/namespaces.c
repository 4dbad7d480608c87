// Ids inside a new pid namespace (a thread's id there, which
// pthread_join waits on, is not its global one), and a thread that takes a
// file table of its own and closes stdout in it while the process writes on.
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void* ownFilesThenClose(void* arg) {
  (void)arg;
  unshare(CLONE_FILES);
  close(1);  // in its own table only
  return NULL;
}

static void* reportId(void* arg) {
  *(long*)arg = syscall(SYS_gettid);
  return NULL;
}

int main(void) {
  unsigned value;
  getrandom(&value, sizeof value, 0);
  printf("pid %d random %u\n", getpid(), value);
  fflush(stdout);
  pthread_t t;
  pthread_create(&t, NULL, ownFilesThenClose, NULL);
  pthread_join(t, NULL);
  const char line[] = "stdout still open after a thread closed its own copy\n";
  write(1, line, strlen(line));

  if (unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0) {
    printf("no pid namespace here\n");
    return 0;
  }
  pid_t child = fork();
  if (child == 0) {
    long inside = 0;
    pthread_create(&t, NULL, reportId, &inside);
    pthread_join(t, NULL);
    printf("in the namespace: pid %d, thread %ld\n", getpid(), inside);
    return 5;
  }
  int status;
  waitpid(child, &status, 0);
  printf("child exited %d\n", WEXITSTATUS(status));
  return 0;
}
