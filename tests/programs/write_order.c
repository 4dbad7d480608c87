// Several processes and threads write lines to one stdout at once; the
// order in which the writes took effect differs from run to run, and a
// replay must print them in the recorded order.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { kProcesses = 3, kThreads = 2, kLines = 150 };

static void writeLines(const char* who) {
  char line[128];
  for (int i = 0; i < kLines; ++i) {
    int n = snprintf(line, sizeof line, "%s pid %d line %d\n", who, getpid(), i);
    write(1, line, (size_t)n);
  }
}

static void* thread(void* arg) {
  char who[32];
  snprintf(who, sizeof who, "thread %ld", (long)arg);
  writeLines(who);
  return NULL;
}

int main(void) {
  for (int p = 0; p < kProcesses; ++p) {
    if (fork() == 0) {
      char who[32];
      snprintf(who, sizeof who, "child %d", p);
      writeLines(who);
      _exit(0);
    }
  }
  pthread_t t[kThreads];
  for (long i = 0; i < kThreads; ++i) pthread_create(&t[i], NULL, thread, (void*)i);
  writeLines("main");
  for (int i = 0; i < kThreads; ++i) pthread_join(t[i], NULL);
  for (int p = 0; p < kProcesses; ++p) wait(NULL);
  return 0;
}
