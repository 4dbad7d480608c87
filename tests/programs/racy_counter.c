// Four threads increment a shared counter without a lock (a data race): the
// total depends on where the threads were preempted. A replay must print the
// same total as its recording, every time.
#include <pthread.h>
#include <stdio.h>

enum { kThreads = 4, kIncrements = 100000000 };
static volatile long counter;

static void* add(void* arg) {
  (void)arg;
  for (long i = 0; i < kIncrements; ++i) counter = counter + 1;
  return NULL;
}

int main(void) {
  pthread_t t[kThreads];
  for (int i = 0; i < kThreads; ++i) pthread_create(&t[i], NULL, add, NULL);
  for (int i = 0; i < kThreads; ++i) pthread_join(t[i], NULL);
  printf("counter %ld of %d\n", counter, kThreads * kIncrements);
  return 0;
}
