// For the debugger tests (tests/integration/debugger.sh): calls observe()
// five times with a random value each (so every native run prints other
// numbers), adding to a global the debugger watches, and calls twice() on
// a line of its own for stepping back and forth.
#include <stdio.h>
#include <sys/random.h>

int counter;

__attribute__((noinline)) int twice(int x) {
  return 2 * x;  // LINE:twice-body
}

__attribute__((noinline)) int observe(unsigned value) {
  counter += value & 0xff;  // LINE:observe-add
  printf("observe %u\n", value);
  return counter;
}

int main(void) {
  int total = 0;
  for (int i = 0; i < 5; i++) {
    unsigned r;
    getrandom(&r, sizeof r, 0);
    total += twice(i);  // LINE:call-twice
    observe(r);         // LINE:call-observe
  }
  printf("counter %d total %d\n", counter, total);
  return 3;
}
