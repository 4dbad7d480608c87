// Hangs about one run in four: waits forever (sleeping) for something that
// never comes; otherwise finishes at once.
#include <stdio.h>
#include <sys/random.h>
#include <time.h>

int main(void) {
  unsigned draw = 0;
  if (getrandom(&draw, sizeof draw, 0) != sizeof draw) return 2;
  printf("draw %u\n", draw);
  fflush(stdout);
  if (draw % 4 == 0) {
    for (unsigned i = 0;; ++i) {
      struct timespec pause = {0, 10 * 1000 * 1000};
      nanosleep(&pause, NULL);
      if (i % 50 == 0) {
        printf("still waiting %u\n", i);
        fflush(stdout);
      }
    }
  }
  printf("done\n");
  return 0;
}
