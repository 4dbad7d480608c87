// For the debugger tests: two threads store their own number into one
// global a random number of times with random pauses; which one wrote last
// differs from run to run, and main prints it.
#include <pthread.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>

static volatile long shared;
static int writes[3];
static unsigned seeds[3];

static void* writer(void* arg) {
  long me = (long)arg;
  unsigned r;
  getrandom(&r, sizeof r, 0);
  seeds[me] = r;
  for (int i = 0; i < 3 + (int)(r % 5); i++) {
    struct timespec ts = {0, (long)(r % 1000) * 1000};
    nanosleep(&ts, NULL);
    shared = me;  // LINE:racy-write
    writes[me]++;
    r = r * 1103515245 + 12345;
  }
  return NULL;
}

int main(void) {
  pthread_t t[2];
  for (long i = 0; i < 2; i++) pthread_create(&t[i], NULL, writer, (void*)(i + 1));
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  printf("seeds %u %u\n", seeds[1], seeds[2]);
  printf("writes %d %d, last writer %ld\n", writes[1], writes[2], shared);  // LINE:report
  return 0;
}
