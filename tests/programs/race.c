// A lost-update race between two threads: each adds 1 to a shared counter
// 100 times with a read-modify-write; one of those updates also asks the
// kernel for its parent pid between the read and the write. Natively the
// second thread usually starts after the first has finished, so the race
// rarely bites; when it does, the total is short and the program aborts.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

enum { kIncrements = 100 };
static volatile long counter;

static void* add(void* arg) {
  (void)arg;
  for (int i = 0; i < kIncrements; ++i) {
    long v = counter;
    if (i == kIncrements / 2) (void)getppid();  // the window
    counter = v + 1;
  }
  return NULL;
}

int main(void) {
  unsigned id = 0;
  getrandom(&id, sizeof id, 0);
  pthread_t a, b;
  pthread_create(&a, NULL, add, NULL);
  pthread_create(&b, NULL, add, NULL);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  printf("run %08x counter %ld\n", id, counter);
  if (counter != 2 * kIncrements) {
    fprintf(stderr, "lost update: counter %ld, expected %d\n", counter, 2 * kIncrements);
    abort();
  }
  return 0;
}
