// CPU-bound benchmark workload: about a second of integer and floating-point
// arithmetic with no system calls in the loop. Usage: cpu_bound [ITERATIONS]
// (default 360 million). Prints the result so the work cannot be optimised
// away.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char** argv) {
  uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 360000000ull;
  uint64_t x = 88172645463325252ull;  // xorshift64 state
  double acc = 0.0;
  for (uint64_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    acc += (double)(x & 0xffff) * 1e-6;
    if (acc > 1e9) acc *= 0.5;
  }
  printf("%016llx %.3f\n", (unsigned long long)x, acc);
  return 0;
}
