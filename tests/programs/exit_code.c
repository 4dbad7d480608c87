// Exits with a status computed from random bytes (0..49) after printing it,
// so that replay must reproduce a status that differs between native runs.
#include <stdio.h>
#include <sys/random.h>
#include <time.h>

int main(void) {
  unsigned int r = 0;
  if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) return 99;
  int status = (int)(r % 50);
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  printf("exit status %d (random %u, time %lld.%09ld)\n", status, r, (long long)ts.tv_sec,
         ts.tv_nsec);
  fprintf(stderr, "stderr: exiting with %d\n", status);
  return status;
}
