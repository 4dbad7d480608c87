// One thread spins on an atomic flag (no syscalls) until another thread,
// which first does some work, sets it. Terminates only if the spinning
// thread is preempted when it runs alone on one CPU. Prints how long it spun.
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/random.h>

static atomic_int flag;
static unsigned long spins;

static void* setter(void* arg) {
  (void)arg;
  unsigned r = 0;
  getrandom(&r, sizeof r, 0);
  volatile unsigned long work = 0;
  for (unsigned long i = 0; i < 1000000 + (r % 1000000); ++i) work += i;
  atomic_store(&flag, 1);
  return NULL;
}

int main(void) {
  pthread_t t;
  pthread_create(&t, NULL, setter, NULL);
  while (!atomic_load(&flag)) spins++;
  pthread_join(t, NULL);
  printf("spun %lu times\n", spins);
  return 0;
}
