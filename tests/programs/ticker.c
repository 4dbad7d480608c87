// Prints a counter, the time and a random number every 20 ms, N times
// (default 500): long enough to interrupt rec while it records.
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 500;
  for (int i = 0; i < n; ++i) {
    struct timespec now, pause = {0, 20 * 1000 * 1000};
    clock_gettime(CLOCK_REALTIME, &now);
    unsigned r = 0;
    getrandom(&r, sizeof r, 0);
    printf("tick %d %ld.%09ld %08x\n", i, (long)now.tv_sec, now.tv_nsec, r);
    fflush(stdout);
    nanosleep(&pause, NULL);
  }
  return 0;
}
