// Fails about one run in three: aborts when a random draw says so.
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

int main(void) {
  unsigned draw = 0;
  if (getrandom(&draw, sizeof draw, 0) != sizeof draw) return 2;
  printf("draw %u\n", draw);
  fflush(stdout);
  if (draw % 3 == 0) {
    fprintf(stderr, "unlucky draw, aborting\n");
    abort();
  }
  return 0;
}
